"""Compares the CSV files of a Locust run and a loadgen run of the same load, column by column:
names, headers, row names and order, the form of every value (integer, float, N/A, empty,
timestamp), line ends, and the sums Locust's consumers rely on. Exit 1 on any difference."""
import csv
import re
import sys

locust_prefix, loadgen_prefix = sys.argv[1], sys.argv[2]
# "full": both ran with --csv-full-history, so the history has every name's row each second.
full_history = sys.argv[3:] == ["full"]
problems = []


def kind(value):
    if value == "":
        return "empty"
    if value == "N/A":
        return "N/A"
    if re.fullmatch(r"-?\d+", value):
        return "int"
    if re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", value):
        return "float"
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value):
        return "utc"
    return "text"


def read(prefix, name):
    path = f"{prefix}_{name}.csv"
    raw = open(path, "rb").read()
    if raw.count(b"\n") != raw.count(b"\r\n"):
        problems.append(f"{path}: not every line ends in CRLF")
    with open(path, newline="") as f:
        return list(csv.reader(f))


def compare(name, key_columns, value_rows):
    theirs, ours = read(locust_prefix, name), read(loadgen_prefix, name)
    print(f"\n{name}.csv: Locust {len(theirs) - 1} rows, loadgen {len(ours) - 1} rows")
    if theirs[0] != ours[0]:
        problems.append(f"{name}.csv header: Locust {theirs[0]} loadgen {ours[0]}")
        return theirs, ours
    if key_columns:
        keys = lambda rows: [tuple(r[i] for i in key_columns) for r in rows[1:]]
        if keys(theirs) != keys(ours):
            problems.append(f"{name}.csv rows: Locust {keys(theirs)} loadgen {keys(ours)}")
    for label, pick in value_rows:
        a, b = pick(theirs[1:]), pick(ours[1:])
        if a is None or b is None:
            continue
        print(f"  {'column':32} {'Locust':>12} {'loadgen':>12}   ({label})")
        for column, x, y in zip(theirs[0], a, b):
            same = kind(x) == kind(y) or {kind(x), kind(y)} <= {"int", "float"} and column in FLOATY
            mark = "ok" if same else "DIFFERS"
            print(f"  {column:32} {kind(x):>12} {kind(y):>12}   {mark}")
            if not same:
                problems.append(f"{name}.csv {label} {column}: Locust {x!r}, loadgen {y!r}")
    return theirs, ours


# Columns Python writes as int or float depending on the value (e.g. `0` before any request).
FLOATY = {"Average Content Size", "Total Average Content Size", "Min Response Time",
          "Max Response Time", "Total Min Response Time", "Total Max Response Time"}

compare("stats", [0, 1], [("first row", lambda r: r[0]), ("Aggregated", lambda r: r[-1])])
theirs, ours = compare(
    "stats_history",
    None,
    [("last row", lambda r: r[-1] if r else None)],
)
for tool, rows in (("Locust", theirs), ("loadgen", ours)):
    stamps = [(r[0], r[2], r[3]) for r in rows[1:]]
    if len(set(stamps)) != len(stamps):
        problems.append(f"{tool}: duplicate timestamps in stats_history.csv")
for tool, prefix in (("Locust", locust_prefix), ("loadgen", loadgen_prefix)):
    stats = read(prefix, "stats")
    history = read(prefix, "stats_history")
    total = sum(int(r[2]) for r in stats[1:-1])
    if int(stats[-1][2]) != total:
        problems.append(f"{tool}: Aggregated {stats[-1][2]} is not the sum {total}")
    last_total = int(history[-1][17])
    print(f"{tool}: Aggregated {stats[-1][2]} = sum of rows {total}; history's last total {last_total}")
    # Locust writes its history once a second and may stop before the last one; loadgen's
    # last row is the end of the run.
    if tool == "loadgen" and last_total != total:
        problems.append(f"loadgen: history's last total {last_total} is not Aggregated {total}")
if full_history:
    last_group = lambda rows: [(r[2], r[3]) for r in rows[1:] if r[0] == rows[-1][0]]
    if last_group(theirs) != last_group(ours):
        problems.append(f"history's last second: Locust {last_group(theirs)} loadgen {last_group(ours)}")
    print(f"  last second's rows: {last_group(ours)}")
    first_entry = lambda rows: next((r for r in rows if r[3] != "Aggregated"), None)
    a, b = first_entry(theirs[1:]), first_entry(ours[1:])
    if a is None or b is None:
        problems.append("no per-name row in a --csv-full-history history")
    else:
        for column, x, y in zip(theirs[0], a, b):
            same = kind(x) == kind(y) or {kind(x), kind(y)} <= {"int", "float"} and column in FLOATY
            if not same:
                problems.append(f"stats_history.csv per-name row {column}: Locust {x!r}, loadgen {y!r}")
    # Each name's last history total is its row in _stats.csv (loadgen writes the end of the run).
    counts = {(r[0], r[1]): r[2] for r in read(loadgen_prefix, "stats")[1:]}
    last = {}
    for r in ours[1:]:
        last[(r[2], r[3])] = r[17]
    for (method, name), count in last.items():
        if name != "Aggregated" and counts.get((method, name)) != count:
            problems.append(f"loadgen: {method} {name} history total {count}, _stats.csv {counts.get((method, name))}")
compare("failures", [0, 1], [("first row", lambda r: r[0] if r else None)])
compare("exceptions", None, [])

print()
if problems:
    print("DIFFERENCES:")
    for p in problems:
        print(" -", p)
    sys.exit(1)
print("same files, column by column")
