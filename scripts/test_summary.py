"""One line per crate of a `cargo test --workspace` log, and the total, after the first lines of
each failed test's panic message (a CI log shown only in part keeps its end: the why of a failure
must be there, not only in the middle of thousands of lines).

Cargo prints each test binary as `Running <source> (target/debug/deps/<target>-<hash>)` and
each doc-test run as `Doc-tests <crate>`, then a `test result:` line; the crate is found in
`cargo metadata` by the target's name and source file.

    python3 scripts/test_summary.py METADATA.json TEST.log
"""
import json
import re
import sys
from collections import OrderedDict

metadata = json.load(open(sys.argv[1]))
# (target name with '-' as '_', source path relative to its crate) -> crate
targets = {}
for package in metadata["packages"]:
    root = package["manifest_path"].rsplit("/", 1)[0] + "/"
    for target in package["targets"]:
        source = target["src_path"].removeprefix(root)
        targets[(target["name"].replace("-", "_"), source)] = package["name"]

running = re.compile(r"^\s*Running (?:unittests )?(\S+) \(.*/([^/]+)-[0-9a-f]+(?:\.exe)?\)")
doc = re.compile(r"^\s*Doc-tests (\S+)")
panicked = re.compile(r"^thread '([^']+)' \(?\d*\)? ?panicked at (.*)$")
result = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
totals = OrderedDict()
crate = "?"
# (crate, test) -> the panic's location and the first lines of its message
panics = OrderedDict()
current_panic = None
for line in open(sys.argv[2], errors="replace"):
    if current_panic is not None:
        text = line.rstrip("\n")
        if not text or text.startswith("note: ") or len(current_panic) >= 8:
            current_panic = None
        else:
            current_panic.append(text[:400])
            continue
    if m := panicked.match(line):
        current_panic = panics.setdefault((crate, m.group(1)), [m.group(2)])
    elif m := running.match(line):
        crate = targets.get((m.group(2), m.group(1)), m.group(2))
    elif m := doc.match(line):
        crate = m.group(1).replace("_", "-")
    elif m := result.match(line):
        counts = totals.setdefault(crate, [0, 0, 0])
        for i in range(3):
            counts[i] += int(m.group(i + 1))

for (crate, test), lines in panics.items():
    print(f"  {crate} {test} panicked at {lines[0]}")
    for text in lines[1:]:
        print(f"      {text}")
failed_any = False
for crate, (passed, failed, ignored) in totals.items():
    failed_any |= failed > 0
    mark = "FAILED" if failed else "ok"
    print(f"  {crate:<16} {passed:4} passed {failed:4} failed {ignored:3} ignored  {mark}")
all_counts = [sum(c[i] for c in totals.values()) for i in range(3)]
print(f"  {'TOTAL':<16} {all_counts[0]:4} passed {all_counts[1]:4} failed {all_counts[2]:3} ignored")
