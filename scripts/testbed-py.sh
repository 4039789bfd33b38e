#!/usr/bin/env bash
# Runs the Python reference stack of testbed-py/ (uvicorn + one celery worker) in the
# foreground, prints the loadgen flags to point at it, and stops it on Ctrl-C.
#
#   scripts/testbed-py.sh run [--plant NAME]... [--port N]
#
# NAME: bcrypt-on-loop, unindexed-query, n-plus-one, small-pool, failing-error-handler,
# sync-sleep (each sets PLANT_<NAME>=1; testbed-py/README.md says what it plants).
# The stack uses DATABASE_URL and REDIS_URL when they are set (REDIS_URL with its db, the
# contract's 1); otherwise it starts PostgreSQL and Redis of its own with scripts/services.sh
# and stops them at the end. RATE_LIMIT_PER_MINUTE defaults to 60 as the contract's; set it
# higher for a load test (loadgen says so when it meets the limit).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() { echo "usage: $0 run [--plant NAME]... [--port N]" >&2; exit 2; }
[ "${1:-}" = run ] || usage
shift
plants=() port=8000
while [ $# -gt 0 ]; do
  case $1 in
  --plant) [ $# -ge 2 ] || usage; plants+=("$2"); shift 2 ;;
  --port) [ $# -ge 2 ] || usage; port=$2; shift 2 ;;
  *) usage ;;
  esac
done

for plant in "${plants[@]}"; do
  case $plant in
  bcrypt-on-loop | unindexed-query | n-plus-one | small-pool | failing-error-handler | sync-sleep)
    var=PLANT_$(echo "$plant" | tr 'a-z-' 'A-Z_')
    export "$var=1"
    echo "==> planted: $var=1" >&2
    ;;
  *) echo "unknown plant: $plant" >&2; usage ;;
  esac
done

work=$(mktemp -d)
chmod 755 "$work"
services=""
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  [ -n "$services" ] && "$root/scripts/services.sh" stop "$services" >/dev/null
  echo "==> stopped; logs were in $work" >&2
}
trap stop INT TERM EXIT

if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  services=$work/services
  eval "$(scripts/services.sh start "$services")"
  psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE ffmpeg_api"
  psql -q "${TEST_DATABASE_URL%/*}/ffmpeg_api" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  export DATABASE_URL=${TEST_DATABASE_URL%/*}/ffmpeg_api REDIS_URL=$TEST_REDIS_URL/1
fi
export STORAGE_DIR=${STORAGE_DIR:-$work/storage} PYTHONUNBUFFERED=1
venv=$(scripts/python-venv.sh)

cd "$root/testbed-py"
setsid "$venv/bin/uvicorn" app.main:app --host 127.0.0.1 --port "$port" >"$work/api.log" 2>&1 &
pids+=($!)
setsid "$venv/bin/celery" -A app.worker worker --concurrency 2 --loglevel INFO >"$work/worker.log" 2>&1 &
pids+=($!)

for _ in $(seq 600); do
  curl -fs "http://127.0.0.1:$port/api/v1/health/" >/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/api.log" >&2; exit 1; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/api/v1/health/" >/dev/null || { cat "$work/api.log" >&2; exit 1; }

redis_base=${REDIS_URL%/*} redis_db=${REDIS_URL##*/}
# The URL holds a password: in a file of the user's, not on the screen.
(umask 077 && printf '%s\n' "$DATABASE_URL" >"$work/database_url")
cat <<EOF
testbed-py runs: API pid ${pids[0]}, worker pid ${pids[1]}; logs $work/api.log, $work/worker.log
Point loadgen at it:

  loadgen -H http://127.0.0.1:$port \\
    --monitor-postgres "\$(cat $work/database_url)" \\
    --monitor-redis '$redis_base' --monitor-redis-queue $redis_db/celery \\
    --worker-log $work/worker.log

Ctrl-C stops it.
EOF
wait "${pids[0]}"
