#!/usr/bin/env bash
# Slow clients (issue 17): thousands of connections that never finish a request — silent,
# request heads trickled a byte every 5 s, bodies half sent then trickled — from source
# addresses 127.0.0.2 .. 127.0.0.254 (so `http.max_connections_per_address` applies to each
# attacking address), reopened whenever the server closes them, against a monolith and then
# a split gateway, while real clients on 127.0.0.1 register, send and sync
# (`trellis-loadtest --scenario slow-clients`). The run fails unless the real clients saw no
# error and a p99 under one second. Uses a private PostgreSQL and Redis.
#
# Usage: scripts/slow-clients.sh [BIN_DIR]   # holds trellis and trellis-loadtest (target/release)
# Settings (environment): SLOW_DIR (/tmp/trellis-slow), SLOW_PORT (18500: monolith +1,
#   split gateway +101, gRPC from +200, operations from +300, PostgreSQL +32, Redis +79),
#   SLOW_CONNECTIONS (5000), SLOW_CLIENTS (20), SLOW_DURATION (60 s), SLOW_MODES
#   (monolith,split).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${SLOW_DIR:-/tmp/trellis-slow}"
PORT="${SLOW_PORT:-18500}"
export TRELLIS_SERVICES_DIR="$DIR/services" TRELLIS_PG_PORT=$((PORT + 32)) TRELLIS_REDIS_PORT=$((PORT + 79))
BIN_DIR="${1:-$ROOT/target/release}"
BIN="$BIN_DIR/trellis" LOADTEST="$BIN_DIR/trellis-loadtest"
[ -x "$BIN" ] && [ -x "$LOADTEST" ] ||
  { echo "build first: cargo build --release -p trellis-homeserver -p trellis-loadtest" >&2; exit 1; }

# Every attacking connection is a descriptor here and one in the server.
ulimit -n "$(ulimit -Hn)"
echo "slow-clients: open-file limit $(ulimit -n)" >&2
mkdir -p "$DIR/media"
eval "$("$ROOT/scripts/services.sh" start)"
export TRELLIS_REDIS__URL
# Real clients register and send far more often than the per-user and per-address limits allow.
export TRELLIS_RATE_LIMITS__ENABLED=false RUST_LOG="${RUST_LOG:-warn}"
PG_BIN="${TRELLIS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  SPLIT_DIR="$DIR/split" "$ROOT/scripts/run-split.sh" stop 2>/dev/null || true
  "$ROOT/scripts/services.sh" stop
}
trap cleanup EXIT

fresh_db() {
  "$PG_BIN/psql" -h 127.0.0.1 -p "$TRELLIS_PG_PORT" -U postgres -qc "DROP DATABASE IF EXISTS $1" \
    -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://postgres@127.0.0.1:$TRELLIS_PG_PORT/$1"
}

# Runs the scenario against URL while sampling the descriptors of PID (the process that
# holds the client connections); prints the most it held.
attack() {
  local url=$1 pid=$2 most=0 n status=0
  (
    while sleep 1; do ls "/proc/$pid/fd" 2>/dev/null | wc -l; done >"$DIR/fds"
  ) &
  local sampler=$!
  "$LOADTEST" --scenario slow-clients --url "$url" --attack-connections "${SLOW_CONNECTIONS:-5000}" \
    --receivers "${SLOW_CLIENTS:-20}" --duration "${SLOW_DURATION:-60}" --request-timeout 30 || status=$?
  kill "$sampler"
  while read -r n; do [ "$n" -gt "$most" ] && most=$n; done <"$DIR/fds"
  echo "server process: at most $most open descriptors" >&2
  return "$status"
}

status=0
IFS=, read -r -a modes <<<"${SLOW_MODES:-monolith,split}"
for mode in "${modes[@]}"; do
  case "$mode" in
    monolith)
      echo "== monolith" >&2
      TRELLIS_DATABASE__URL=$(fresh_db slow_monolith) TRELLIS_HTTP__LISTEN="127.0.0.1:$((PORT + 1))" \
        TRELLIS_METRICS__LISTEN="127.0.0.1:$((PORT + 2))" TRELLIS_MEDIA__PATH="$DIR/media" \
        "$BIN" serve >"$DIR/monolith.log" 2>&1 &
      server=$!
      for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$((PORT + 2))/health/ready" 2>/dev/null && break
        sleep 0.2
      done
      attack "http://127.0.0.1:$((PORT + 1))" "$server" || status=1
      kill "$server"
      wait "$server" || true
      server=""
      ;;
    split)
      echo "== split (one gateway)" >&2
      export SPLIT_DIR="$DIR/split" SPLIT_HTTP="127.0.0.1:$((PORT + 101))"
      export SPLIT_GRPC_BASE=$((PORT + 200)) SPLIT_OPS_BASE=$((PORT + 300))
      TRELLIS_DATABASE__URL=$(fresh_db slow_split) "$ROOT/scripts/run-split.sh" start "$BIN" 1
      attack "http://$SPLIT_HTTP" "$(cat "$SPLIT_DIR/gateway-1.pid")" || status=1
      "$ROOT/scripts/run-split.sh" stop
      ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
exit "$status"
