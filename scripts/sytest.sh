#!/usr/bin/env bash
# Runs SyTest, the Matrix project's conformance suite, against a Trellis monolith and holds
# the result to the floor kept in tests/sytest/floor: fewer passes than the floor fails.
#
#   scripts/sytest.sh                      # every client-server test file, one server
#   scripts/sytest.sh tests/31sync         # one directory or file of SyTest (no floor check)
#
# Where SyTest comes from: $SYTEST_SRC, else ../shared/sytest next to the checkout (SyTest
# with its runner and glue). It is copied under the build directory before use, because the
# source may be read-only. Its Perl dependencies come from Debian (installed when missing,
# as root). PostgreSQL comes from scripts/services.sh unless TRELLIS_SYTEST_PG_ADMIN_URL
# names one. The server is built with PROFILE (default dev: a quicker build; SyTest is
# bound by waiting, not by the server's speed).
#
# Output: target/sytest/out/<time>/ (results.tap with every failure's requests and answers,
# summary.txt, summary.json), and target/sytest/out/latest pointing at it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PROFILE="${PROFILE:-dev}"
src="${SYTEST_SRC:-$root/../shared/sytest}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/sytest"
floor_file="$root/tests/sytest/floor"
passing_file="$root/tests/sytest/passing.txt"

if [ ! -x "$src/run-sytest.sh" ]; then
  echo "sytest: no SyTest at $src (set SYTEST_SRC to a directory holding run-sytest.sh)" >&2
  exit 1
fi

# A fresh copy of the runner and the suite, writable.
rm -rf "$work/suite"
mkdir -p "$work/suite" "$work/out"
cp -r "$src/." "$work/suite/"
chmod -R u+w "$work/suite"
runner="$work/suite/run-sytest.sh"

# (The runner keeps stand-ins for missing Perl modules under its output directory.)
deps=(--sytest "$work/suite/sytest" --out "$work/deps")
if ! "$runner" "${deps[@]}" --check-deps >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "sytest: SyTest's Perl modules are missing; as root: $runner ${deps[*]} --install-deps" >&2
    exit 1
  fi
  echo "sytest: installing SyTest's Perl modules from Debian" >&2
  apt-get update -qq >&2
  "$runner" "${deps[@]}" --install-deps >&2
  "$runner" "${deps[@]}" --check-deps >/dev/null
fi

pg_admin="${TRELLIS_SYTEST_PG_ADMIN_URL:-}"
if [ -z "$pg_admin" ]; then
  eval "$(scripts/services.sh start)"
  # The services script prints the test database's URL: SyTest creates its own databases there.
  pg_admin="${TRELLIS_TEST_DATABASE_URL/postgres:\/\//postgresql://}"
fi

echo "sytest: building trellis ($PROFILE)" >&2
cargo build --profile "$PROFILE" -p trellis-homeserver --bin trellis >&2
case "$PROFILE" in
  dev) bin="$target/debug/trellis" ;;
  *) bin="$target/$PROFILE/trellis" ;;
esac

out="$work/out/$(date -u +%Y%m%dT%H%M%S)"
export TRELLIS_BIN="$bin"
export TIMEOUT_FACTOR="${TIMEOUT_FACTOR:-3}"
status=0
"$runner" --sytest "$work/suite/sytest" --max-servers 1 \
  --pg-admin-url "$pg_admin" \
  --port-range "${TRELLIS_SYTEST_PORTS:-28800:28899}" \
  --label "trellis $(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($PROFILE)" \
  --hs-command "exec '$root/tests/sytest/start-trellis.sh'" \
  --out "$out" "$@" || status=$?
ln -sfn "$out" "$work/out/latest"

summary="$out/summary.json"
if [ ! -f "$summary" ]; then
  echo "sytest: the run left no summary (exit $status); see $out" >&2
  exit 1
fi
passed="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["passed"])' "$summary")"
if [ $# -gt 0 ]; then
  echo "sytest: $passed passed in the files asked for (the floor applies to whole runs only); $out" >&2
  exit 0
fi

# Tests that passed when the floor was last raised and did not pass now: named, so a
# regression is found at once even while the count stays above the floor.
if [ -f "$passing_file" ]; then
  python3 - "$summary" "$passing_file" <<'EOF' >&2
import json, sys
now = {(t["file"], t["name"]) for t in json.load(open(sys.argv[1]))["tests"] if t["status"] == "pass"}
lost = []
for line in open(sys.argv[2], encoding="utf-8"):
    line = line.rstrip("\n")
    if line and not line.startswith("#"):
        file, name = line.split("\t", 1)
        if (file, name) not in now:
            lost.append(line)
if lost:
    print(f"sytest: {len(lost)} test(s) that passed before did not pass now:")
    for l in lost:
        print("  " + l.replace("\t", "  "))
EOF
fi

# What Synapse passes and Trellis does not, from Synapse's own run shipped with SyTest.
if [ -f "$src/synapse-1hs.json" ]; then
  perl "$work/suite/summarise.pl" --compare "$src/synapse-1hs.json" "$summary" > "$out/compare-synapse.txt" 2>&1 || true
  echo "sytest: compared with Synapse: $out/compare-synapse.txt ($(grep -m1 '^Pass in baseline, not in current' "$out/compare-synapse.txt" || echo 'no comparison'))" >&2
fi

floor="$(tr -dc '0-9' < "$floor_file")"
echo "sytest: $passed passed; the floor is $floor; results in $out" >&2
if [ "$passed" -lt "$floor" ]; then
  echo "sytest: FAILED: $passed passes is below the floor of $floor" >&2
  exit 1
fi
if [ "$passed" -gt "$floor" ]; then
  echo "sytest: above the floor: raise it with  scripts/sytest-floor.sh $out" >&2
fi
exit 0
