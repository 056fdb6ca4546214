#!/usr/bin/env bash
# Spec-driven fuzzing: Schemathesis (from PyPI, installed when missing) generates requests
# from every client-server OpenAPI file of the Matrix specification and sends them,
# authenticated, to a Trellis monolith on a fresh database (tests/fuzz/fuzz.py). Any 5xx, any
# request left unanswered, any panic in the server's log, or any response-schema violation
# not documented in tests/fuzz/errata.toml fails the run.
#
#   scripts/fuzz.sh                  # the CI run: up to 40 generated cases per operation
#   FUZZ_EXAMPLES=100 scripts/fuzz.sh
#
# Where the spec comes from: $MATRIX_SPEC, else ../shared/matrix-spec next to the checkout.
# The server is built with PROFILE (default dev). Output: target/fuzz/<time>/ (a report per
# spec file, the server's log, summary.json) and target/fuzz/latest.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PROFILE="${PROFILE:-dev}"
spec="${MATRIX_SPEC:-$root/../shared/matrix-spec}/data/api/client-server"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/fuzz/$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$out"
ln -sfn "$out" "$target/fuzz/latest"

if [ ! -d "$spec" ]; then
  echo "fuzz: no client-server API files at $spec (set MATRIX_SPEC)" >&2
  exit 1
fi
if ! command -v st >/dev/null 2>&1 || ! python3 -c 'import schemathesis' 2>/dev/null; then
  echo "fuzz: installing schemathesis from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check schemathesis >&2
fi

echo "fuzz: building trellis ($PROFILE)" >&2
cargo build --profile "$PROFILE" -p trellis-homeserver --bin trellis >&2
case "$PROFILE" in
  dev) bin="$target/debug/trellis" ;;
  *) bin="$target/$PROFILE/trellis" ;;
esac

if [ -z "${TRELLIS_TEST_DATABASE_URL:-}" ]; then
  eval "$(scripts/services.sh start)"
fi
db="trellis_fuzz_$$"
admin="$TRELLIS_TEST_DATABASE_URL"
psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
db_url="${admin%/*}/$db"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

config="$out/trellis.toml"
cat > "$config" <<EOF
server_name = "localhost"

[http]
listen = "127.0.0.1:$port"

[database]
url = "$db_url"

[registration]
enabled = true
allow_guests = true

[rate_limits]
enabled = false

[media]
path = "$out/media"

[sync]
# Generated long-polls end soon: the fuzzer waits for every answer.
max_timeout_ms = 5000

[telemetry]
log_format = "text"
log_filter = "warn"
EOF

# The file above is the whole configuration.
for name in $(env | sed -n 's/^\(TRELLIS_[A-Za-z0-9_]*\)=.*/\1/p'); do
  case "$name" in TRELLIS_TEST_*) ;; *) unset "$name" ;; esac
done
NO_COLOR=1 RUST_BACKTRACE=1 "$bin" --config "$config" serve > "$out/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "fuzz: the server did not start; see $out/server.log" >&2; exit 1; }
  sleep 0.2
done

status=0
python3 tests/fuzz/fuzz.py --origin "http://127.0.0.1:$port" --spec "$spec" --out "$out" \
  --examples "${FUZZ_EXAMPLES:-40}" --seed "${FUZZ_SEED:-17}" || status=$?

panics="$(grep -c 'panicked' "$out/server.log" || true)"
echo "fuzz: $panics panic(s) in the server's log; results in $out" >&2
if [ "$panics" -gt 0 ]; then
  grep -m5 -A2 'panicked' "$out/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED" >&2
fi
exit $status
