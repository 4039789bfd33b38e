#!/usr/bin/env bash
# Makes (once) a venv with Playwright from PyPI, which drives Debian's chromium to record the
# HAR files `loadgen import har` is tested with (crates/loadgen/tests/har/record.py), and
# prints its path. Kept under target/ between runs; remade when the pinned version changes.
#
#   export PLAYWRIGHT_VENV=$(scripts/playwright-venv.sh)   -> target/tools/playwright-venv
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tools/playwright-venv
version=1.65.3
if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null)" != "$version" ]; then
  echo "==> installing playwright $version in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "playwright==$version" >&2
fi
echo "$PWD/$venv"
