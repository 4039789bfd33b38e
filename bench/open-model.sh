#!/usr/bin/env bash
# Benchmark: latencies free of coordinated omission, and the open model's rate accuracy.
#
# 1. Stalls. nginx on core 1 is stopped (SIGSTOP) for 0.5 s every 5 s, three times in 15 s,
#    while 5,000 req/s arrive on a fixed schedule from core 0. 10 % of the intended requests
#    fall into a stall, each delayed by 0 to 500 ms: the true p99 is about 450 ms. loadgen's
#    open model (--arrival-rate) and oha with --latency-correction run against the same stalls,
#    one after the other. The script prints both one's p50, p90, p99 and p99.9, the ratio of
#    each p99 to 450 ms, and loadgen's service time (timed from the send). Every iteration
#    goes out on time on a free user of its own, so a stalled server is in the service time
#    too; the two part only where the generator itself was late (no free user, a slow
#    connect, the scheduler's lag), which is what the service time is there to show.
# 2. Rate accuracy without stalls, at 1,000 and 20,000 req/s: requests sent per second against
#    the target, and iterations started more than 1 ms late.
#
#   bench/open-model.sh [ROUNDS]     (default 3; medians of the rounds are printed last)
#
# Needs nginx, taskset (util-linux) and oha (`cargo install oha`); installs the Debian ones.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} rate=5000 secs=15 true_p99=450

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v oha >/dev/null || { echo "oha is needed: cargo install oha" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (generator on one, nginx on the other)" >&2; exit 1; }
cargo build --release -p loadgen --locked
loadgen=$PWD/target/release/loadgen

work=$(mktemp -d)
source bench/nginx.sh
start_nginx "$work" 1
staller=""
cleanup() {
  [ -n "$staller" ] && kill "$staller" 2>/dev/null
  kill -CONT "$nginx_worker" 2>/dev/null || true
  kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
trap cleanup EXIT
url=http://127.0.0.1:$nginx_port/

# Stops nginx's worker for 0.5 s at 2.25 s, 7.25 s and 12.25 s after it starts.
stall() {
  sleep 2.25
  for _ in 1 2 3; do
    kill -STOP "$nginx_worker"; sleep 0.5; kill -CONT "$nginx_worker"; sleep 4.5
  done
}

# p50 p90 p99 p99.9 (ms) of loadgen's JSON report: the response time (steady_total), or the
# service time (service_time); PERCENTILES is 50 66 75 80 90 95 98 99 99.9 99.99 100.
loadgen_percentiles() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = (r["steady_total"] if sys.argv[2] == "response" else r["service_time"])["percentiles_ms"]
print(f"{p[0]:.1f} {p[4]:.1f} {p[7]:.1f} {p[8]:.1f}")
PY
}
oha_percentiles() {
  python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["latencyPercentiles"]; print(" ".join(f"{p[k]*1000:.1f}" for k in ("p50","p90","p99","p99.9")))' "$1"
}

echo "== stalls: $rate req/s for $secs s, nginx stopped 0.5 s every 5 s (true p99 about $true_p99 ms)"
printf '%-6s %-22s %9s %9s %9s %9s %12s\n' round tool p50 p90 p99 p99.9 "p99/450ms"
lg_ratios=() oha_ratios=() service_p99s=()
for round in $(seq "$rounds"); do
  stall & staller=$!
  taskset -c 0 oha -z "${secs}s" -q "$rate" --latency-correction --no-tui --output-format json -c 500 "$url" > "$work/oha.json"
  wait "$staller"; staller=""
  read -r o50 o90 o99 o999 < <(oha_percentiles "$work/oha.json")
  ratio=$(awk -v a="$o99" -v t="$true_p99" 'BEGIN {printf "%.3f", a / t}')
  oha_ratios+=("$ratio")
  printf '%-6s %-22s %9s %9s %9s %9s %12s\n' "$round" "oha --latency-corr." "$o50" "$o90" "$o99" "$o999" "$ratio"

  stall & staller=$!
  taskset -c 0 "$loadgen" --headless -f bench/saturate.toml -H "${url%/}" --arrival-rate "$rate/s" \
    -t "${secs}s" --max-users 4000 --pre-allocate 500 --only-summary --report-json "$work/lg.json" > /dev/null 2>&1 || true
  wait "$staller"; staller=""
  read -r l50 l90 l99 l999 < <(loadgen_percentiles "$work/lg.json" response)
  read -r s50 s90 s99 s999 < <(loadgen_percentiles "$work/lg.json" service)
  ratio=$(awk -v a="$l99" -v t="$true_p99" 'BEGIN {printf "%.3f", a / t}')
  lg_ratios+=("$ratio") service_p99s+=("$s99")
  printf '%-6s %-22s %9s %9s %9s %9s %12s\n' "$round" "loadgen (response)" "$l50" "$l90" "$l99" "$l999" "$ratio"
  printf '%-6s %-22s %9s %9s %9s %9s %12s\n' "$round" "loadgen (service)" "$s50" "$s90" "$s99" "$s999" "-"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median p99/450ms: loadgen $(median "${lg_ratios[@]}"), oha $(median "${oha_ratios[@]}");" \
  "loadgen's service-time p99 $(median "${service_p99s[@]}") ms (from the send)"

echo "== rate accuracy without stalls, $secs s each"
printf '%-10s %12s %12s %10s %14s\n' target "sent/s" "error %" late "late %"
for target in 1000 20000; do
  taskset -c 0 "$loadgen" --headless -f bench/saturate.toml -H "${url%/}" --arrival-rate "$target/s" \
    -t "${secs}s" --only-summary --report-json "$work/rate.json" > /dev/null 2>&1 || true
  python3 - "$work/rate.json" "$target" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); target = int(sys.argv[2])
o = r["open_model"]; secs = r["duration_secs"]; sent = r["steady_total"]["requests"]
rate = sent / secs
print(f"{target:<10} {rate:12.1f} {100 * (rate - target) / target:12.2f} {o['late']:10} {100 * o['late'] / max(o['scheduled'], 1):14.3f}")
PY
done
