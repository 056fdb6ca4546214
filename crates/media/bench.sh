#!/usr/bin/env bash
# The media numbers of docs/benchmarks.md: one upload and one download of a SIZE_MB file
# (default 100) through the gateway, with the wall time of each and the peak resident memory
# (VmHWM) of every server process, read from /proc after a fresh start.
#
# Usage: crates/media/bench.sh MODE            (from the repository root)
#   MODE      mono | split                    (split: every role its own process, 1 sync worker)
#   SIZE_MB   file size (default 100)          STORE   local | s3 (s3 needs moto_server)
#   TARGET    cargo target dir holding release/trellis (default ${CARGO_TARGET_DIR:-target})
# Needs the release build (cargo build --release -p trellis-homeserver), scripts/services.sh,
# and curl. Listens on 127.0.0.1:18608 and gRPC ports from 19600, to keep clear of 8008/9100.
set -euo pipefail
MODE=${1:?usage: bench.sh mono|split}
SIZE_MB=${SIZE_MB:-100}
STORE=${STORE:-local}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${TARGET:-${CARGO_TARGET_DIR:-$ROOT/target}}
BIN=$TARGET/release/trellis
HTTP=127.0.0.1:18608
eval "$("$ROOT/scripts/services.sh" start)"
unset TRELLIS_DATABASE__URL TRELLIS_REDIS__URL
OUT=$(mktemp -d /tmp/trellis-media-bench.XXXXXX)
DB=mediabench_$(date +%H%M%S)_$$
psql -h 127.0.0.1 -p 15432 -U postgres -qc "CREATE DATABASE $DB"
export TRELLIS_DATABASE__URL=postgres://postgres@127.0.0.1:15432/$DB RUST_LOG=warn
export TRELLIS_MEDIA__MAX_UPLOAD_BYTES=$(((SIZE_MB + 1) * 1024 * 1024))
MOTO_PID=
if [ "$STORE" = s3 ]; then
  moto_server -H 127.0.0.1 -p 19690 >"$OUT/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:19690/ && break; sleep 0.2; done
  curl -fs -X PUT http://127.0.0.1:19690/bench >/dev/null
  export TRELLIS_MEDIA__STORE=s3 TRELLIS_MEDIA__S3_BUCKET=bench TRELLIS_MEDIA__S3_ENDPOINT=http://127.0.0.1:19690 \
    TRELLIS_MEDIA__S3_ALLOW_HTTP=true TRELLIS_MEDIA__S3_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
fi

cleanup() {
  if [ "$MODE" = split ]; then SPLIT_DIR=$OUT/split "$ROOT/scripts/run-split.sh" stop 2>/dev/null || true; fi
  [ -f "$OUT/mono.pid" ] && kill "$(cat "$OUT/mono.pid")" 2>/dev/null || true
  [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
  sleep 1
  psql -h 127.0.0.1 -p 15432 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  rm -rf "$OUT/media" "$OUT/split/media" "$OUT/file"
}
trap cleanup EXIT

case $MODE in
  mono)
    TRELLIS_HTTP__LISTEN=$HTTP TRELLIS_GRPC__LISTEN=127.0.0.1:19650 TRELLIS_BUS__BACKEND=memory \
      TRELLIS_MEDIA__PATH=$OUT/media "$BIN" serve >"$OUT/server.log" 2>&1 &
    echo $! >"$OUT/mono.pid"
    PIDS="monolith=$(cat "$OUT/mono.pid")"
    ;;
  split)
    export TRELLIS_REDIS__URL=${TRELLIS_TEST_REDIS_URL:-redis://127.0.0.1:16379/}
    SPLIT_DIR=$OUT/split SPLIT_HTTP=$HTTP SPLIT_GRPC_BASE=19600 "$ROOT/scripts/run-split.sh" start "$BIN" 1 2>"$OUT/split.log"
    PIDS="gateway=$(cat "$OUT/split/gateway.pid") media=$(cat "$OUT/split/media.pid")"
    ;;
  *) echo "MODE is mono or split" >&2; exit 2 ;;
esac
for _ in $(seq 300); do curl -fs -o /dev/null "http://$HTTP/_matrix/client/versions" && break; sleep 0.1; done

hwm() { for p in $PIDS; do printf '%s %s MiB  ' "${p%%=*}" $(($(awk '/VmHWM/ {print $2}' "/proc/${p#*=}/status") / 1024)); done; }
echo "peak RSS after start:    $(hwm)"

curl -sS -XPOST -d '{"username":"bench","password":"benchpass","auth":{"type":"m.login.dummy"}}' \
  "http://$HTTP/_matrix/client/v3/register" >"$OUT/register.json"
TOKEN=$(sed 's/.*"access_token":"\([^"]*\)".*/\1/' "$OUT/register.json")
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$OUT/file"

# -T streams the file from disk (curl never holds it whole).
UP=$(curl -fsS -o "$OUT/upload.json" -w '%{time_total}' -X POST -T "$OUT/file" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' \
  "http://$HTTP/_matrix/media/v3/upload?filename=big.bin")
MXC=$(sed 's/.*"mxc:\/\/\([^"]*\)".*/\1/' "$OUT/upload.json")
echo "upload   ${SIZE_MB} MiB: ${UP} s = $(echo "$SIZE_MB / $UP" | bc -l | cut -c1-6) MiB/s"
echo "peak RSS after upload:   $(hwm)"
DOWN=$(curl -fsS -o "$OUT/down" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
  "http://$HTTP/_matrix/client/v1/media/download/$MXC")
echo "download ${SIZE_MB} MiB: ${DOWN} s = $(echo "$SIZE_MB / $DOWN" | bc -l | cut -c1-6) MiB/s"
echo "peak RSS after download: $(hwm)"
cmp -s "$OUT/file" "$OUT/down" && echo "download is byte-exact" || { echo "DOWNLOAD DIFFERS"; exit 1; }
rm -f "$OUT/down"
