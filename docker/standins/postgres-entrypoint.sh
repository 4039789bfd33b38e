# The PostgreSQL stand-in's entrypoint (busybox sh): what the official image does with
# POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB on its first start, then the server.
set -eu
user=${POSTGRES_USER:-postgres}
# POSTGRES_PASSWORD_FILE (a Docker secret) in place of POSTGRES_PASSWORD, as the official image.
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  IFS= read -r POSTGRES_PASSWORD < "$POSTGRES_PASSWORD_FILE" || [ -n "$POSTGRES_PASSWORD" ]
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?the stand-in, as the official image, needs POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" > /tmp/password
  initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/password --auth-local=trust --auth-host=scram-sha-256 \
    --no-locale -E UTF8 >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
  rm -f /tmp/password
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\" OWNER \"$user\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
