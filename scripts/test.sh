#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, starts a private PostgreSQL
# cluster and Redis server on free loopback ports (data in a temporary folder, stopped at the
# end), checks that the Docker engine answers, then runs fmt, clippy, cargo machete and every
# test (every test binary, even after a failure), and ends with one line per test binary and the
# total.
#
#   scripts/test.sh            the suite
#   scripts/test.sh --stress   the suite with `stress-ng --cpu 2 --cpu-load 70` beside it, as on
#                              a busy shared CI runner (run it 3 times before a change lands)
set -euo pipefail
cd "$(dirname "$0")/.."

stress=false
for arg in "$@"; do
  case $arg in
    --stress) stress=true ;;
    *) echo "scripts/test.sh: unknown argument $arg (use --stress, or nothing)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

# Debian packages the tests use, each with a file that shows it is installed.
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v python3 >/dev/null || missing+=(python3)
# Real consumers of the CI files, JUnit XML (junitparser) and the example workflows (PyYAML),
# from Debian, so run by Debian's own interpreter (a pyenv python3 may come first on PATH).
/usr/bin/python3 -c 'import junitparser' 2>/dev/null || missing+=(python3-junitparser)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
command -v docker >/dev/null || missing+=(docker.io)
# docker/compose.load.yml and docker/stack.load.yml are checked by docker-compose itself.
command -v docker-compose >/dev/null || missing+=(docker-compose)
# A venv for kubernetes-validate (the Kubernetes manifests, checked offline).
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v chromium >/dev/null || missing+=(chromium)
# promtool lints the monitor's /metrics.
command -v promtool >/dev/null || missing+=(prometheus)
# The system's roots, which https connections trust by default.
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
# ps, and prlimit/setpriv for the thread-limit test.
command -v ps >/dev/null || missing+=(procps)
{ command -v prlimit && command -v setpriv; } >/dev/null || missing+=(util-linux)
# stress-ng: the diagnosis tests plant work outside the stack beside their runs.
command -v stress-ng >/dev/null || missing+=(stress-ng)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# cargo-machete: a dependency that no code uses fails the run, as a clippy warning does
# (built once into ~/.cargo/bin, kept between runs). Built while pip fetches the venvs below.
machete_pid=""
if ! cargo machete --version >/dev/null 2>&1; then
  say "installing cargo-machete (beside the venvs)"
  cargo install cargo-machete --locked --quiet &
  machete_pid=$!
  # Until the cleanup below takes over: never left running when a step fails.
  trap 'kill "$machete_pid" 2>/dev/null || true' EXIT
fi
# kubernetes-validate from PyPI, in a venv of its own under target/ (kept between runs), at a
# pinned version: its schemas are what the manifests are checked against (the test pins the
# Kubernetes release among them).
k8s_venv=target/tools/k8s-venv
k8s_validate_version=1.37.0
if [ "$("$k8s_venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$k8s_validate_version" ]; then
  say "installing kubernetes-validate $k8s_validate_version in $k8s_venv"
  rm -rf "$k8s_venv"
  python3 -m venv "$k8s_venv"
  "$k8s_venv/bin/pip" install -q "kubernetes-validate==$k8s_validate_version"
fi
# The Python reference stack (testbed-py/: FastAPI, SQLAlchemy, Celery) in a venv from PyPI,
# kept under target/ between runs; its tests find it through TESTBED_PY_VENV.
TESTBED_PY_VENV=$(scripts/python-venv.sh)
export TESTBED_PY_VENV
# Locust from PyPI (pinned) in a venv of its own under target/, kept between runs: the
# locust_compat tests compare loadgen's command line with it; they find it through LOCUST_VENV.
LOCUST_VENV=$(scripts/locust-venv.sh)
export LOCUST_VENV
# Playwright (PyPI) drives Debian's chromium to record the HAR files `loadgen import har` is
# tested with (tests/integration/imports.rs); found through PLAYWRIGHT_VENV.
PLAYWRIGHT_VENV=$(scripts/playwright-venv.sh)
export PLAYWRIGHT_VENV
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
if [ -n "$machete_pid" ]; then
  if ! wait "$machete_pid"; then
    echo "cargo install cargo-machete failed" >&2
    exit 1
  fi
  machete_pid=""
  trap - EXIT
fi

if ! docker info >/dev/null 2>&1; then
  echo "the Docker engine does not answer (docker info failed): start it (e.g. 'sudo service docker start')" >&2
  exit 1
fi

services=$(mktemp -d "${TMPDIR:-/tmp}/loadtest-services.XXXXXX")
chmod 755 "$services"
stress_pid=""
clippy_pid=""
cleanup() {
  # Either may have ended already.
  if [ -n "$stress_pid" ]; then kill "$stress_pid" 2>/dev/null || true; fi
  if [ -n "$clippy_pid" ]; then kill "$clippy_pid" 2>/dev/null || true; fi
  scripts/services.sh stop "$services"
  rm -rf "$services"
}
trap cleanup EXIT
say "starting PostgreSQL and Redis in $services"
eval "$(scripts/services.sh start "$services")"
export TEST_DATABASE_URL TEST_REDIS_URL

started=$SECONDS
say "cargo fmt --check"
cargo fmt --all --check
# Exits 1 when a crate lists a dependency its code never names.
say "cargo machete"
cargo machete
if $stress; then
  say "stress-ng --cpu 2 --cpu-load 70 beside the tests"
  stress-ng --cpu 2 --cpu-load 70 --quiet &
  stress_pid=$!
fi
say "cargo test --no-run, with cargo clippy beside it"
# Clippy is a compile of its own; beside the test build it fills the cores the build leaves idle
# (one big crate at a time, links), never beside a test. Its own target folder: one cargo holds
# a build folder's lock while it works.
CARGO_TARGET_DIR=target/clippy nice -n 10 cargo clippy --workspace --all-targets --locked \
  -- -D warnings > "$services/clippy.log" 2>&1 &
clippy_pid=$!
# Built once for the whole workspace (every `cargo test` below is `--workspace` too, so that the
# features of shared crates, hence the binaries, stay the same): the integration binary's path
# from cargo's messages.
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics > "$services/build.json"
built=$SECONDS
say "cargo clippy"
clippy_status=0
wait "$clippy_pid" || clippy_status=$?
clippy_pid=""
if [ "$clippy_status" = 0 ]; then
  tail -n 1 "$services/clippy.log"
else
  cat "$services/clippy.log"
  echo "cargo clippy failed: fix its warnings (cargo clippy --workspace --all-targets -- -D warnings)" >&2
  exit 1
fi
linted=$SECONDS
log="$services/test.log"
status=0
# Two steps. First the core-bound integration tests (those that take `support::HEAVY`: a Python
# stack, a capacity search at the machine's limit, a busy host planted with stress-ng), one at a
# time with nothing beside them: their figures are the machine's, and a neighbour halves them
# (a login loop measured at 13.5/s before a search, 6.8/s after, beside two other tests). Then
# every other test, three at once on 2 cores (most wait on containers, servers and fixed-length
# runs). Run apart, no heavy test holds a test thread idle waiting for the lock.
integration=$(python3 -c 'import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])' < "$services/build.json")
mapfile -t heavy < <(python3 scripts/heavy_tests.py "$integration")
if [ -z "$integration" ] || [ ${#heavy[@]} -eq 0 ]; then
  echo "no integration binary ($integration) or no heavy test in it: see scripts/heavy_tests.py" >&2
  exit 1
fi
say "cargo test: ${#heavy[@]} core-bound integration tests, one at a time"
# The line cargo prints before a test binary, for scripts/test_summary.py.
echo "     Running tests/integration/main.rs ($integration)" | tee "$log"
(cd crates/loadgen && "$integration" --exact --test-threads=1 "${heavy[@]}") 2>&1 | tee -a "$log" || status=$?
heavy_done=$SECONDS
say "cargo test: every other test, three at once"
skips=()
for name in "${heavy[@]}"; do skips+=(--skip "$name"); done
# --no-fail-fast: a failing binary does not hide the tests of the ones after it.
cargo test --workspace --locked --no-fail-fast -- --test-threads=3 --exact "${skips[@]}" 2>&1 | tee -a "$log" || status=$?
say "summary (build and clippy $((linted - started)) s, clippy $((linted - built)) s after the build; core-bound tests $((heavy_done - linted)) s, other tests $((SECONDS - heavy_done)) s)"
cargo metadata --format-version 1 --no-deps --locked > "$services/metadata.json"
python3 scripts/test_summary.py "$services/metadata.json" "$log"
exit "$status"
