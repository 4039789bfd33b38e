#!/usr/bin/env bash
# Starts (or stops) a private PostgreSQL cluster and Redis server on free loopback ports, with
# their data in one folder, for the tests. Nothing touches the machine's own services.
#
#   eval "$(scripts/services.sh start DIR)"   # exports TEST_DATABASE_URL and TEST_REDIS_URL
#   scripts/services.sh stop DIR
#   scripts/services.sh pg-stop DIR | pg-start DIR   # stop or restart PostgreSQL alone (same port)
set -euo pipefail

usage() { echo "usage: $0 start|stop|pg-stop|pg-start DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 dir=$2

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 1; }
  echo "$bin"
}

# initdb and postgres refuse to run as root: run them as the `postgres` user Debian creates.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $action in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  bin=$(pg_bin)
  pg_port=$(free_port)
  redis_port=$(free_port)
  password=lt-test-$RANDOM$RANDOM
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_pg mkdir -p "$dir/pg"
  printf '%s\n' "$password" > "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/pwfile"
  as_pg "$bin/initdb" -D "$dir/pg" -U postgres_user --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  echo "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c shared_preload_libraries=pg_stat_statements" > "$dir/pg_options"
  as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w -t 60 start -o "$(cat "$dir/pg_options")" \
    >/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }
  echo "export TEST_DATABASE_URL=postgres://postgres_user:$password@127.0.0.1:$pg_port/postgres"
  echo "export TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  fi
  ;;
pg-stop)
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null
  ;;
pg-start)
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w -t 60 start -o "$(cat "$dir/pg_options")" >/dev/null
  ;;
*) usage ;;
esac
