#!/usr/bin/env bash
# Chaos under load in split mode (issue 17). Starts a private PostgreSQL and Redis, and on
# them Trellis split (scripts/run-split.sh: two gateways without a load balancer, two sync
# workers, two auth replicas sharing one gRPC address (as behind a Kubernetes Service; the
# deployment runs two), media, a rooms writer and a hot standby on the same gRPC address), then runs
# `trellis-loadtest --scenario chaos`: senders at a steady rate into a few rooms, receivers
# long-polling /sync from their own next_batch with read receipts, media uploads and
# downloads, every client given both gateways' URLs. Meanwhile, one after another:
#   gateway   kill -9 gateway-1, restart it after CHAOS_DOWN s
#   sync      kill -9 sync-1, restart it after CHAOS_DOWN s
#   rooms     kill -9 the rooms process holding the writer lock (the standby takes over),
#             restart it after CHAOS_DOWN s as the new standby
#   auth      kill -9 one auth replica, restart it after CHAOS_DOWN s (CHAOS_AUTH=1: the only one)
#   media     kill -9 media, restart it after CHAOS_DOWN s
#   postgres  pg_ctl restart -m fast
#   redis     shutdown, start again after CHAOS_DOWN s
#   pause     SIGSTOP sync-2 for CHAOS_PAUSE s, then SIGCONT
# and prints per fault: recovery of sends and deliveries, the 5xx and connection errors
# clients saw, the load held; then lost and duplicated deliveries over all receivers (the
# run fails unless both are 0). Processes that exit by themselves, or whose /health/live
# fails three times in a row, are restarted as a supervisor would, and listed at the end.
#
# Usage: scripts/chaos.sh [BIN_DIR]         # holds trellis and trellis-loadtest (target/release)
# Settings (environment): CHAOS_DIR (/tmp/trellis-chaos), CHAOS_PORT (18000: gateways on
#   +1 and +2, gRPC from +100, operations from +200, PostgreSQL +432, Redis +379),
#   CHAOS_RATE (20 msg/s), CHAOS_SENDERS (4), CHAOS_RECEIVERS (40), CHAOS_ROOMS (4),
#   CHAOS_GAP (30 s of load after each fault), CHAOS_DOWN (5), CHAOS_PAUSE (30),
#   CHAOS_FAULTS (all of the above, in that order; a comma-separated subset), CHAOS_AUTH (2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$ROOT/scripts/chaos.sh"
export CHAOS_DIR="${CHAOS_DIR:-/tmp/trellis-chaos}"
export CHAOS_PORT="${CHAOS_PORT:-18000}"
export CHAOS_DOWN="${CHAOS_DOWN:-5}" CHAOS_PAUSE="${CHAOS_PAUSE:-30}"
export SPLIT_DIR="$CHAOS_DIR/split" SPLIT_HTTP="127.0.0.1:$CHAOS_PORT" SPLIT_GATEWAYS=2 SPLIT_LB=none
export SPLIT_AUTH="${CHAOS_AUTH:-2}" SPLIT_STANDBY=1 SPLIT_GRPC_BASE=$((CHAOS_PORT + 100)) SPLIT_OPS_BASE=$((CHAOS_PORT + 200))
export TRELLIS_SERVICES_DIR="$CHAOS_DIR/services" TRELLIS_PG_PORT=$((CHAOS_PORT + 432))
export TRELLIS_REDIS_PORT=$((CHAOS_PORT + 379))
PG_BIN="${TRELLIS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
SPLIT="$ROOT/scripts/run-split.sh"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

log() { echo "chaos: $*" >&2; }

pid_of() { cat "$SPLIT_DIR/$1.pid"; }

# The processes a fault is working on, which the supervisor leaves alone meanwhile.
hold() { echo "$1" >"$CHAOS_DIR/held"; }
release() { : >"$CHAOS_DIR/held"; }

kill_restart() {
  hold "$1"
  kill -9 "$(pid_of "$1")"
  sleep "$CHAOS_DOWN"
  "$SPLIT" restart "$1"
  release
}

# The rooms process that is ready holds the writer lock.
writer() {
  local name
  for name in rooms rooms-2; do
    if curl -fsS -o /dev/null "http://$(cat "$SPLIT_DIR/$name.ops")/health/ready" 2>/dev/null; then
      echo "$name"
      return
    fi
  done
  echo "no rooms process is ready" >&2
  return 1
}

fault() {
  case "$1" in
    gateway) kill_restart gateway-1 ;;
    sync) kill_restart sync-1 ;;
    rooms) kill_restart "$(writer)" ;;
    auth) kill_restart auth ;;
    media) kill_restart media ;;
    postgres) as_postgres "$PG_BIN/pg_ctl" -D "$TRELLIS_SERVICES_DIR/pgdata" -m fast -w restart >/dev/null ;;
    redis)
      redis-cli -p "$TRELLIS_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
      sleep "$CHAOS_DOWN"
      "$ROOT/scripts/services.sh" start >/dev/null
      ;;
    pause)
      hold sync-2
      kill -STOP "$(pid_of sync-2)"
      sleep "$CHAOS_PAUSE"
      kill -CONT "$(pid_of sync-2)"
      release
      ;;
    *) echo "unknown fault $1" >&2; return 2 ;;
  esac
}

# A supervisor: restarts a process that exited, or whose liveness failed 3 times in a row
# (1 s apart), unless a fault holds it; notes each restart in $CHAOS_DIR/supervisor.log.
supervise() {
  declare -A fails
  local f name pid
  while sleep 1; do
    for f in "$SPLIT_DIR"/*.cmd; do
      name=$(basename "$f" .cmd)
      grep -qx "$name" "$CHAOS_DIR/held" 2>/dev/null && continue
      pid=$(pid_of "$name")
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "$(date +%T) $name exited; restarting" >>"$CHAOS_DIR/supervisor.log"
        "$SPLIT" restart "$name" 2>>"$CHAOS_DIR/supervisor.log" || true
      elif ! curl -fsS -m 2 -o /dev/null "http://$(cat "$SPLIT_DIR/$name.ops")/health/live" 2>/dev/null; then
        fails[$name]=$((${fails[$name]:-0} + 1))
        if [ "${fails[$name]}" -ge 3 ]; then
          echo "$(date +%T) $name not live 3 times; killing and restarting" >>"$CHAOS_DIR/supervisor.log"
          kill -9 "$pid" 2>/dev/null || true
          sleep 0.2
          "$SPLIT" restart "$name" 2>>"$CHAOS_DIR/supervisor.log" || true
          fails[$name]=0
        fi
      else
        fails[$name]=0
      fi
    done
  done
}

run() {
  local dir="${1:-$ROOT/target/release}"
  local bin="$dir/trellis" loadtest="$dir/trellis-loadtest"
  [ -x "$bin" ] && [ -x "$loadtest" ] ||
    { echo "build first: cargo build --release -p trellis-homeserver -p trellis-loadtest" >&2; exit 1; }
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  mkdir -p "$CHAOS_DIR"
  release
  : >"$CHAOS_DIR/supervisor.log"
  eval "$("$ROOT/scripts/services.sh" start)"
  export TRELLIS_DATABASE__URL TRELLIS_REDIS__URL
  # Every fault keeps its clients waiting no longer than a failover should take.
  export TRELLIS_HEALTH__INTERVAL_MS=500
  # Each sender sends several messages a second, far above the per-user message limit.
  export TRELLIS_RATE_LIMITS__ENABLED=false
  supervisor=""
  cleanup() {
    [ -n "$supervisor" ] && kill "$supervisor" 2>/dev/null
    "$SPLIT" stop 2>/dev/null || true
    "$ROOT/scripts/services.sh" stop
  }
  trap cleanup EXIT
  "$SPLIT" start "$bin" 2
  supervise &
  supervisor=$!

  local faults=() name
  IFS=, read -r -a names <<<"${CHAOS_FAULTS:-gateway,sync,rooms,auth,media,postgres,redis,pause}"
  for name in "${names[@]}"; do
    faults+=(--fault "$name=$SELF fault $name")
  done
  local status=0
  "$loadtest" --scenario chaos \
    --url "http://127.0.0.1:$((CHAOS_PORT + 1)),http://127.0.0.1:$((CHAOS_PORT + 2))" \
    --rate "${CHAOS_RATE:-20}" --senders "${CHAOS_SENDERS:-4}" --receivers "${CHAOS_RECEIVERS:-40}" \
    --rooms "${CHAOS_ROOMS:-4}" --warmup 10 --fault-gap "${CHAOS_GAP:-30}" --drain 60 \
    --poll-timeout-ms 30000 "${faults[@]}" || status=$?
  log "supervisor restarts: $(grep -c restarting "$CHAOS_DIR/supervisor.log" || true)"
  cat "$CHAOS_DIR/supervisor.log" >&2
  return "$status"
}

case "${1:-}" in
  fault) shift; fault "$@" ;;
  -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2 ;;
  *) run "$@" ;;
esac
