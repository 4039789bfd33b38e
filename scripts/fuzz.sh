#!/usr/bin/env bash
# Runs the parsers' property tests (crates/loadgen/tests/integration/fuzz.rs) far longer than the
# test suite does: the HTTP answer parser, the scenario parser and the template engine, on random
# and mutated input. Bounded by the number of cases, so it always ends.
#
#   scripts/fuzz.sh [CASES]     (default 20000 per property; the suite runs 256)
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-20000}
echo "==> $cases cases per property"
PROPTEST_CASES=$cases cargo test --release -p loadgen --test integration fuzz:: -- --test-threads 2
