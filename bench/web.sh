#!/usr/bin/env bash
# Benchmark: does the web UI, open and refreshing, cost load? The same run (USERS users, no
# wait, against a local nginx) headless, then in web mode with --autostart while a poller asks
# for what the open page asks for every second (/api/stats and /api/charts). Several rounds;
# prints both req/s and the median ratio (goal >= 0.95).
#
#   bench/web.sh [ROUNDS] [SECONDS] [USERS]      (defaults: 3 10 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-10} users=${3:-5000}
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --workspace --locked
loadgen=$PWD/target/release/loadgen
work=$(mktemp -d)
source bench/nginx.sh
start_nginx "$work"
ui_port=$(free_port)
trap 'kill "$(cat "$work/nginx.pid")" 2>/dev/null; kill "${web_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
url=http://127.0.0.1:$nginx_port
rps() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["steady_total"]["rps"]))' "$1"; }

printf '%-6s %14s %14s %8s\n' round "headless req/s" "web req/s" ratio
ratios=()
for round in $(seq "$rounds"); do
  "$loadgen" --headless -f bench/saturate.toml -H "$url" -u "$users" -r "$users" -t "${secs}s" \
    --only-summary --report-json "$work/headless.json" --target users=1 > /dev/null 2>&1 || true
  "$loadgen" -f bench/saturate.toml -H "$url" -u "$users" -r "$users" -t "${secs}s" --autostart \
    --autoquit 30 --web-port "$ui_port" > "$work/web.log" 2>&1 &
  web_pid=$!
  # The open page: the stats every second, the charts every second too (it asks every 2 s).
  end=$((SECONDS + secs + 1))
  while [ $SECONDS -lt $end ]; do
    curl -s "127.0.0.1:$ui_port/api/stats" > /dev/null || true
    curl -s "127.0.0.1:$ui_port/api/charts" > /dev/null || true
    sleep 1
  done
  until curl -s "127.0.0.1:$ui_port/api/stats" | grep -q '"state":"stopped"'; do sleep 0.5; done
  curl -s "127.0.0.1:$ui_port/api/report.json" > "$work/web.json"
  kill "$web_pid" 2>/dev/null; wait "$web_pid" 2>/dev/null || true
  a=$(rps "$work/headless.json") b=$(rps "$work/web.json")
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')
  printf '%-6s %14s %14s %8s\n' "$round" "$a" "$b" "$ratio"
  ratios+=("$ratio")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
echo "median ratio web/headless: $median (goal >= 0.95)"
