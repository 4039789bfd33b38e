#!/usr/bin/env bash
# Runs real Locust 2.x (from PyPI, in a venv) and loadgen with the same load against the testbed,
# then compares their CSV files column by column (compare.py). Exit 1 on a difference.
#
#   bench/locust-compat/run.sh [SECONDS]     (default 8; KEEP=1 keeps the files)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-8}
here=bench/locust-compat
venv=${LOCUST_VENV:-target/locust-venv}
missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$venv/bin/locust" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'locust>=2,<3'; }
cargo build --workspace --locked

work=$(mktemp -d)
chmod 755 "$work"
trap 'kill "${testbed_pid:-}" 2>/dev/null; scripts/services.sh stop "$work/services" >/dev/null 2>&1; [ -n "${KEEP:-}" ] && echo "files kept in $work" || rm -rf "$work"' EXIT
mkdir -m 755 "$work/services"
eval "$(scripts/services.sh start "$work/services")"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL=$TEST_DATABASE_URL REDIS_URL=$TEST_REDIS_URL target/debug/testbed --listen "127.0.0.1:$port" \
  > "$work/testbed.log" 2>&1 &
testbed_pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/health/", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
PY
host=http://127.0.0.1:$port

"$venv/bin/locust" -f "$here/locustfile.py" --headless -u 5 -r 5 -t "${secs}s" -H "$host" \
  --csv "$work/locust" --only-summary > "$work/locust.out" 2>&1 || true
target/debug/loadgen -f "$here/probe.toml" --headless -u 5 -r 5 -t "${secs}s" -H "$host" \
  --csv "$work/loadgen" --only-summary > "$work/loadgen.out" 2>&1 || true
"$venv/bin/locust" --version
tail -n 5 "$work/locust.out" "$work/loadgen.out"
python3 "$here/compare.py" "$work/locust" "$work/loadgen"

echo; echo "== again with --csv-full-history =="
"$venv/bin/locust" -f "$here/locustfile.py" --headless -u 5 -r 5 -t "${secs}s" -H "$host" \
  --csv "$work/locust-full" --csv-full-history --only-summary > "$work/locust-full.out" 2>&1 || true
target/debug/loadgen -f "$here/probe.toml" --headless -u 5 -r 5 -t "${secs}s" -H "$host" \
  --csv "$work/loadgen-full" --csv-full-history --only-summary > "$work/loadgen-full.out" 2>&1 || true
python3 "$here/compare.py" "$work/locust-full" "$work/loadgen-full" full
