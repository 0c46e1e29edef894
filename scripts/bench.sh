#!/usr/bin/env bash
# fractality: the benchmarks, in one command, as root on Debian bookworm.
#
#   bash scripts/bench.sh [--nodes N] [--events N] [--seed S] [--users N] [--reps N] [--reuse]
#                         [scenario ...]
#
#   defaults: 100000 nodes, 1000000 events, seed 42, every scenario (`--list` names them).
#
#   1. setup.sh, then builds and installs the extension in release mode;
#   2. starts a bench server: data in target/bench-pgdata, port ${FRACTALITY_BENCH_PORT:-54332};
#   3. recreates the database fractality_bench with CREATE EXTENSION fractality CASCADE
#      (with --reuse it keeps the database, and the data when it was loaded at the same scale
#      and seed);
#   4. runs the fractality-bench binary (tests/client): it generates and loads the data
#      (deterministic for a seed), runs the scenarios, prints a markdown table and appends it
#      to target/bench-results.md.
#
# The server is left running, so that a re-run with --reuse skips the load and the data can be
# inspected (psql -h localhost -p 54332 -U postgres fractality_bench). Stop it with:
#   source scripts/lib.sh; server_stop target/bench-pgdata
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PORT="${FRACTALITY_BENCH_PORT:-54332}"
DATA="$ROOT/target/bench-pgdata"
DB=fractality_bench
RESULTS="$ROOT/target/bench-results.md"

reuse=0
for arg in "$@"; do
    case "$arg" in
        --reuse) reuse=1 ;;
        -h|--help|--list)  # nothing to set up for these
            exec cargo run --quiet --release -p fractality-client --bin fractality-bench -- "$arg" ;;
    esac
done

bash "$ROOT/scripts/setup.sh"

log "building and installing the extension (release)"
install_extension --release

log "building fractality-bench (release)"
cargo build --quiet --release -p fractality-client --bin fractality-bench

log "bench server on port $PORT ($DATA)"
server_start "$DATA" "$PORT"

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
    --url "host=localhost port=$PORT user=postgres dbname=$DB" --out "$RESULTS" "$@" || status=$?

log "results appended to $RESULTS"
log "server left running on port $PORT; stop it with: source scripts/lib.sh; server_stop target/bench-pgdata"
exit "$status"
