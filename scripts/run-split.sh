#!/usr/bin/env bash
# Runs Trellis in split mode on this machine from a built binary: one process each for
# auth, rooms and media, N sync workers, and one gateway that points at all of them, with
# the Redis bus between rooms and sync.
#
# Usage:
#   scripts/run-split.sh start [BINARY] [SYNC_WORKERS]   # default target/release/trellis, 2
#   scripts/run-split.sh stop                              # stops what `start` started
#   scripts/run-split.sh pids                              # PIDs, comma-separated (for --server-pid)
#
# Needs TRELLIS_DATABASE__URL and TRELLIS_REDIS__URL in the environment, e.g. from
#   eval "$(scripts/services.sh start)"
# Optional settings (environment):
#   SPLIT_DIR         logs and PID files (default /tmp/trellis-split)
#   SPLIT_HTTP        gateway listen address (default 127.0.0.1:8008)
#   SPLIT_GRPC_BASE   first gRPC port: media BASE, auth BASE+1, rooms BASE+2,
#                     sync workers BASE+3 .. BASE+2+N (default 9100)
#   SPLIT_BALANCE     gateway's sync balancing: user | round_robin (default user)
#   SPLIT_PREFIX      Redis channel prefix (default split-<database name>), so deployments
#                     sharing one Redis do not hear each other
#   RUST_LOG          log filter of every process (default warn)
# Start waits until the gateway answers /_matrix/client/versions (at most 60 s) and exits
# non-zero, after stopping everything, if it does not.
set -euo pipefail

DIR="${SPLIT_DIR:-/tmp/trellis-split}"
HTTP="${SPLIT_HTTP:-127.0.0.1:8008}"
BASE="${SPLIT_GRPC_BASE:-9100}"
BALANCE="${SPLIT_BALANCE:-user}"

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Starts one process: start_role NAME GRPC_PORT ROLES [extra env...]
start_role() {
  local name=$1 port=$2 roles=$3
  shift 3
  env "$@" TRELLIS_GRPC__LISTEN="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-warn}" \
    "$BIN" serve --roles "$roles" >"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
  echo "started $name (pid $!) roles=$roles grpc=127.0.0.1:$port" >&2
}

start() {
  BIN="${1:-target/release/trellis}"
  local workers="${2:-2}"
  [ -x "$BIN" ] || { echo "no executable at $BIN (cargo build --release -p trellis-homeserver)" >&2; exit 1; }
  [ -n "${TRELLIS_DATABASE__URL:-}" ] || { echo "TRELLIS_DATABASE__URL is not set" >&2; exit 1; }
  [ -n "${TRELLIS_REDIS__URL:-}" ] || { echo "TRELLIS_REDIS__URL is not set" >&2; exit 1; }
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "SYNC_WORKERS must be a positive number" >&2; exit 2; }
  if compgen -G "$DIR/*.pid" >/dev/null; then
    echo "$DIR already holds PID files: run '$0 stop' first" >&2
    exit 1
  fi
  mkdir -p "$DIR/media"
  local prefix="${SPLIT_PREFIX:-split-${TRELLIS_DATABASE__URL##*/}}"
  export TRELLIS_BUS__BACKEND=redis TRELLIS_BUS__CHANNEL_PREFIX="$prefix" TRELLIS_MEDIA__PATH="$DIR/media"

  # Migrate once up front (each role would also do it, under a lock).
  RUST_LOG="${RUST_LOG:-warn}" "$BIN" migrate >"$DIR/migrate.log" 2>&1

  start_role media "$BASE" media
  start_role auth "$((BASE + 1))" auth
  start_role rooms "$((BASE + 2))" rooms
  local sync_urls=() i port
  for ((i = 0; i < workers; i++)); do
    port=$((BASE + 3 + i))
    start_role "sync$i" "$port" sync
    sync_urls+=("\"http://127.0.0.1:$port\"")
  done
  local list
  list="[$(IFS=,; echo "${sync_urls[*]}")]"
  start_role gateway "$((BASE + 3 + workers))" gateway \
    TRELLIS_HTTP__LISTEN="$HTTP" \
    TRELLIS_REMOTE__AUTH="http://127.0.0.1:$((BASE + 1))" \
    TRELLIS_REMOTE__ROOMS="http://127.0.0.1:$((BASE + 2))" \
    TRELLIS_REMOTE__MEDIA="http://127.0.0.1:$BASE" \
    TRELLIS_REMOTE__SYNC="$list" \
    TRELLIS_SYNC__BALANCE="$BALANCE"

  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://$HTTP/_matrix/client/versions" 2>/dev/null; then
      echo "gateway ready on http://$HTTP ($workers sync worker(s), balance $BALANCE); logs in $DIR" >&2
      return 0
    fi
    for f in "$DIR"/*.pid; do
      if ! kill -0 "$(cat "$f")" 2>/dev/null; then
        echo "$(basename "$f" .pid) exited; see $DIR/$(basename "$f" .pid).log" >&2
        stop
        exit 1
      fi
    done
    sleep 0.1
  done
  echo "gateway did not answer within 60 s; see $DIR/*.log" >&2
  stop
  exit 1
}

stop() {
  local f pid
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
  done
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  echo "stopped" >&2
}

pids() {
  local out=() f
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] && out+=("$(cat "$f")")
  done
  (IFS=,; echo "${out[*]}")
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  pids) pids ;;
  *) usage ;;
esac
