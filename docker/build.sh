#!/usr/bin/env bash
# Builds the loadgen, monitor and testbed images FROM scratch: each release binary with the
# shared libraries it links (no base image can be pulled on our machines).
#
#   docker/build.sh [TAG]      (default: latest) -> loadtest/loadgen, loadtest/monitor, loadtest/testbed
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-latest}
cargo build -q --release -p loadgen -p monitor -p testbed
for binary in loadgen monitor testbed; do
  context=$(mktemp -d)
  mkdir -p "$context/bin" "$context/etc/ssl/certs" "$context/tmp"
  cp "target/release/$binary" "$context/bin/"
  # The dynamic loader and every library the binary needs, at their own paths.
  ldd "target/release/$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$context$(dirname "$lib")"
    cp -L "$lib" "$context$lib"
  done
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$context/etc/ssl/certs/"
  printf 'FROM scratch\nCOPY . /\nENTRYPOINT ["/bin/%s"]\n' "$binary" > "$context/Dockerfile"
  # The classic builder: BuildKit (buildx) is not installed everywhere, and FROM scratch needs
  # nothing it offers.
  if ! tar -C "$context" -c . | DOCKER_BUILDKIT=0 docker build -q -t "loadtest/$binary:$tag" - >"$context.log" 2>&1; then
    cat "$context.log" >&2
    exit 1
  fi
  rm -f "$context.log"
  rm -rf "$context"
  echo "built loadtest/$binary:$tag"
done
