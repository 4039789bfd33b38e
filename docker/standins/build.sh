#!/usr/bin/env bash
# Builds stand-ins for the PostgreSQL and Redis images of docker/compose.load.yml, FROM scratch,
# out of this machine's Debian binaries, for machines that cannot pull postgres:16 and redis:7
# (ours): they honour what the compose file uses of the official images (POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB; pg_isready and redis-cli for the health checks).
#
#   docker/standins/build.sh [TAG]     (default: latest) -> loadtest/postgres-standin, loadtest/redis-standin
#   POSTGRES_IMAGE=loadtest/postgres-standin:latest REDIS_IMAGE=loadtest/redis-standin:latest docker-compose ...
#
# Needs Debian's postgresql, redis-server, redis-tools and busybox-static (the shell that runs
# the PostgreSQL entrypoint).
set -euo pipefail
cd "$(dirname "$0")"
tag=${1:-latest}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pg_bin" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 1; }
pg_root=$(dirname "$pg_bin")
pg_version=$(basename "$pg_root")
for needed in /usr/bin/redis-check-rdb /usr/bin/redis-cli /bin/busybox; do
  [ -x "$needed" ] || { echo "$needed not found: apt-get install redis-server redis-tools busybox-static" >&2; exit 1; }
done

# Copies FILE to the same path under CONTEXT, with the dynamic loader and every library it links.
with_libraries() {
  local context=$1 file=$2 target=${3:-$2}
  mkdir -p "$context$(dirname "$target")"
  cp -L "$file" "$context$target"
  { ldd "$file" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | sort -u | while read -r lib; do
    mkdir -p "$context$(dirname "$lib")"
    cp -L "$lib" "$context$lib"
  done
}

build() {
  local context=$1 image=$2
  if ! tar -C "$context" -c . | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >"$context.log" 2>&1; then
    cat "$context.log" >&2
    exit 1
  fi
  rm -rf "$context" "$context.log"
  echo "built $image"
}

# PostgreSQL: the server, initdb and pg_isready with their share and lib folders, busybox as
# /bin/sh, a postgres user (the server refuses to run as root), and the entrypoint.
context=$(mktemp -d)
for binary in postgres initdb pg_isready; do
  with_libraries "$context" "$pg_bin/$binary"
done
for so in "$pg_root"/lib/*.so; do
  with_libraries "$context" "$so"
done
mkdir -p "$context/usr/share/postgresql" "$context/usr/share/zoneinfo/Etc" "$context/bin" "$context/etc"
cp -r "/usr/share/postgresql/$pg_version" "$context/usr/share/postgresql/"
cp -L /usr/share/zoneinfo/UTC "$context/usr/share/zoneinfo/UTC"
cp -L /usr/share/zoneinfo/UTC "$context/usr/share/zoneinfo/Etc/UTC"
cp /bin/busybox "$context/bin/busybox"
ln -s busybox "$context/bin/sh"
echo 'postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh' > "$context/etc/passwd"
echo 'postgres:x:999:' > "$context/etc/group"
mkdir -p "$context/var/lib/postgresql" "$context/var/run/postgresql" "$context/tmp"
chmod 777 "$context/var/lib/postgresql" "$context/var/run/postgresql"
chmod 1777 "$context/tmp"
cp postgres-entrypoint.sh "$context/bin/entrypoint"
chmod 755 "$context/bin/entrypoint"
cat > "$context/Dockerfile" <<DOCKERFILE
FROM scratch
COPY . /
ENV PATH=$pg_bin:/bin TZ=UTC PGDATA=/var/lib/postgresql/data
USER 999:999
EXPOSE 5432
ENTRYPOINT ["/bin/sh", "/bin/entrypoint"]
DOCKERFILE
build "$context" "loadtest/postgres-standin:$tag"

# Redis: the server (Debian's redis-check-rdb, which serves when called redis-server) and
# redis-cli.
context=$(mktemp -d)
with_libraries "$context" /usr/bin/redis-check-rdb /bin/redis-server
with_libraries "$context" /usr/bin/redis-cli /bin/redis-cli
mkdir -p "$context/data"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY . /
ENV PATH=/bin
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
DOCKERFILE
build "$context" "loadtest/redis-standin:$tag"
