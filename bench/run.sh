#!/usr/bin/env bash
# Benchmark: loadgen against wrk on the same local nginx, each generator pinned to core 0 and
# nginx to core 1, several rounds; prints requests/s, CPU seconds per 10,000 requests, the
# median ratio, and loadgen's peak RSS with 10,000 mostly idle users.
#
#   bench/run.sh [ROUNDS] [SECONDS] [CONNECTIONS]      (defaults: 5 10 50)
#   SCHEME=https bench/run.sh ...                      the same over TLS (a self-signed certificate;
#                                                      loadgen with --insecure, wrk checks none)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10} conns=${3:-50} idle_users=${IDLE_USERS:-10000} scheme=${SCHEME:-http}

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/bin/time ] || missing+=(time)
command -v taskset >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (generator on one, nginx on the other)" >&2; exit 1; }
cargo build --release --workspace --locked
loadgen=$PWD/target/release/loadgen

work=$(mktemp -d)
source bench/nginx.sh
tls_flag=""
[ "$scheme" = https ] && tls_flag=--insecure
start_nginx "$work" 1 "$([ "$scheme" = https ] && echo 1)"
trap 'kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT
url=$scheme://127.0.0.1:$nginx_port

# cpu_and_rss FILE: "user+sys seconds" and "max RSS KB" from /usr/bin/time's output.
timed() { /usr/bin/time -f '%U %S %M' -o "$work/time" "$@"; }
cpu() { awk '{print $1 + $2}' "$work/time"; }
rss_kb() { awk '{print $3}' "$work/time"; }

printf '%-6s %14s %14s %16s %16s %8s\n' round "wrk req/s" "loadgen req/s" "wrk cpu/10k" "loadgen cpu/10k" ratio
ratios=() wrk_rates=() lg_rates=() wrk_cpus=() lg_cpus=()
for round in $(seq "$rounds"); do
  timed taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" "$url/" > "$work/wrk.out"
  wrk_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  wrk_total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  wrk_cpu=$(awk -v c="$(cpu)" -v n="$wrk_total" 'BEGIN {printf "%.3f", c / n * 10000}')

  timed taskset -c 0 "$loadgen" --headless -f bench/saturate.toml -H "$url" $tls_flag -u "$conns" -r 100000 -t "${secs}s" \
    --only-summary --report-json "$work/lg.json" --target users=1 > /dev/null 2>&1 || true
  read -r lg_total lg_secs < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["steady_total"]["requests"], r["duration_secs"])' "$work/lg.json")
  lg_rps=$(awk -v n="$lg_total" -v s="$lg_secs" 'BEGIN {printf "%.0f", n / s}')
  lg_cpu=$(awk -v c="$(cpu)" -v n="$lg_total" 'BEGIN {printf "%.3f", c / n * 10000}')
  ratio=$(awk -v a="$lg_rps" -v b="$wrk_rps" 'BEGIN {printf "%.2f", a / b}')
  printf '%-6s %14.0f %14.0f %16s %16s %8s\n' "$round" "$wrk_rps" "$lg_rps" "$wrk_cpu" "$lg_cpu" "$ratio"
  ratios+=("$ratio") wrk_rates+=("$wrk_rps") lg_rates+=("$lg_rps") wrk_cpus+=("$wrk_cpu") lg_cpus+=("$lg_cpu")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-6s %14.0f %14.0f %16s %16s %8s\n' median "$(median "${wrk_rates[@]}")" "$(median "${lg_rates[@]}")" \
  "$(median "${wrk_cpus[@]}")" "$(median "${lg_cpus[@]}")" "$(median "${ratios[@]}")"
goal=0.95; [ "$scheme" = https ] && goal=0.9
cpu_ratio=$(awk -v a="$(median "${lg_cpus[@]}")" -v b="$(median "${wrk_cpus[@]}")" 'BEGIN {printf "%.2f", a / b}')
echo "ratio = loadgen req/s / wrk req/s (goal >= $goal over $scheme); cpu/10k = CPU seconds per 10,000 requests: loadgen's is ${cpu_ratio}x wrk's (goal <= 1.2x)"

timed taskset -c 0 "$loadgen" --headless -f bench/idle.toml -H "$url" $tls_flag -u "$idle_users" -r 5000 -t 20s --only-summary \
  --report-json "$work/idle.json" --target users=1 > /dev/null 2>&1 || true
idle_requests=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["steady_total"]["requests"])' "$work/idle.json")
echo "idle: $idle_users users waiting 1-3 s: peak RSS $(( $(rss_kb) / 1024 )) MB, $idle_requests requests in 20 s (goal < 100 MB over http, 150 MB over https)"
