"""The integration tests that take `support::HEAVY`, one full name a line: the test command runs
them first, one at a time with nothing beside them (see scripts/test.sh).

A test is heavy when its function's body calls `HEAVY.lock()`: the lock stays the one mark, so
`cargo test` alone keeps them apart too. Every name found must be one the binary lists, or this
fails (a renamed module would otherwise slip a heavy test into the other lane).

    python3 scripts/heavy_tests.py INTEGRATION_TEST_BINARY
"""
import pathlib
import re
import subprocess
import sys

sources = pathlib.Path(__file__).resolve().parent.parent / "crates/loadgen/tests/integration"
function = re.compile(r"^(?:pub )?(?:async )?fn (\w+)\(")
heavy = []
for source in sorted(sources.glob("*.rs")):
    current = None
    for line in source.read_text().splitlines():
        if m := function.match(line):
            current = m.group(1)
        if "HEAVY.lock()" in line and current and f"{source.stem}::{current}" not in heavy:
            heavy.append(f"{source.stem}::{current}")

listed = subprocess.run(
    [sys.argv[1], "--list", "--format", "terse"], capture_output=True, text=True, check=True
).stdout
names = {line.removesuffix(": test") for line in listed.splitlines() if line.endswith(": test")}
unknown = [name for name in heavy if name not in names]
if unknown or not heavy:
    sys.exit(f"scripts/heavy_tests.py: heavy tests the binary does not list: {unknown or 'none found'}")
print("\n".join(heavy))
