#!/usr/bin/env bash
# Benchmark: the memory an idle user costs. loadgen runs `bench/idle.toml` (every user on its
# own connection, waiting 1 to 3 s between requests) with FEW and then MANY users against the
# local nginx, and the slope of peak RSS between the two runs is the cost of one user (what
# the process holds anyway cancels out). wrk is measured the same way, FEW then MANY
# connections, in the same script, so its KB per connection is beside ours. Over http and
# https; each figure is the median of ROUNDS slopes.
#
#   bench/memory.sh [ROUNDS] [FEW] [MANY]     (defaults: 3 2000 15000)
#   SCHEMES="http" bench/memory.sh ...        one scheme only (default: "http https")
#   LOADGEN=path/to/loadgen bench/memory.sh   another build (e.g. main's), nothing built
#
# Goals (issue 31): at most 4.4 KB per idle user over http (no more than wrk's per
# connection), at most 8 KB over https.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} few=${2:-2000} many=${3:-15000} schemes=${SCHEMES:-http https}
secs=${SECS:-20}
for tool in nginx wrk taskset openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (apt-get install nginx wrk util-linux openssl python3)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench needs 2 cores (the generator on one, nginx on the other)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
[ "$(ulimit -n)" -gt $((many + 1000)) ] || { echo "bench needs ulimit -n above $((many + 1000))" >&2; exit 1; }
if [ -z "${LOADGEN:-}" ]; then
  cargo build --release --locked -p loadgen
fi
loadgen=${LOADGEN:-$PWD/target/release/loadgen}

work=$(mktemp -d)
source bench/nginx.sh
trap '[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

# peak_kb CMD...: the command's peak resident set, KB (its exit status is not ours to judge:
# a run that loses a few requests still measures memory).
peak_kb() {
  /usr/bin/time -f '%M' -o "$work/time" "$@" >"$work/out" 2>&1 || true
  tail -1 "$work/time"
}
loadgen_kb() { # SCHEME URL USERS
  local tls=(); [ "$1" = https ] && tls=(--insecure)
  peak_kb taskset -c 0 "$loadgen" --headless -f bench/idle.toml -H "$2" "${tls[@]}" -u "$3" -r 5000 \
    -t "${secs}s" --only-summary --target users=1
}
wrk_kb() { # URL CONNECTIONS
  peak_kb taskset -c 0 wrk -t1 -c"$2" -d10s "$1/"
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
slope() { awk -v a="$1" -v b="$2" -v n="$few" -v m="$many" 'BEGIN {printf "%.2f", (b - a) / (m - n)}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

printf '%-6s %-6s %12s %12s %10s %12s %12s %10s\n' scheme round "lg $few MB" "lg $many MB" "lg KB/u" \
  "wrk $few MB" "wrk $many MB" "wrk KB/c"
for scheme in $schemes; do
  rm -f "$work/nginx.pid"
  start_nginx "$work" 1 "$([ "$scheme" = https ] && echo 1)"
  url=$scheme://127.0.0.1:$nginx_port
  lg_slopes=() wrk_slopes=()
  for round in $(seq "$rounds"); do
    lg_few=$(loadgen_kb "$scheme" "$url" "$few")
    lg_many=$(loadgen_kb "$scheme" "$url" "$many")
    wrk_few=$(wrk_kb "$url" "$few")
    wrk_many=$(wrk_kb "$url" "$many")
    lg_slope=$(slope "$lg_few" "$lg_many") wrk_slope=$(slope "$wrk_few" "$wrk_many")
    printf '%-6s %-6s %12.1f %12.1f %10s %12.1f %12.1f %10s\n' "$scheme" "$round" \
      "$(mb "$lg_few")" "$(mb "$lg_many")" "$lg_slope" \
      "$(mb "$wrk_few")" "$(mb "$wrk_many")" "$wrk_slope"
    lg_slopes+=("$lg_slope") wrk_slopes+=("$wrk_slope")
  done
  lg=$(median "${lg_slopes[@]}") wrk=$(median "${wrk_slopes[@]}")
  goal=4.4; [ "$scheme" = https ] && goal=8
  echo "$scheme: loadgen $lg KB per idle user, wrk $wrk KB per connection ($(awk -v a="$lg" -v b="$wrk" 'BEGIN {printf "%.2f", a / b}')x; goal <= $goal KB), medians of $rounds rounds"
  kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sleep 0.5
done
