#!/usr/bin/env bash
# fractality: start, stop or inspect the project's local demo server.
#   scripts/server.sh start|stop|status|psql
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT="${FRACTALITY_PORT:-54330}"
DATA="$ROOT/.pgdata"
case "${1:-status}" in
    start)  server_start "$DATA" "$PORT"; log "running on localhost:$PORT" ;;
    stop)   server_stop "$DATA"; log "stopped" ;;
    status) as_pg "$PG_BIN/pg_ctl" -D "$DATA" status ;;
    psql)   shift; pg_psql "$PORT" -d fractality_demo "$@" ;;
    *)      echo "usage: scripts/server.sh start|stop|status|psql" >&2; exit 2 ;;
esac
