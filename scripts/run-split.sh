#!/usr/bin/env bash
# Runs Trellis in split mode on this machine from a built binary: one process each for
# auth, rooms and media, N sync workers, and one or more gateways pointing at all of them,
# with the Redis bus between rooms and sync. `stack` is the topology of docker-compose.yml
# without containers: the same processes (a migration step, two auth replicas, rooms, media, two sync
# workers, two gateways behind nginx, the appservice sender and its standby) with the same
# configuration (deploy/compose/trellis.toml).
#
# Usage:
#   scripts/run-split.sh start [BINARY] [SYNC_WORKERS]   # default target/release/trellis, 2
#   scripts/run-split.sh stack [BINARY]                  # the compose topology (needs nginx)
#   scripts/run-split.sh smoke [URL]                     # a client end to end through URL
#   scripts/run-split.sh stop                            # stops what `start`/`stack` started
#   scripts/run-split.sh restart NAME                    # starts a stopped process again (rooms, sync-1, ...)
#   scripts/run-split.sh pids                            # PIDs, comma-separated (for --server-pid)
#   scripts/run-split.sh ops                             # "name ops-URL" of every process
#
# Needs TRELLIS_DATABASE__URL and TRELLIS_REDIS__URL in the environment, e.g. from
#   eval "$(scripts/services.sh start)"
# Optional settings (environment):
#   SPLIT_DIR         logs and PID files (default /tmp/trellis-split)
#   SPLIT_HTTP        client address: the gateway's, or the load balancer's when there are
#                     several gateways (default 127.0.0.1:8008); gateways then listen on the
#                     next ports (8009, 8010, ...)
#   SPLIT_GATEWAYS    gateways (default 1; `stack`: 2); more than one needs nginx
#   SPLIT_LB          `none`: no load balancer in front of several gateways (clients are
#                     given every gateway's address; the first answers on SPLIT_HTTP's port + 1)
#   SPLIT_STANDBY     1: a second rooms process, `rooms-2`, a hot standby on the same gRPC
#                     address (it binds it once it holds the event-writer lock)
#   SPLIT_AUTH        auth processes (default 1); more share auth's gRPC address with
#                     grpc.reuse_port, as replicas behind a Kubernetes Service: auth-2, ...
#                     take the operations ports after the standby's
#   SPLIT_APPSERVICE  1 (`stack`'s default): the appservice transaction sender, `appservice-1`,
#                     and its standby, `appservice-2` (ports after the auth replicas')
#   SPLIT_GRPC_BASE   first gRPC port: media BASE, auth BASE+1, rooms BASE+2,
#                     sync workers BASE+3 .. BASE+2+N (default 9100)
#   SPLIT_OPS_BASE    first operations port (/metrics, /health/ready), in the same order,
#                     gateways after the sync workers (default SPLIT_GRPC_BASE+100)
#   SPLIT_CONFIG      a TOML file every process reads (`stack`: deploy/compose/trellis.toml)
#   SPLIT_BALANCE     gateways' sync balancing: user | round_robin (default user)
#   SPLIT_PREFIX      Redis channel prefix (default split-<database name>), so deployments
#                     sharing one Redis do not hear each other
#   RUST_LOG          log filter of every process (default warn)
# Start waits until every process reports ready on /health/ready and the client address
# answers /_matrix/client/versions (at most 60 s), and exits non-zero, after stopping
# everything, if they do not.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${SPLIT_DIR:-/tmp/trellis-split}"
HTTP="${SPLIT_HTTP:-127.0.0.1:8008}"
BASE="${SPLIT_GRPC_BASE:-9100}"
OPS="${SPLIT_OPS_BASE:-$((BASE + 100))}"
BALANCE="${SPLIT_BALANCE:-user}"

usage() {
  sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Starts one process: start_role NAME OFFSET ROLES [extra env...]; OFFSET picks its gRPC and
# operations ports (extra env may override them). The command is kept in NAME.cmd, with the
# TRELLIS_ environment, for `restart`.
start_role() {
  local name=$1 offset=$2 roles=$3
  shift 3
  local cmd=(env)
  mapfile -t -O 1 cmd < <(env | grep '^TRELLIS_' | sort)
  cmd=(env "${cmd[@]:1}" TRELLIS_GRPC__LISTEN="127.0.0.1:$((BASE + offset))"
    TRELLIS_METRICS__LISTEN="127.0.0.1:$((OPS + offset))" RUST_LOG="${RUST_LOG:-warn}" "$@"
    "$BIN" serve --roles "$roles")
  printf '%q ' exec "${cmd[@]}" >"$DIR/$name.cmd"
  echo "127.0.0.1:$((OPS + offset))" >"$DIR/$name.ops"
  launch "$name"
  echo "started $name (pid $(cat "$DIR/$name.pid")) roles=$roles grpc=127.0.0.1:$((BASE + offset)) ops=127.0.0.1:$((OPS + offset))" >&2
}

launch() {
  bash "$DIR/$1.cmd" >>"$DIR/$1.log" 2>&1 &
  echo $! >"$DIR/$1.pid"
}

# Starts a stopped (killed) process again with the command it was started with, and waits
# until it is ready, or for a rooms process until it is alive (it may be the standby now).
restart() {
  local name=${1:?restart NAME}
  [ -f "$DIR/$name.cmd" ] || { echo "no process $name in $DIR" >&2; exit 2; }
  if [ -f "$DIR/$name.pid" ] && kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null; then
    echo "$name is running (pid $(cat "$DIR/$name.pid"))" >&2
    exit 1
  fi
  launch "$name"
  local probe=ready
  case "$name" in rooms*) probe=live ;; esac
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://$(cat "$DIR/$name.ops")/health/$probe" 2>/dev/null; then
      echo "restarted $name (pid $(cat "$DIR/$name.pid")), $probe" >&2
      return 0
    fi
    kill -0 "$(cat "$DIR/$name.pid")" 2>/dev/null || { echo "$name exited; see $DIR/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name not $probe within 60 s; see $DIR/$name.log" >&2
  exit 1
}

start() {
  BIN="${1:-target/release/trellis}"
  local workers="${2:-2}" gateways="${SPLIT_GATEWAYS:-1}" lb="${SPLIT_LB:-nginx}"
  [ -x "$BIN" ] || { echo "no executable at $BIN (cargo build --release -p trellis-homeserver)" >&2; exit 1; }
  [ -n "${TRELLIS_DATABASE__URL:-}" ] || { echo "TRELLIS_DATABASE__URL is not set" >&2; exit 1; }
  [ -n "${TRELLIS_REDIS__URL:-}" ] || { echo "TRELLIS_REDIS__URL is not set" >&2; exit 1; }
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "SYNC_WORKERS must be a positive number" >&2; exit 2; }
  [[ "$gateways" =~ ^[1-9][0-9]*$ ]] || { echo "SPLIT_GATEWAYS must be a positive number" >&2; exit 2; }
  if [ "$gateways" -gt 1 ] && [ "$lb" != none ] && ! command -v nginx >/dev/null; then
    echo "several gateways need nginx as their load balancer (apt-get install nginx-light)" >&2
    exit 1
  fi
  if compgen -G "$DIR/*.pid" >/dev/null; then
    echo "$DIR already holds PID files: run '$0 stop' first" >&2
    exit 1
  fi
  mkdir -p "$DIR/media"
  rm -f "$DIR"/*.ops "$DIR"/*.cmd
  local prefix="${SPLIT_PREFIX:-split-${TRELLIS_DATABASE__URL##*/}}"
  if [ -n "${SPLIT_CONFIG:-}" ]; then export TRELLIS_CONFIG="$SPLIT_CONFIG"; fi
  export TRELLIS_BUS__BACKEND=redis TRELLIS_BUS__CHANNEL_PREFIX="$prefix" TRELLIS_MEDIA__PATH="$DIR/media"

  # The migration step, once up front (each role would also do it, under a lock).
  RUST_LOG="${RUST_LOG:-warn}" "$BIN" migrate >"$DIR/migrate.log" 2>&1

  start_role media 0 media
  local auths="${SPLIT_AUTH:-1}"
  [[ "$auths" =~ ^[1-9][0-9]*$ ]] || { echo "SPLIT_AUTH must be a positive number" >&2; exit 2; }
  # Auth tells rooms of deactivations and profile changes (rooms' port is known up front).
  local to_rooms="TRELLIS_REMOTE__ROOMS=http://127.0.0.1:$((BASE + 2))"
  if [ "$auths" -gt 1 ]; then
    start_role auth 1 auth "$to_rooms" TRELLIS_GRPC__REUSE_PORT=true
  else
    start_role auth 1 auth "$to_rooms"
  fi
  start_role rooms 2 rooms
  # Sync workers register themselves in Redis (sync.discovery = "redis"); gateways follow
  # the registry, so workers can be added or stopped while everything runs.
  local i
  for ((i = 0; i < workers; i++)); do
    start_role "sync-$((i + 1))" "$((3 + i))" sync TRELLIS_SYNC__DISCOVERY=redis
  done
  local host="${HTTP%:*}" port="${HTTP##*:}" gateway_addrs=() addr
  for ((i = 0; i < gateways; i++)); do
    if [ "$gateways" -eq 1 ] && [ "$lb" != none ]; then addr="$HTTP"; else addr="$host:$((port + 1 + i))"; fi
    gateway_addrs+=("$addr")
    start_role "gateway-$((i + 1))" "$((3 + workers + i))" gateway \
      TRELLIS_HTTP__LISTEN="$addr" \
      TRELLIS_REMOTE__AUTH="http://127.0.0.1:$((BASE + 1))" \
      TRELLIS_REMOTE__ROOMS="http://127.0.0.1:$((BASE + 2))" \
      TRELLIS_REMOTE__MEDIA="http://127.0.0.1:$BASE" \
      TRELLIS_SYNC__DISCOVERY=redis \
      TRELLIS_SYNC__BALANCE="$BALANCE"
  done
  if [ "$gateways" -gt 1 ] && [ "$lb" != none ]; then
    start_lb "$port" "${gateway_addrs[@]}"
  fi
  local client="$HTTP"
  [ "$lb" = none ] && client="${gateway_addrs[0]}"
  if [ "${SPLIT_STANDBY:-0}" = 1 ]; then
    # Not ready by design while it waits for the lock: checked for life below, not readiness.
    start_role rooms-2 "$((3 + workers + gateways))" rooms TRELLIS_GRPC__LISTEN="127.0.0.1:$((BASE + 2))"
    mv "$DIR/rooms-2.ops" "$DIR/rooms-2.standby"
  fi
  for ((i = 2; i <= auths; i++)); do
    start_role "auth-$i" "$((2 + workers + gateways + i))" auth "$to_rooms" \
      TRELLIS_GRPC__LISTEN="127.0.0.1:$((BASE + 1))" TRELLIS_GRPC__REUSE_PORT=true
  done
  if [ "${SPLIT_APPSERVICE:-0}" = 1 ]; then
    # The appservice transaction sender and its standby (the second waits on an advisory
    # lock; both report ready). Their ports follow the auth replicas'.
    start_role appservice-1 "$((3 + workers + gateways + auths))" appservice
    start_role appservice-2 "$((4 + workers + gateways + auths))" appservice
  fi

  local waiting
  for _ in $(seq 1 600); do
    waiting=""
    for f in "$DIR"/*.ops; do
      curl -fsS -o /dev/null "http://$(cat "$f")/health/ready" 2>/dev/null || waiting+=" $(basename "$f" .ops)"
    done
    [ -f "$DIR/rooms-2.standby" ] && ! curl -fsS -o /dev/null "http://$(cat "$DIR/rooms-2.standby")/health/live" 2>/dev/null &&
      waiting+=" rooms-2"
    if [ -z "$waiting" ] && curl -fsS -o /dev/null "http://$client/_matrix/client/versions" 2>/dev/null; then
      [ -f "$DIR/rooms-2.standby" ] && mv "$DIR/rooms-2.standby" "$DIR/rooms-2.ops"
      echo "ready on http://$client ($gateways gateway(s), $workers sync worker(s), balance $BALANCE); logs in $DIR" >&2
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
  echo "not ready within 60 s:$waiting; see $DIR/*.log" >&2
  stop
  exit 1
}

# nginx in front of the gateways, from the load balancer configuration docker-compose.yml
# mounts (deploy/compose/nginx.conf.template), rendered for this host.
start_lb() {
  local listen=$1
  shift
  mkdir -p "$DIR/nginx"
  sed -e "s|\${LISTEN}|${HTTP%:*}:$listen|" -e "s|\${GATEWAY_1}|$1|" -e "s|\${GATEWAY_2}|${2:-$1}|" \
    "$ROOT/deploy/compose/nginx.conf.template" >"$DIR/nginx/lb.conf"
  # Gateways past the second join the same upstream.
  local extra
  for extra in "${@:3}"; do
    sed -i "s|^\(    server ${2}.*\)$|\1\n    server $extra max_fails=3 fail_timeout=5s;|" "$DIR/nginx/lb.conf"
  done
  cat >"$DIR/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/lb.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/nginx/body;
    proxy_temp_path $DIR/nginx/proxy;
    include $DIR/nginx/lb.conf;
}
EOF
  nginx -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/lb.log" >>"$DIR/lb.log" 2>&1 &
  echo $! >"$DIR/lb.pid"
  echo "started lb (pid $!) nginx on $HTTP -> $*" >&2
}

stack() {
  SPLIT_GATEWAYS="${SPLIT_GATEWAYS:-2}" SPLIT_AUTH="${SPLIT_AUTH:-2}" SPLIT_CONFIG="${SPLIT_CONFIG:-$ROOT/deploy/compose/trellis.toml}" \
    SPLIT_APPSERVICE="${SPLIT_APPSERVICE:-1}" start "${1:-target/release/trellis}" 2
}

# A client end to end through URL: two users register, one creates a room, the other joins
# it and long-polls /sync while the first sends a message, which must arrive. Also: the
# client port serves no /metrics, and every process started here is ready.
smoke() {
  local url="${1:-http://$HTTP}" run a b room since body
  run="smoke$(date +%s%N | tail -c 7)"
  json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
  register() {
    curl -fsS -XPOST -H 'Content-Type: application/json' \
      -d "{\"username\":\"$1\",\"password\":\"smoke-pass\",\"auth\":{\"type\":\"m.login.dummy\"}}" \
      "$url/_matrix/client/v3/register" | json "['access_token']"
  }
  a=$(register "${run}a")
  b=$(register "${run}b")
  room=$(curl -fsS -XPOST -H "Authorization: Bearer $a" -d '{"preset":"public_chat"}' \
    "$url/_matrix/client/v3/createRoom" | json "['room_id']")
  curl -fsS -o /dev/null -XPOST -H "Authorization: Bearer $b" -d '{}' "$url/_matrix/client/v3/join/$room"
  since=$(curl -fsS -H "Authorization: Bearer $b" "$url/_matrix/client/v3/sync?timeout=0" | json "['next_batch']")
  curl -fsS -H "Authorization: Bearer $b" "$url/_matrix/client/v3/sync?since=$since&timeout=20000" \
    >"$DIR/smoke-sync.json" &
  local poll=$!
  sleep 0.5
  curl -fsS -o /dev/null -XPUT -H "Authorization: Bearer $a" -d "{\"msgtype\":\"m.text\",\"body\":\"$run\"}" \
    "$url/_matrix/client/v3/rooms/$room/send/m.room.message/t1"
  wait "$poll"
  body=$(json "['rooms']['join']['$room']['timeline']['events'][-1]['content']['body']" <"$DIR/smoke-sync.json")
  [ "$body" = "$run" ] || { echo "smoke: the long-poll got '$body', not the message sent" >&2; return 1; }
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics")
  [ "$code" = 404 ] || { echo "smoke: the client port answered $code to /metrics" >&2; return 1; }
  local f
  for f in "$DIR"/*.ops; do
    [ -e "$f" ] || continue
    curl -fsS -o /dev/null "http://$(cat "$f")/health/ready" ||
      { echo "smoke: $(basename "$f" .ops) is not ready" >&2; return 1; }
    curl -fsS "http://$(cat "$f")/metrics" | grep '^trellis_' >/dev/null ||
      { echo "smoke: $(basename "$f" .ops) serves no metrics" >&2; return 1; }
  done
  echo "smoke: ok (register, createRoom, join, a message delivered to a long-poll through $url)" >&2
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
  rm -f "$DIR"/*.ops "$DIR"/*.standby
  echo "stopped" >&2
}

pids() {
  local out=() f
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] && out+=("$(cat "$f")")
  done
  (IFS=,; echo "${out[*]}")
}

ops() {
  local f
  for f in "$DIR"/*.ops; do
    [ -e "$f" ] && echo "$(basename "$f" .ops) http://$(cat "$f")"
  done
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stack) shift; stack "$@" ;;
  smoke) shift; smoke "$@" ;;
  stop) stop ;;
  restart) shift; restart "$@" ;;
  pids) pids ;;
  ops) ops ;;
  *) usage ;;
esac
