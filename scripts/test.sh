#!/usr/bin/env bash
# fractality: set up everything and run every test, as root on Debian bookworm.
#
#   1. cargo fmt --check and cargo clippy -D warnings
#   2. plain Rust unit tests and the #[pg_test] suites in pgrx-tests/ (cargo pgrx test)
#   3. the pg_regress suite in tests/pg_regress/ (the SQL contract as a client sees it)
#   4. the client-side tests in tests/client/ through a real client (the `postgres` crate)
#   5. the Python and Node.js clients: pytest in clients/python, node --test in clients/node,
#      against the same server as 4
#
# Ends with one summary line: "total: N passed, M failed". Exit status 0 only if all passed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

TEST_PORT="${FRACTALITY_TEST_PORT:-54331}"
TEST_DATA="$ROOT/target/test-pgdata"
PGRX_DATA="$ROOT/target/pgrx-test-data"
LOGS="$ROOT/target/test-logs"

bash "$ROOT/scripts/setup.sh"
mkdir -p "$LOGS"

passed=0
failed=0
count_cargo() {  # add up the "test result:" lines of a cargo test log; an ignored test fails
    local p f
    read -r p f < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
                             if ($i ~ /^passed/) p += $(i - 1)
                             if ($i ~ /^(failed|ignored)/) f += $(i - 1) } }
                         END { print p + 0, f + 0 }' "$1")
    passed=$((passed + p))
    failed=$((failed + f))
    last_failed=$f
}

log "1/5 cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "2/5 cargo pgrx test (unit tests and #[pg_test] suites)"
mkdir -p "$PGRX_DATA"
chown postgres:postgres "$PGRX_DATA"
status=0
detach_installed_library  # pgrx rewrites the installed library in place: a running server keeps its own
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DATA" 2>&1 \
    | grep -vE '^\s+(Compiling|Downloaded|Downloading)' | tee "$LOGS/pgrx-test.log" || status=$?
count_cargo "$LOGS/pgrx-test.log"
if [ "$status" -ne 0 ] && [ "$last_failed" -eq 0 ]; then failed=$((failed + 1)); fi  # did not build or run

log "3/5 pg_regress (tests/pg_regress) against a fresh server on port $TEST_PORT"
install_extension
# the previous versions' install scripts, for the upgrade test (tests/client/tests/upgrade.rs)
install -m 644 "$ROOT"/tests/upgrade/fractality--*.sql "$($PG_CONFIG --sharedir)/extension/"
server_stop "$TEST_DATA"
rm -rf "$TEST_DATA"
server_start "$TEST_DATA" "$TEST_PORT"
trap 'server_stop "$TEST_DATA"' EXIT
regress_dir="$ROOT/target/pg_regress"
rm -rf "$regress_dir"
mkdir -p "$regress_dir"
# pg_regress runs as the postgres OS user: give it its own readable copy of the suite
cp -r "$ROOT/tests/pg_regress" "$regress_dir/input"
chown -R postgres:postgres "$regress_dir"
tests=$(sed -n 's/^test: *//p' "$ROOT/tests/pg_regress/schedule" | tr '\n' ' ')
# every suite is wired in: each pg_regress file in the schedule, each pg_test file a module
for f in "$ROOT"/tests/pg_regress/sql/*.sql; do
    name=$(basename "$f" .sql)
    echo " $tests " | grep -q " $name " || { echo "not in tests/pg_regress/schedule: $name"; failed=$((failed + 1)); }
done
for f in "$ROOT"/pgrx-tests/*.rs; do
    name=$(basename "$f" .rs)
    [ "$name" = mod ] || grep -qE "^\s*(pub )?mod $name;" "$ROOT/pgrx-tests/mod.rs" \
        || { echo "not a module of pgrx-tests/mod.rs: $name"; failed=$((failed + 1)); }
done
status=0
as_pg "$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --bindir="$PG_BIN" --host=localhost --port="$TEST_PORT" --user=postgres \
    --inputdir="$regress_dir/input" --outputdir="$regress_dir" \
    --schedule="$regress_dir/input/schedule" --dbname=fractality_regress \
    2>&1 | tee "$LOGS/pg_regress.log" || status=$?
n_tests=$(echo "$tests" | wc -w)
# each test of the schedule counts once it has run: "ok" or "FAILED"; one that did not run fails
n_ok=$(grep -cE '^(test )? *[a-z_0-9]+ +\.\.\. ok ' "$LOGS/pg_regress.log" || true)
n_failed=$(grep -cE '(\.\.\.|^not ok|^ok).*FAILED|^not ok' "$LOGS/pg_regress.log" || true)
passed=$((passed + n_ok))
failed=$((failed + n_failed))
[ $((n_ok + n_failed)) -ge "$n_tests" ] || failed=$((failed + n_tests - n_ok - n_failed))
if [ "$status" -ne 0 ]; then
    [ "$n_failed" -gt 0 ] || failed=$((failed + 1))
    [ -f "$regress_dir/regression.diffs" ] && cat "$regress_dir/regression.diffs"
fi

log "4/5 client-side tests (tests/client) through a real client"
status=0
FRACTALITY_TEST_URL="host=localhost port=$TEST_PORT user=postgres dbname=postgres" \
    cargo test -p fractality-client --no-fail-fast 2>&1 \
    | grep -vE '^\s+(Compiling|Downloaded|Downloading)' | tee "$LOGS/client.log" || status=$?
count_cargo "$LOGS/client.log"
if [ "$status" -ne 0 ] && [ "$last_failed" -eq 0 ]; then failed=$((failed + 1)); fi

log "5/5 Python and Node.js clients (clients/python: pytest, clients/node: node --test)"
CLIENT_URL="host=localhost port=$TEST_PORT user=postgres dbname=postgres"
count_tier() {  # count_tier PASSED FAILED STATUS: a runner that failed but counted no failure did not run
    passed=$((passed + $1))
    failed=$((failed + $2))
    if [ "$3" -ne 0 ] && [ "$2" -eq 0 ]; then failed=$((failed + 1)); fi
}
status=0
(cd "$ROOT/clients/python" && FRACTALITY_TEST_URL="$CLIENT_URL" .venv/bin/python -m pytest -q -rfE) 2>&1 \
    | tee "$LOGS/python.log" || status=$?
# pytest's summary line: "1 failed, 26 passed, 1 error in 5.56s"; a skipped or expected-to-fail
# test fails the run (no test is skipped here)
read -r p f < <(grep -E '[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed)\b.* in [0-9.]+s' "$LOGS/python.log" | tail -n 1 \
                | awk '{ for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i - 1);
                                                       if ($i ~ /^(failed|errors?|skipped|xfailed|xpassed)/) f += $(i - 1) } }
                       END { print p + 0, f + 0 }')
count_tier "$p" "$f" "$status"
status=0
(cd "$ROOT/clients/node" && FRACTALITY_TEST_URL="$CLIENT_URL" node --test --test-reporter=tap test/*.test.js) 2>&1 \
    | tee "$LOGS/node.log" || status=$?
# the TAP reporter's closing lines: "# pass N", "# fail N", "# cancelled N", "# skipped N",
# "# todo N" (a skipped or todo test fails the run)
read -r p f < <(awk '/^# pass / { p = $3 } /^# fail / { f = $3 } /^# cancelled / { c = $3 }
                     /^# skipped / { s = $3 } /^# todo / { t = $3 }
                     END { print p + 0, f + c + s + t }' "$LOGS/node.log")
count_tier "$p" "$f" "$status"

echo
log "pg_test + unit, pg_regress, client suites and the Python and Node.js clients done"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
