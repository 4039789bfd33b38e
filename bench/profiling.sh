#!/usr/bin/env bash
# Benchmark: what sampling with py-spy costs the API it profiles. A uvicorn app (the profiles
# test's fixture, `crates/monitor/tests/fixtures/profiled`, serving `/` alone) on core 0, wrk
# on core 1 against it; each round measures req/s without the profiler and with `monitor`
# (profiles only, release build, on core 1 beside wrk) sampling uvicorn at its default 50 Hz,
# and every other Python process of the stack on the host (the last column counts them: on a
# shared machine, the profiler's CPU on wrk's core lowers wrk's rate, not the API's). Prints
# every round, the API's CPU per request, the medians and the median ratio (goal: under 5 %).
#
#   bench/profiling.sh [ROUNDS] [SECONDS] [CONNECTIONS]     (defaults: 10 5 50)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10} secs=${2:-5} connections=${3:-50}
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

# The API's CPU so far, clock ticks (utime + stime of /proc/PID/stat).
api_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$api/stat"; }
# req/s of one wrk run; sets `cpu_us`, the API's CPU per request in µs (steadier than req/s
# on a machine that other work shares: it does not depend on how often the API got a core).
rps() {
  local before after out requests
  before=$(api_ticks)
  out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${secs}s" "http://127.0.0.1:$port/")
  after=$(api_ticks)
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.0f", t / hz * 1e6 / n}')
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

# Starts the monitor and waits until a tick has uvicorn's samples (profiling starts at the
# first tick that sees it).
profile_on() {
  taskset -c 1 "$monitor" --no-host --quiet --interval 1s --out "$work/ticks.jsonl" >/dev/null 2>&1 &
  mon=$!
  pids+=("$mon")
  for _ in $(seq 100); do
    grep -q "\"pid\":$api" "$work/ticks.jsonl" 2>/dev/null && break
    sleep 0.1
  done
}
profile_off() {
  # The monitor's own CPU over its life, percent of one core.
  mon_cpu=$(awk -v hz="$(getconf CLK_TCK)" -v up="$(cut -d' ' -f1 /proc/uptime)" \
    '{sub(/.*\) /, ""); printf "%.0f", ($12 + $13) / hz * 100 / (up - $20 / hz)}' "/proc/$mon/stat")
  kill "$mon"; wait "$mon" 2>/dev/null || true
  read -r samples profiled < <(python3 - "$work/ticks.jsonl" "$api" <<'PY'
import json, sys
ticks = [json.loads(line) for line in open(sys.argv[1])]
processes = [p for t in ticks for r in t["sources"].values()
             for p in (r.get("values") or {}).get("processes", [])]
rounds = [p["samples"] for p in processes if p["pid"] == int(sys.argv[2])]
print(f"{sum(rounds[1:-1]) / max(len(rounds) - 2, 1):.0f} {len({p['pid'] for p in processes})}")
PY
)
  rm -f "$work/ticks.jsonl"
}

# Each round measures both, in turns (off then on, then on then off), so that a drift of the
# machine's other work weighs on both sides; the ratio is taken per round, then its median.
# monitor CPU: the profiler's own, % of one core (on wrk's core), and how many Python
# processes of the host it sampled (every uvicorn, gunicorn, celery... on the machine).
printf '%-6s %14s %14s %8s %12s %10s %10s %12s\n' round "off req/s" "on req/s" ratio "samples/s" \
  "off µs/req" "on µs/req" "monitor CPU"
offs=() ons=() ratios=() off_cpu=() on_cpu=()
for round in $(seq "$rounds"); do
  # `$(rps)` would run in a subshell and lose `cpu_us`: through a file instead.
  if [ $((round % 2)) = 1 ]; then
    rps >"$work/off"; off_us=$cpu_us; profile_on; rps >"$work/on"; on_us=$cpu_us; profile_off
  else
    profile_on; rps >"$work/on"; on_us=$cpu_us; profile_off; rps >"$work/off"; off_us=$cpu_us
  fi
  off=$(cat "$work/off") on=$(cat "$work/on")
  ratio=$(awk -v off="$off" -v on="$on" 'BEGIN {printf "%.3f", on / off}')
  printf '%-6s %14s %14s %8s %12s %10s %10s %12s\n' "$round" "$off" "$on" "$ratio" "$samples" \
    "$off_us" "$on_us" "$mon_cpu% ($profiled)"
  offs+=("$off") ons+=("$on") ratios+=("$ratio") off_cpu+=("$off_us") on_cpu+=("$on_us")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
off=$(median "${offs[@]}") on=$(median "${ons[@]}") ratio=$(median "${ratios[@]}")
off_us=$(median "${off_cpu[@]}") on_us=$(median "${on_cpu[@]}")
echo "median CPU of the API per request: ${off_us} µs without profiling, ${on_us} µs with"
awk -v off="$off" -v on="$on" -v ratio="$ratio" 'BEGIN {
  printf "median req/s: %.0f without profiling, %.0f with; median ratio per round %.3f, %.1f %% lost (goal: under 5 %%)\n",
    off, on, ratio, (1 - ratio) * 100 }'
