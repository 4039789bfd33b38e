#!/usr/bin/env bash
# Benchmark: the monitor's own CPU use at a 1 s tick with every source on (Docker with one
# container, PostgreSQL, Redis with a watched list, the host), and the sampling spread between
# sources. Goals: under 1% of one core; spread under 50 ms.
#
#   bench/monitor.sh [SECONDS]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
cargo build --release --workspace --locked
work=$(mktemp -d); chmod 755 "$work"
name=lt-bench-monitor-$$
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; scripts/services.sh stop "$work/services"; rm -rf "$work"; }
trap cleanup EXIT
eval "$(scripts/services.sh start "$work/services")"
mkdir -p "$work/root/bin" && cp /bin/busybox "$work/root/bin/"
tar -C "$work/root" -cf "$work/rootfs.tar" . && docker import "$work/rootfs.tar" loadtest-busybox:bench >/dev/null
docker run -d --network none --name "$name" loadtest-busybox:bench /bin/busybox sh -c 'while :; do sleep 0.01; done' >/dev/null

/usr/bin/time -f '%U %S %M' -o "$work/time" target/release/monitor --docker "name=$name" \
  --postgres-url "$TEST_DATABASE_URL" --redis-url "$TEST_REDIS_URL" --redis-queue 1/celery \
  --interval 1s --duration "${secs}s" --out "$work/ticks.jsonl" --quiet 2>/dev/null
python3 - "$work/ticks.jsonl" "$work/time" "$secs" <<'PY'
import json, statistics, sys
ticks = [json.loads(l) for l in open(sys.argv[1])]
user, system, rss = open(sys.argv[2]).read().split()
secs = float(sys.argv[3])
spreads = [t["spread_ms"] for t in ticks[1:]]  # the first tick opens the connections
down = sum(1 for t in ticks for r in t["sources"].values() if not r["up"])
cpu = (float(user) + float(system)) / secs * 100
print(f"ticks {len(ticks)}, sources down {down} times")
print(f"monitor CPU: {cpu:.2f}% of one core (goal < 1%), peak RSS {int(rss) // 1024} MB")
print(f"spread between sources: median {statistics.median(spreads):.1f} ms, max {max(spreads):.1f} ms (goal < 50 ms)")
PY
