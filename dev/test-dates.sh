#!/usr/bin/env bash
# fractality: the date-dependent tests on other days than today, as root (after scripts/test.sh,
# which sets everything up and builds what is run here).
#
#   bash dev/test-dates.sh ["YYYY-MM-DD HH:MM:SS" ...]
#
# Default days: the last minutes of a 31-day month, of a 30-day month and of a year, the first
# minutes of a month after February, February's last minutes, and a leap day's. For each, with
# libfaketime (the Debian package `faketime`, installed here if missing) moving every clock of the
# server by the same offset, each stage's server started at that date and time:
#   1. every #[pg_test] suite (cargo pgrx test; only the server's processes see the other date,
#      cargo and rustc keep the real one);
#   2. pg_regress against a fresh server that lives on that date;
#   3. every client suite against the same server (their binaries keep the real clock: Rust
#      test binaries hang with libfaketime loaded; what they check is the server's date) but
#      `crash`, `load` and `replica`, which start, kill or time processes of their own, and but
#      `cancel` and the tests that need a PostgreSQL timeout to fire (statement_timeout, which
#      `cancel` cancels its calls with, and the lock_timeout
#      with which materialize_decay skips a held row, partition maintenance's tries for its
#      locks, and run_maintenance's 10 ms try for its own lock, which a second caller skips
#      after): timeouts do not fire in a server under
#      libfaketime (scripts/test.sh runs them at the real date). A suite gets 10 minutes;
#   4. the Python and Node.js clients' tests against the same server.
# Ends with "dates: N passed, M failed" and exits non-zero when a date fails. Leave the tree as it
# is while it runs: stage 1 builds from it, and a change makes cargo pgrx test compile again
# with libfaketime loaded, where rustc hangs as the test binaries do.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"

PORT="${FRACTALITY_DATES_PORT:-54341}"
CLIENT_SUITES=(archive backup bad_input consensus_attack decay experience graph isolation
               memory notify privileges resonance schema tenancy tenant_graphs upgrade)
# the tests that need a timeout to fire (see above)
SKIPS=(--skip _cancelled_or_killed_half_way
       --skip decay_materialize_skips_a_row_a_writer_holds_without_blocking
       --skip decay_materialize_leaves_a_callers_exception_block_in_a_correct_state
       --skip a_long_reader_of_stream_points_holds_up_neither_the_archiver_nor_the_writers
       --skip maintenance_leaves_what_a_session_holds_for_its_next_run
       --skip maintain_lets_writers_go_on_while_it_works_on_rows
       --skip run_maintenance_second_caller_returns_at_once)
if [ $# -gt 0 ]; then
    dates=("$@")
else
    dates=("2027-01-31 23:57:00" "2027-04-30 23:55:00" "2027-03-01 00:05:00"
           "2026-12-31 23:58:00" "2027-02-28 23:50:00" "2028-02-29 23:50:00")
fi

if ! dpkg-query -W -f='${Status}' faketime 2>/dev/null | grep -q "install ok installed"; then
    log "installing faketime"
    apt-get install -y -qq --no-install-recommends faketime >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends faketime >/dev/null; }
fi
FAKELIB=$(dpkg -L libfaketime | grep '/libfaketime.so.1$' | head -n 1)
# pgrx starts its server through sudo, which drops LD_PRELOAD and FAKETIME: keep them, for the
# length of this run only
SUDOERS=/etc/sudoers.d/zz-fractality-test-dates
echo 'Defaults env_keep += "LD_PRELOAD FAKETIME FAKETIME_ONLY_CMDS FAKETIME_DONT_FAKE_MONOTONIC"' > "$SUDOERS"
chmod 440 "$SUDOERS"
trap 'rm -f "$SUDOERS"; server_stop "$ROOT/target/dates-pgdata" 2>/dev/null || true' EXIT
LOGS="$ROOT/target/test-logs/dates"
mkdir -p "$LOGS"

# the client test binaries, built at the real date
log "building the client test binaries"
mapfile -t bins < <(cargo test -p fractality-client --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])')
bin_of() { local b; for b in "${bins[@]}"; do [ "${b%% *}" = "$1" ] && { echo "${b#* }"; return; }; done; }

# the pg_test build at the real date: cargo and rustc must not run with libfaketime loaded (rustc
# hangs with it), so the faked runs below find everything built and only start the server
log "building the pg_test library and installing it"
mkdir -p "$ROOT/target/dates-pgrx-data"; chown postgres:postgres "$ROOT/target/dates-pgrx-data"
detach_installed_library  # cargo pgrx test rewrites the library in place: running servers keep theirs
cargo pgrx test pg15 pg_graph_nan_weight_is_refused --runas postgres --pgdata "$ROOT/target/dates-pgrx-data" \
    >"$LOGS/build.log" 2>&1 || { tail -n 20 "$LOGS/build.log"; exit 1; }
# the extension as scripts/test.sh installs it, for stages 2-4, built apart (its own target
# directory: a build into target/debug would make stage 1 build the pg_test library again, under
# libfaketime) and installed from its package by copying files
log "building the extension as scripts/test.sh installs it, in target/dates-build"
PACKAGE="$ROOT/target/dates-package"
rm -rf "$PACKAGE"
CARGO_TARGET_DIR="$ROOT/target/dates-build" cargo pgrx package --debug --pg-config "$PG_CONFIG" \
    --out-dir "$PACKAGE" >"$LOGS/package.log" 2>&1 || { tail -n 20 "$LOGS/package.log"; exit 1; }
install_package() {  # under the lock install_extension takes (another checkout may be testing)
    flock /tmp/fractality-pg.lock sh -c '
        install -m 755 "$1$2"/fractality.so "$2/" &&
        install -m 644 "$1$3"/extension/fractality* "$3/extension/" &&
        install -m 644 "$4"/tests/upgrade/fractality--*.sql "$3/extension/"' \
        sh "$PACKAGE" "$($PG_CONFIG --pkglibdir)" "$($PG_CONFIG --sharedir)" "$ROOT"
}

ok=0
bad=0
# fake WHEN: the environment that starts a process at WHEN (its clock running on from there)
fake_at() {
    local offset sign
    offset=$(( $(date -u -d "$1" +%s) - $(date -u +%s) ))
    sign=+; [ "$offset" -lt 0 ] && sign=
    fake=(env LD_PRELOAD="$FAKELIB" "FAKETIME=$sign$offset" FAKETIME_DONT_FAKE_MONOTONIC=1)
}
for when in "${dates[@]}"; do
    tag=$(echo "$when" | tr ' :' '__')
    fake_at "$when"
    offset=$(( $(date -u -d "$when" +%s) - $(date -u +%s) ))
    log "--- $when UTC (clock moved by ${offset}s)"
    failed_here=()

    # 1. pg_test suites: a fresh data directory, only the server's processes on the other date
    data="$ROOT/target/dates-pgrx-data"
    rm -rf "$data"; mkdir -p "$data"; chown postgres:postgres "$data"
    detach_installed_library
    if ! "${fake[@]}" FAKETIME_ONLY_CMDS=postgres,initdb,pg_ctl \
            cargo pgrx test pg15 --runas postgres --pgdata "$data" >"$LOGS/$tag-pgrx.log" 2>&1; then
        failed_here+=("pgrx: $(grep -c 'FAILED$' "$LOGS/$tag-pgrx.log" || true) failed")
    fi

    # 2. pg_regress against a server living on that date, with the extension as scripts/test.sh
    # installs it (stage 1 installed the pg_test build, whose schema holds the tests too)
    install_package >"$LOGS/$tag-install.log" 2>&1 || failed_here+=(install)
    fake_at "$when"
    data="$ROOT/target/dates-pgdata"
    server_stop "$data" 2>/dev/null || true
    rm -rf "$data"; mkdir -p "$data"; chown postgres:postgres "$data"; chmod 700 "$data"
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = 'localhost'
unix_socket_directories = '$data'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
CONF
    (cd / && sudo -u postgres -H "${fake[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $PORT" start >/dev/null)
    server_date=$(pg_psql "$PORT" -d postgres -tAc "SELECT now()::timestamp(0)")
    log "server's now(): $server_date"
    regress="$ROOT/target/dates-regress"
    rm -rf "$regress"; mkdir -p "$regress"
    cp -r "$ROOT/tests/pg_regress" "$regress/input"
    chown -R postgres:postgres "$regress"
    if ! as_pg "$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress" \
            --bindir="$PG_BIN" --host=localhost --port="$PORT" --user=postgres \
            --inputdir="$regress/input" --outputdir="$regress" \
            --schedule="$regress/input/schedule" --dbname=fractality_regress \
            >"$LOGS/$tag-pg_regress.log" 2>&1; then
        failed_here+=(pg_regress)
        cp "$regress/regression.diffs" "$LOGS/$tag-regression.diffs" 2>/dev/null || true
    fi

    # 3. client suites, their binaries on the same date
    for suite in "${CLIENT_SUITES[@]}"; do
        exe=$(bin_of "$suite")
        [ -n "$exe" ] || { failed_here+=("client:$suite (no binary)"); continue; }
        # the binaries keep the real clock (Rust test binaries hang with libfaketime loaded):
        # what they check is the server's date, which is the other one
        if ! (cd tests/client && \
                FRACTALITY_TEST_URL="host=localhost port=$PORT user=postgres dbname=postgres" \
                timeout 600 "$exe" "${SKIPS[@]}" \
                >"$LOGS/$tag-client-$suite.log" 2>&1); then
            failed_here+=("client:$suite")
        fi
    done

    # 4. the Python and Node.js clients, on the same server
    url="host=localhost port=$PORT user=postgres dbname=postgres"
    (cd clients/python && FRACTALITY_TEST_URL="$url" timeout 600 .venv/bin/python -m pytest -q \
        >"$LOGS/$tag-python.log" 2>&1) || failed_here+=(python)
    (cd clients/node && FRACTALITY_TEST_URL="$url" timeout 600 node --test test/*.test.js \
        >"$LOGS/$tag-node.log" 2>&1) || failed_here+=(node)
    server_stop "$data"

    if [ ${#failed_here[@]} -eq 0 ]; then
        ok=$((ok + 1)); log "$when: every suite passed"
    else
        bad=$((bad + 1)); log "$when: FAILED ${failed_here[*]} (logs in $LOGS, prefix $tag)"
    fi
done
# the extension as scripts/test.sh leaves it
install_package
echo "dates: $ok passed, $bad failed"
[ "$bad" -eq 0 ]
