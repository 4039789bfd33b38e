#!/usr/bin/env bash
# Makes (once) the venv of the Python reference stack, testbed-py/, from PyPI, and prints its
# path. Kept under target/ between runs; remade when testbed-py/requirements.txt changes.
#
#   scripts/python-venv.sh        -> target/tools/py-venv
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/py-venv
requirements=testbed-py/requirements.txt
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "==> installing testbed-py's requirements in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
echo "$PWD/$venv"
