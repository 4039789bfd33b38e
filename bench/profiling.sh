#!/usr/bin/env bash
# Benchmark: what sampling with py-spy costs the API it profiles. A uvicorn app (the profiles
# test's fixture, `crates/monitor/tests/fixtures/profiled`, serving `/` alone) on core 0, wrk
# on core 1 against it; each round measures req/s without the profiler, then with `monitor`
# (profiles only, release build, on core 1 beside wrk) sampling uvicorn at its default 100 Hz.
# Prints every round, the medians and the ratio (goal: under 5 % lost).
#
#   bench/profiling.sh [ROUNDS] [SECONDS] [CONNECTIONS]     (defaults: 5 10 50)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10} connections=${3:-50}
command -v wrk >/dev/null || { echo "bench needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench needs taskset (util-linux)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (the API on one, wrk on the other)" >&2; exit 1; }
venv=${TESTBED_PY_VENV:-$(scripts/python-venv.sh)}
cargo build --release --locked -p monitor
monitor=$PWD/target/release/monitor
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd crates/monitor/tests/fixtures/profiled && PROFILED_THREADS=0 exec taskset -c 0 \
  "$venv/bin/python" -m uvicorn app.main:app --port "$port" --log-level warning --no-access-log) &
api=$!
pids+=("$api")
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
# Warm-up: the first requests pay for imports and caches.
taskset -c 1 wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$port/" >/dev/null

rps() {
  taskset -c 1 wrk -t1 -c"$connections" -d"${secs}s" "http://127.0.0.1:$port/" |
    awk '/Requests\/sec/ {print $2}'
}

printf '%-6s %14s %14s %12s\n' round "off req/s" "on req/s" "samples/s"
offs=() ons=()
for round in $(seq "$rounds"); do
  off=$(rps)
  taskset -c 1 "$monitor" --no-host --quiet --interval 1s --out "$work/ticks.jsonl" &
  mon=$!
  pids+=("$mon")
  # Profiling starts at the first tick that sees uvicorn: wait until a tick has its samples.
  for _ in $(seq 100); do
    grep -q "\"pid\":$api" "$work/ticks.jsonl" 2>/dev/null && break
    sleep 0.1
  done
  on=$(rps)
  kill "$mon"; wait "$mon" 2>/dev/null || true
  samples=$(python3 - "$work/ticks.jsonl" "$api" <<'PY'
import json, sys
rounds = [p["samples"] for line in open(sys.argv[1]) for r in json.loads(line)["sources"].values()
          for p in (r.get("values") or {}).get("processes", []) if p.get("pid") == int(sys.argv[2])]
print(f"{sum(rounds[1:-1]) / max(len(rounds) - 2, 1):.0f}")
PY
)
  rm -f "$work/ticks.jsonl"
  printf '%-6s %14s %14s %12s\n' "$round" "$off" "$on" "$samples"
  offs+=("$off") ons+=("$on")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
off=$(median "${offs[@]}") on=$(median "${ons[@]}")
awk -v off="$off" -v on="$on" 'BEGIN {
  printf "median req/s: %.0f without profiling, %.0f with; ratio %.3f, %.1f %% lost (goal: under 5 %%)\n",
    off, on, on / off, (1 - on / off) * 100 }'
