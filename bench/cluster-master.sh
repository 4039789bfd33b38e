#!/usr/bin/env bash
# Benchmark: what a master spends merging its workers. WORKERS synthetic workers (the
# synthetic_workers example: the real protocol, real per-second totals of RPS requests a second
# over ENDPOINTS endpoints, no requests sent) on one core, the master on the other; prints the
# master's CPU, percent of one core over its whole life, each round and the median (goal < 5 %).
#
#   bench/cluster-master.sh [ROUNDS] [SECONDS] [WORKERS] [RPS] [ENDPOINTS]   (defaults: 3 30 10 10000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-30} workers=${3:-10} rps=${4:-10000} endpoints=${5:-20}
missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (the master on one, its workers on the other)" >&2; exit 1; }
cargo build --release --workspace --locked
cargo build --release --locked -p loadgen --example synthetic_workers
loadgen=$PWD/target/release/loadgen
synthetic=$PWD/target/release/examples/synthetic_workers
work=$(mktemp -d)
source bench/nginx.sh
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

printf '%-6s %10s %12s %14s %14s\n' round workers "req/s merged" "master CPU %" "master RSS MB"
cpus=()
for round in $(seq "$rounds"); do
  port=$(free_port)
  # Nothing listens at the target: the synthetic workers send no request, and a master
  # sends none itself.
  /usr/bin/time -f '%U %S %e %M' -o "$work/master.time" taskset -c 0 "$loadgen" --headless --master \
    --master-bind-port "$port" --expect-workers "$workers" -f bench/saturate.toml -H http://127.0.0.1:9 \
    -u "$workers" -t "${secs}s" --only-summary --report-json "$work/master.json" > "$work/master.out" 2>&1 &
  master=$!
  pids=("$master")
  taskset -c 1 "$synthetic" "ws://127.0.0.1:$port/" "$workers" "$rps" "$endpoints" > "$work/synthetic.out" 2>&1 &
  pids+=($!)
  wait "$master" || true
  wait "${pids[1]}" 2>/dev/null || true
  merged=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["steady_total"]["requests"] / r["duration_secs"]))' "$work/master.json")
  # The last line: time puts "Command exited with non-zero status" first when a target is missed.
  read -r user sys elapsed rss_kb < <(tail -1 "$work/master.time")
  cpu=$(awk -v u="$user" -v s="$sys" -v e="$elapsed" 'BEGIN {printf "%.1f", (u + s) / e * 100}')
  printf '%-6s %10s %12s %14s %14s\n' "$round" "$workers" "$merged" "$cpu" "$((rss_kb / 1024))"
  cpus+=("$cpu")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-6s %10s %12s %14s\n' median "" "" "$(median "${cpus[@]}")"
echo "master CPU = its user + system time over its wall time, percent of one core (goal < 5 %)"
