#!/usr/bin/env bash
# One benchmark run as recorded in docs/benchmarks.md: a fresh database, the server in the
# given mode, pidstat in the background, trellis-loadtest, then everything stopped and the
# database dropped.
#
# Usage: crates/loadtest/bench.sh MODE RECEIVERS      (from the repository root)
#   MODE       mono | split1 | split2 | splitN   (monolith, or split mode with N sync workers)
#   RATE       total msg/s (default 10)      DURATION   measured seconds (default 30)
#   WARMUP     seconds of load before the measured window (default 5)
#   LT_ARGS    extra trellis-loadtest arguments, e.g. "--scenario first-sync" ("held" runs
#              the server with MIMALLOC_PURGE_DELAY=0)
#   BENCH_OUT  where each run's directory goes (default /tmp/trellis-bench)
#   TARGET     cargo target dir holding release/trellis and release/trellis-loadtest
#              (default ${CARGO_TARGET_DIR:-target})
#   PG_PORT    PostgreSQL port (default 15432, scripts/services.sh's, which runs without fsync;
#              point it at a cluster with fsync and synchronous_commit on for durable figures).
#              When that cluster loads pg_stat_statements, the statements' times from the
#              start of the window are written to pgss.txt
# Needs the release build (cargo build --release -p trellis-homeserver -p trellis-loadtest),
# scripts/services.sh (PostgreSQL on 15432, Redis on 16379), curl, and pidstat (sysstat).
# The server listens on 127.0.0.1:8008 (metrics on 9190, or run-split.sh's operations ports),
# so nothing else may use those ports.
set -euo pipefail
MODE=${1:?usage: bench.sh MODE RECEIVERS} N=${2:?usage: bench.sh MODE RECEIVERS}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${TARGET:-${CARGO_TARGET_DIR:-$ROOT/target}}
PG_PORT=${PG_PORT:-15432}
BIN=$TARGET/release/trellis
LT=$TARGET/release/trellis-loadtest
eval "$("$ROOT/scripts/services.sh" start)"
TAG=${MODE}_${N}_$(date +%H%M%S)
OUT=${BENCH_OUT:-/tmp/trellis-bench}/$TAG
mkdir -p "$OUT"
DB=bench_$TAG
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $DB"
export TRELLIS_DATABASE__URL=postgres://postgres@127.0.0.1:$PG_PORT/$DB RUST_LOG=warn
# The load registers and sends from one address at rates no client would: no rate limits.
export TRELLIS_RATE_LIMITS__ENABLED=false
# Every simulated client comes from 127.0.0.1: no per-address connection cap either.
export TRELLIS_HTTP__MAX_CONNECTIONS_PER_ADDRESS=0
export SPLIT_DIR=$OUT/split
# Memory per held long-poll: the allocator returns freed pages at once, so RSS follows what
# is live rather than what registration's password hashing left behind.
case "${LT_ARGS:-}" in *held*) export MIMALLOC_PURGE_DELAY=0 ;; esac
case $MODE in
  mono)
    TRELLIS_BUS__BACKEND=memory TRELLIS_MEDIA__PATH=$OUT/media TRELLIS_METRICS__LISTEN=127.0.0.1:9190 \
      "$BIN" serve >"$OUT/server.log" 2>&1 &
    echo $! >"$OUT/mono.pid"
    PIDS=$(cat "$OUT/mono.pid")
    for _ in $(seq 100); do
      curl -fs -o /dev/null http://127.0.0.1:8008/_matrix/client/versions && break
      sleep 0.1
    done
    ;;
  split*)
    "$ROOT/scripts/run-split.sh" start "$BIN" "${MODE#split}" 2>"$OUT/split-start.log"
    PIDS=$("$ROOT/scripts/run-split.sh" pids)
    ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
pidstat -u -h -C 'trellis|postgres|redis' 5 >"$OUT/pidstat.txt" 2>&1 &
PIDSTAT=$!
# Setup writes a burst (users, joins, initial syncs); vacuuming after it keeps autovacuum of
# those writes out of the measured window, as on a server whose users joined long before.
AFTER_SETUP="psql -h 127.0.0.1 -p $PG_PORT -U postgres -d $DB -qc 'VACUUM ANALYZE'; \
  psql -h 127.0.0.1 -p $PG_PORT -U postgres -d $DB -qAtc 'SELECT pg_stat_statements_reset()' >/dev/null 2>&1; \
  date +%s.%N >$OUT/window-start"
CMD=("$LT" --url http://127.0.0.1:8008 --receivers "$N" --senders 2 --rate "${RATE:-10}" --duration "${DURATION:-30}"
  --warmup "${WARMUP:-5}" --server-pid $PIDS --json --after-setup "$AFTER_SETUP" ${LT_ARGS:-})
echo "${CMD[*]}" >"$OUT/cmd.txt"
set +e
"${CMD[@]}" >"$OUT/report.txt" 2>"$OUT/loadtest.err"
RC=$?
set -e
kill "$PIDSTAT" 2>/dev/null || true  # pidstat may be missing or gone
# The server's own counters (fast and slow sync paths, request latencies) for the run, from
# each process's operations port (metrics are never on the client port).
case $MODE in
  mono) curl -fs http://127.0.0.1:9190/metrics >"$OUT/metrics.txt" 2>/dev/null || true ;;
  split*)
    "$ROOT/scripts/run-split.sh" ops | while read -r name url; do
      curl -fs "$url/metrics" >"$OUT/metrics-$name.txt" 2>/dev/null || true
    done
    ;;
esac
case $MODE in
  mono)
    kill "$(cat "$OUT/mono.pid")"
    while kill -0 "$(cat "$OUT/mono.pid")" 2>/dev/null; do sleep 0.2; done
    ;;
  split*) "$ROOT/scripts/run-split.sh" stop 2>/dev/null ;;
esac
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -c "SELECT calls, round(total_exec_time::numeric, 1) AS ms, \
  round((total_exec_time / calls)::numeric, 3) AS ms_per_call, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 160) \
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 30" >"$OUT/pgss.txt" 2>/dev/null || rm -f "$OUT/pgss.txt"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "DROP DATABASE $DB" || true
echo "== $TAG (exit $RC), results in $OUT"
grep -v '^{' "$OUT/report.txt"
exit $RC
