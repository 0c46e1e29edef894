# fractality: shared helpers for the project's scripts (sourced, not run).
# A local PostgreSQL 15 server of the project's own: data directory inside the work tree
# (ignored by git), started as the `postgres` OS user (initdb refuses root), reachable on
# localhost:$PORT with trust authentication for local connections only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The postgres OS user reads what we install and what pg_regress runs: never make it private.
umask 022
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG="$PG_BIN/pg_config"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1;34m[fractality]\033[0m %s\n' "$*"; }

# Run a command as the postgres OS user, from a directory it can read.
as_pg() { (cd / && sudo -u postgres -H "$@"); }

# server_start DATADIR PORT [stock]: initialise (once) and start (unless running) a server.
# The configuration is written at initdb: the project's tuned memory and WAL settings, or with
# `stock` PostgreSQL's own defaults for them (shared_buffers, work_mem, maintenance_work_mem,
# max_wal_size untouched), for checking figures on an untuned server. A data directory keeps
# the configuration it was created with.
server_start() {
    local data port="$2" profile="${3:-tuned}"
    data="$(realpath -m "$1")"
    case "$profile" in
        tuned|stock) ;;
        *) log "server_start: unknown profile '$profile' (tuned or stock)"; return 1 ;;
    esac
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initdb $data ($profile configuration)"
        mkdir -p "$data"
        chown postgres:postgres "$data"
        chmod 700 "$data"
        as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
        cat >> "$data/postgresql.conf" <<CONF
# fractality: project-local server ($profile)
listen_addresses = 'localhost'
unix_socket_directories = '$data'
max_connections = 100
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
CONF
        if [ "$profile" = tuned ]; then
            cat >> "$data/postgresql.conf" <<CONF
shared_buffers = 1GB
maintenance_work_mem = 2GB
work_mem = 64MB
max_wal_size = 4GB
CONF
        fi
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # running: make sure it is on the requested port
        local running_port
        running_port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
        if [ "$running_port" != "$port" ]; then
            log "restarting $data on port $port (was $running_port)"
            as_pg "$PG_BIN/pg_ctl" -D "$data" -w -m fast stop >/dev/null
        else
            return 0
        fi
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -o "-p $port" start >/dev/null \
        || { tail -n 30 "$data/server.log" >&2; return 1; }
}

server_stop() {
    local data
    data="$(realpath -m "$1")"
    if [ -f "$data/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" -D "$data" -w -m fast stop >/dev/null
    fi
}

# psql against the project's server as the postgres superuser.
pg_psql() {
    local port="$1"; shift
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h localhost -p "$port" -U postgres "$@"
}

# Gives the installed library a file of its own that no running backend has mapped, before a
# tool that rewrites it in place (`cargo pgrx test` installs with a plain copy): the backends of a
# running server (the demo's, say) keep the file they mapped instead of dying with SIGBUS.
detach_installed_library() {
    local lib
    lib="$($PG_CONFIG --pkglibdir)/fractality.so"
    [ -f "$lib" ] || return 0
    cp "$lib" "$lib.detached.$$" && mv -f "$lib.detached.$$" "$lib"
}

# Build the extension and install it into the system PostgreSQL 15 (--release: the release
# build). The install location is shared by every checkout on the machine: the copy takes
# /tmp/fractality-pg.lock (unless the caller already holds it and says so with
# FRACTALITY_PG_LOCKED=1). Each file is replaced, not rewritten in place as `cargo pgrx install`
# does: the backends of a running server keep the library they mapped (rewritten under them, they
# die with SIGBUS and the server restarts).
install_extension() {
    local flags=(--debug) out="$ROOT/target/install-package" lock=()
    [ "${1:-}" = --release ] && flags=()
    [ -n "${FRACTALITY_PG_LOCKED:-}" ] || lock=(flock /tmp/fractality-pg.lock)
    rm -rf "$out"
    # a build that fails stops here: the library of an earlier build must not pass for this one
    (cd "$ROOT" && set -o pipefail && cargo pgrx package --pg-config "$PG_CONFIG" "${flags[@]}" --out-dir "$out" 2>&1 \
        | { grep -vE '^\s+(Compiling|Checking|Downloaded|Downloading)' || true; } \
        | { grep -E 'Finished|error|warning|-->' || true; }) || return 1
    "${lock[@]}" sh -c 'cd "$1" && find . -type f | while read -r f; do
            case "$f" in *.so) mode=755 ;; *) mode=644 ;; esac
            install -D -m "$mode" "$f" "/${f#./}" || exit 1
        done' sh "$out" || return 1
    echo "     Installed fractality into $($PG_CONFIG --pkglibdir) and $($PG_CONFIG --sharedir)/extension"
    test -f "$($PG_CONFIG --pkglibdir)/fractality.so"
}
