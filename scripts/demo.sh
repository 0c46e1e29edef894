#!/usr/bin/env bash
# fractality: set up everything and run the main job, as root on Debian bookworm.
#
#   set-up (scripts/setup.sh) -> build and install the extension (release) -> a local server of the
#   project's own (data in .pgdata/, port $FRACTALITY_PORT, default 54330, run as the postgres OS
#   user) -> database fractality_demo with CREATE EXTENSION fractality CASCADE -> demo data
#   (demo/data.sql) -> a short demo session (demo/session.sql) -> the connection string.
#
# The server keeps running; `scripts/server.sh stop` stops it. Running this again rebuilds the
# demo database from scratch in seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
PORT="${FRACTALITY_PORT:-54330}"
DATA="$ROOT/.pgdata"
DB=fractality_demo

bash "$ROOT/scripts/setup.sh"
log "building and installing the extension (release)"
install_extension --release
server_start "$DATA" "$PORT"
log "server running on localhost:$PORT (data in $DATA)"

pg_psql "$PORT" -d postgres -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
pg_psql "$PORT" -d "$DB" -q -c "CREATE EXTENSION fractality CASCADE"
# monthly partitions come from maintenance (maintain(), hourly from pg_cron), not the install
pg_psql "$PORT" -d "$DB" -q -c "SELECT fractality.ensure_partitions(3)" >/dev/null
pg_psql "$PORT" -d postgres -q -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
    -c "SELECT cron.schedule_in_database('fractality-maintenance', '17 * * * *', 'CALL fractality.maintain()', '$DB')" >/dev/null
log "loading demo data (demo/data.sql)"
pg_psql "$PORT" -d "$DB" -q -f "$ROOT/demo/data.sql" >/dev/null

log "demo session (demo/session.sql)"
pg_psql "$PORT" -d "$DB" -e -f "$ROOT/demo/session.sql"

cat <<MSG

$(log "the demo server is running")
  connect:  psql "postgresql://postgres@localhost:$PORT/$DB"
            (or: scripts/server.sh psql)
  stop:     scripts/server.sh stop
MSG
