#!/usr/bin/env bash
# Raises SyTest's floor to what a run achieved: tests/sytest/floor gets its pass count and
# tests/sytest/passing.txt the tests that passed (file, tab, name), which scripts/sytest.sh
# names when one of them stops passing. The floor only goes up: a run with fewer passes
# than the current floor is refused.
#
#   scripts/sytest-floor.sh target/sytest/out/latest
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run="${1:?usage: $0 SYTEST_OUTPUT_DIR}"
python3 - "$run/summary.json" "$root/tests/sytest/floor" "$root/tests/sytest/passing.txt" <<'PY'
import json, sys
summary, floor_file, passing_file = sys.argv[1:]
data = json.load(open(summary))
passed = data["totals"]["passed"]
old = int(open(floor_file).read().strip() or 0)
if passed < old:
    sys.exit(f"sytest-floor: {passed} passes is below the current floor of {old}; not lowering it")
names = sorted(f'{t["file"]}\t{t["name"]}' for t in data["tests"] if t["status"] == "pass")
with open(passing_file, "w", encoding="utf-8") as f:
    f.write("# SyTest tests that pass (file, tab, test name): written by scripts/sytest-floor.sh\n")
    f.writelines(n + "\n" for n in names)
open(floor_file, "w").write(f"{passed}\n")
print(f"sytest-floor: floor {old} -> {passed}")
PY
