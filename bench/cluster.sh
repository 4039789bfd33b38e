#!/usr/bin/env bash
# Benchmark: a master and 2 workers against one process, on the same core, against the same
# local nginx (on the other core), several rounds; prints requests/s of each, the median ratio
# (goal >= 0.9), and the master's CPU per second of run (what merging its workers costs).
#
#   bench/cluster.sh [ROUNDS] [SECONDS] [USERS]      (defaults: 5 10 50)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10} users=${3:-50}
missing=()
command -v nginx >/dev/null || missing+=(nginx)
[ -x /usr/bin/time ] || missing+=(time)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (generators on one, nginx on the other)" >&2; exit 1; }
cargo build --release --workspace --locked
loadgen=$PWD/target/release/loadgen
work=$(mktemp -d)
source bench/nginx.sh
start_nginx "$work" 1
pids=()
trap 'kill "$(cat "$work/nginx.pid")" 2>/dev/null; kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
url=http://127.0.0.1:$nginx_port
rps() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["steady_total"]["requests"] / r["duration_secs"]))' "$1"; }

printf '%-6s %14s %14s %8s %16s\n' round "single req/s" "cluster req/s" ratio "master CPU %"
ratios=() singles=() clusters=() masters=()
for round in $(seq "$rounds"); do
  taskset -c 0 "$loadgen" --headless -f bench/saturate.toml -H "$url" -u "$users" -r 100000 -t "${secs}s" \
    --threads 1 --only-summary --report-json "$work/single.json" --target users=1 > /dev/null 2>&1 || true
  single=$(rps "$work/single.json")
  mport=$(free_port)
  /usr/bin/time -f '%U %S' -o "$work/master.time" taskset -c 0 "$loadgen" --headless --master --master-bind-port "$mport" \
    --expect-workers 2 -f bench/saturate.toml -H "$url" -u "$users" -r 100000 -t "${secs}s" \
    --only-summary --report-json "$work/cluster.json" --target users=1 > /dev/null 2>&1 &
  master=$!
  pids=()
  for w in 1 2; do
    taskset -c 0 "$loadgen" --worker --master-port "$mport" --threads 1 --worker-name "w$w" > /dev/null 2>&1 &
    pids+=($!)
  done
  wait "$master" || true
  wait "${pids[@]}" 2>/dev/null || true
  cluster=$(rps "$work/cluster.json")
  # The master's CPU over the run's length, percent of one core.
  master_cpu=$(awk -v s="$secs" '{printf "%.1f", ($1 + $2) / s * 100}' "$work/master.time")
  ratio=$(awk -v a="$cluster" -v b="$single" 'BEGIN {printf "%.2f", a / b}')
  printf '%-6s %14s %14s %8s %16s\n' "$round" "$single" "$cluster" "$ratio" "$master_cpu"
  ratios+=("$ratio") singles+=("$single") clusters+=("$cluster") masters+=("$master_cpu")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-6s %14s %14s %8s %16s\n' median "$(median "${singles[@]}")" "$(median "${clusters[@]}")" \
  "$(median "${ratios[@]}")" "$(median "${masters[@]}")"
echo "ratio = master + 2 workers req/s / one process's req/s on the same core (goal >= 0.9)"
