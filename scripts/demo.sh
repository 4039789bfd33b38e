#!/usr/bin/env bash
# The main job in one command: starts a private PostgreSQL and Redis (installing them and ffmpeg
# if missing), then `loadgen demo` (the loadgen-demo binary): the testbed with a planted bottleneck, a load test against it
# with the monitor watching PostgreSQL, Redis and the host, the summary and the findings, and
# results/demo-report.html (exit code 1 when the planted bottleneck misses the targets, as it
# should). Flags go to `loadgen demo` (e.g. --bottleneck jobs, -u 50, -t 60s).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (apt-get)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The first build takes minutes (about 5 on 2 cores): cargo shows its progress.
echo "==> cargo build --release --workspace"
cargo build --release --workspace --locked

services=$(mktemp -d "${TMPDIR:-/tmp}/loadgen-demo.XXXXXX")
chmod 755 "$services"
trap 'scripts/services.sh stop "$services"; rm -rf "$services"' EXIT
eval "$(scripts/services.sh start "$services")"
mkdir -p results && DATABASE_URL=$TEST_DATABASE_URL REDIS_URL=$TEST_REDIS_URL target/release/loadgen demo --html results/demo-report.html "$@"
