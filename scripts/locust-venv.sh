#!/usr/bin/env bash
# Makes (once) a venv with Locust from PyPI, at the version loadgen's command line is compared
# with (crates/loadgen/tests/integration/locust_compat.rs), and prints its path. Kept under
# target/ between runs; remade when the pinned version changes.
#
#   export LOCUST_VENV=$(scripts/locust-venv.sh)   -> target/tools/locust-venv
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/locust-venv
version=2.47.0
if [ "$("$venv/bin/python" -c 'import locust; print(locust.__version__)' 2>/dev/null)" != "$version" ]; then
  echo "==> installing locust $version in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "locust==$version" >&2
fi
echo "$PWD/$venv"
