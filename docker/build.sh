#!/usr/bin/env bash
# Builds the loadgen, monitor and testbed images FROM scratch: each release binary with the
# shared libraries it links (no base image can be pulled on our machines).
#
#   docker/build.sh [TAG]      (default: latest) -> loadtest/loadgen, loadtest/monitor, loadtest/testbed
#
# LOADTEST_BIN_DIR=DIR takes the binaries already built there instead of building release ones
# (the tests use their own debug build), and LOADTEST_IMAGES="loadgen" builds only those images.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-latest}
images=${LOADTEST_IMAGES:-loadgen monitor testbed}
if [ -n "${LOADTEST_BIN_DIR:-}" ]; then
  bin_dir=$LOADTEST_BIN_DIR
else
  bin_dir=target/release
  cargo build --release --workspace --locked
fi
for binary in $images; do
  context=$(mktemp -d)
  mkdir -p "$context/bin" "$context/etc/ssl/certs" "$context/tmp"
  cp "$bin_dir/$binary" "$context/bin/"
  # The dynamic loader and every library the binary needs, at their own paths.
  ldd "$bin_dir/$binary" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
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
