#!/usr/bin/env bash
# fractality: the benchmarks, in one command, as root on Debian bookworm.
#
#   bash scripts/bench.sh [--stock] [--nodes N] [--events N] [--seed S] [--users N] [--reps N]
#                         [--reuse] [scenario ...]
#
#   defaults: 100000 nodes, 1000000 events, seed 42, every scenario but resonance_1536
#   (`--list` names them; resonance_1536 runs when named).
#
#   --stock  runs against a second server with PostgreSQL's stock configuration (no
#            shared_buffers, work_mem, maintenance_work_mem or max_wal_size tuning): data in
#            target/bench-pgdata-stock, port ${FRACTALITY_BENCH_STOCK_PORT:-54333}; its own
#            database, so --reuse works on each server. The tuned server stays the default.
#            (The harness itself still sets maintenance_work_mem = 2GB in its session for the
#            HNSW builds, the documented bulk-load path, on both servers.)
#
#   1. setup.sh, then builds and installs the extension in release mode;
#   2. starts a bench server: data in target/bench-pgdata, port ${FRACTALITY_BENCH_PORT:-54332}
#      (tuned: shared_buffers 1GB, work_mem 64MB, maintenance_work_mem 2GB, max_wal_size 4GB);
#      with --stock the stock server above;
#   3. recreates the database fractality_bench with CREATE EXTENSION fractality CASCADE
#      (with --reuse it keeps the database, and the data when it was loaded at the same scale
#      and seed);
#   4. runs the fractality-bench binary (tests/client): it generates and loads the data
#      (deterministic for a seed), runs the scenarios, prints a markdown table and appends it
#      to target/bench-results.md.
#
# The server is left running, so that a re-run with --reuse skips the load and the data can be
# inspected (psql -h localhost -p 54332 -U postgres fractality_bench). Stop it with:
#   source scripts/lib.sh; server_stop target/bench-pgdata     (target/bench-pgdata-stock)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

DB=fractality_bench
RESULTS="$ROOT/target/bench-results.md"

reuse=0
profile=tuned
args=()  # what fractality-bench gets: every argument but --stock
for arg in "$@"; do
    case "$arg" in
        --stock) profile=stock; continue ;;
        --reuse) reuse=1 ;;
        -h|--help|--list)  # nothing to set up for these
            exec cargo run --quiet --release -p fractality-client --bin fractality-bench -- "$arg" ;;
    esac
    args+=("$arg")
done

if [ "$profile" = stock ]; then
    PORT="${FRACTALITY_BENCH_STOCK_PORT:-54333}"
    DATA="$ROOT/target/bench-pgdata-stock"
else
    PORT="${FRACTALITY_BENCH_PORT:-54332}"
    DATA="$ROOT/target/bench-pgdata"
fi

bash "$ROOT/scripts/setup.sh"

log "building and installing the extension (release)"
install_extension --release

log "building fractality-bench (release)"
cargo build --quiet --release -p fractality-client --bin fractality-bench

log "bench server on port $PORT ($DATA, $profile configuration)"
server_start "$DATA" "$PORT" "$profile"

exists=$(pg_psql "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")
if [ "$reuse" -eq 0 ] || [ "$exists" != 1 ]; then
    log "creating database $DB"
    pg_psql "$PORT" -d postgres -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
    pg_psql "$PORT" -d "$DB" -q -c "CREATE EXTENSION fractality CASCADE"
else
    # the library may have been rebuilt: reconnecting picks up the new one, the SQL stays
    log "reusing database $DB"
fi

status=0
"$ROOT/target/release/fractality-bench" \
    --url "host=localhost port=$PORT user=postgres dbname=$DB" --out "$RESULTS" ${args[@]+"${args[@]}"} \
    || status=$?

log "results appended to $RESULTS (the header names the server's settings)"
log "server left running on port $PORT; stop it with: source scripts/lib.sh; server_stop ${DATA#"$ROOT"/}"
exit "$status"
