#!/usr/bin/env bash
# Starts (or reuses) a PostgreSQL 15 and a Redis on loopback for development and tests,
# installing them from Debian first if they are missing, and prints `export` lines:
#     eval "$(scripts/services.sh start)"
#     scripts/services.sh stop
# Data lives under $TRELLIS_SERVICES_DIR (default /tmp/trellis-services): it must be
# reachable by the `postgres` user, because PostgreSQL refuses to run as root.
set -euo pipefail

DIR="${TRELLIS_SERVICES_DIR:-/tmp/trellis-services}"
PG_PORT="${TRELLIS_PG_PORT:-15432}"
REDIS_PORT="${TRELLIS_REDIS_PORT:-16379}"
PG_BIN="${TRELLIS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
PGDATA="$DIR/pgdata"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_missing() {
  local need=()
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ -n "$PG_BIN" ] && [ -x "$PG_BIN/pg_ctl" ] || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
      exit 1
    fi
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
  fi
}

start() {
  install_missing
  mkdir -p "$DIR"
  chmod 755 "$DIR"

  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  fi

  if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
    fi
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
      rm -rf "$PGDATA"
      mkdir -p "$PGDATA"
      chmod 700 "$PGDATA"
      [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
      as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 --no-sync >"$DIR/initdb.log" 2>&1
    fi
    # Durability settings are relaxed: this server holds development and test data only.
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c fsync=off \
          -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null
  fi

  for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping | grep -q PONG
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 30
  "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'trellis'" | grep -q 1 ||
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE trellis"

  echo "export TRELLIS_DATABASE__URL=postgres://postgres@127.0.0.1:$PG_PORT/trellis"
  echo "export TRELLIS_REDIS__URL=redis://127.0.0.1:$REDIS_PORT/"
  echo "export TRELLIS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "export TRELLIS_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/"
}

stop() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ -f "$PGDATA/PG_VERSION" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
