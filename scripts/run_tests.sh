#!/usr/bin/env bash
# The test command of bj_api_sync.
#
#   scripts/run_tests.sh                plain tests, then the Odoo tests when Odoo 19.0 is found
#   scripts/run_tests.sh --plain        only the Odoo-free tests (pytest tests_plain)
#   scripts/run_tests.sh --odoo         only the Odoo tests (odoo-bin --test-enable)
#   scripts/run_tests.sh --pytest-odoo  the Odoo tests through pytest-odoo
#
# Odoo tests run in a fresh database (bjtest_<date>_<pid>_<random>) with demo data, dropped
# afterwards whatever happens. The run fails on a failed test, on any ERROR/CRITICAL log line
# and on any WARNING logged by odoo.addons.<addon>. The last line is "N passed, N failed".
# Logs go to .run/. Environment: see scripts/devenv.sh.
set -euo pipefail

# shellcheck source=scripts/devenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/devenv.sh"

mode=${1:-all}
case $mode in
all | --plain | --odoo | --pytest-odoo) ;;
*)
    sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

passed=0
failed=0
problems=()
mkdir -p "$BJ_RUN_DIR"
# Keep the 20 newest Odoo logs of earlier runs.
find "$BJ_RUN_DIR" -maxdepth 1 -name 'odoo-*-bjtest_*.log' -printf '%T@ %p\n' |
    sort -rn | tail -n +21 | cut -d' ' -f2- | xargs -r rm -f

closed=
closing_line() {
    closed=1
    if ((${#problems[@]})); then
        say ""
        say "FAILED:"
        printf '  - %s\n' "${problems[@]}" >&2
        # A broken run never reads as "0 failed".
        ((failed > 0)) || failed=1
    fi
    printf '%d passed, %d failed\n' "$passed" "$failed"
    ((${#problems[@]} == 0))
}

# Print "passed failed skipped" from a pytest JUnit XML report.
junit_counts() {
    "$PYTHON" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for suite in suites:
    for key in n:
        n[key] += int(suite.get(key, 0))
bad = n["failures"] + n["errors"]
print(n["tests"] - bad - n["skipped"], bad, n["skipped"])
EOF
}

# --- plain tests ----------------------------------------------------------------------

run_plain() {
    local junit=$BJ_RUN_DIR/plain-junit-$$.xml rc=0 p f s
    if [[ ! -d $BJ_ADDON_DIR/tests_plain ]]; then
        say "No tests_plain/ folder: no plain tests."
        return
    fi
    say "=== Plain tests: $PYTHON -m pytest tests_plain -q"
    # -p no:odoo: pytest-odoo, when installed, imports odoo at load time.
    # --rootdir=tests_plain: else pytest collects the checkout (it has __init__.py) as a
    # package and imports it, which imports Odoo.
    (cd "$BJ_ADDON_DIR" && "$PYTHON" -m pytest tests_plain -q -p no:odoo \
        --rootdir=tests_plain --junitxml="$junit") || rc=$?
    if ((rc > 1 && rc != 5)) && [[ -f $BJ_ADDON_DIR/tests_plain/__init__.py ]]; then
        say "hint: remove tests_plain/__init__.py; with it pytest imports the addon package" \
            "(and so Odoo) to name the test modules"
    fi
    case $rc in
    0 | 1) ;;
    5) say "(no plain tests collected)" ;;
    *) problems+=("pytest tests_plain stopped with exit code $rc (collection or usage error)") ;;
    esac
    [[ -f $junit ]] || return 0
    read -r p f s < <(junit_counts "$junit")
    rm -f "$junit"
    say "Plain tests: passed=$p failed=$f skipped=$s"
    passed=$((passed + p))
    failed=$((failed + f))
    ((f == 0)) || problems+=("$f plain test(s) failed")
}

# --- Odoo tests -----------------------------------------------------------------------

count_test_functions() {
    cat "$BJ_ADDON_DIR"/tests/test_*.py 2>/dev/null | grep -cE '^[[:space:]]*(async[[:space:]]+)?def test_' || true
}

db_port=
test_db=
drop_test_db() {
    if [[ -n $test_db && -n $db_port ]]; then
        say "Dropping database $test_db"
        drop_db "$db_port" "$test_db" || say "warning: could not drop database $test_db"
        test_db=
    fi
}
on_exit() {
    local rc=$?
    drop_test_db
    # Aborted half-way (set -e, die, Ctrl-C): still end with the closing line.
    if [[ -z $closed ]]; then
        problems+=("the run stopped early (exit code $rc)")
        closing_line || true
        exit $((rc ? rc : 1))
    fi
}
trap on_exit EXIT

# Prepare Odoo, PostgreSQL and a unique database name; fills odoo_cmd and odoo_flags.
prepare_odoo() {
    local tree addons
    tree=$(find_odoo)
    [[ -n ${ODOO_SRC:-} ]] && odoo_pythonpath "$tree"
    addons=$(addons_path)
    db_port=$(ensure_pg)
    test_db=bjtest_$(date +%Y%m%d_%H%M%S)_$$_$RANDOM
    odoo_command odoo_cmd "$tree"
    odoo_flags=(
        -d "$test_db" --db_host "$BJ_DB_HOST" --db_port "$db_port" --db_user "$BJ_DB_USER"
        --addons-path "$addons" --data-dir "$BJ_RUN_DIR/odoo-data"
        --http-interface 127.0.0.1 --http-port "$(free_tcp_port)"
        --max-cron-threads 0 --workers 0
    )
    say "Odoo: $tree; database: $test_db on $BJ_DB_HOST:$db_port"
}

# Judge an Odoo log: counts from Odoo's summary, ERROR/CRITICAL lines, addon warnings.
check_odoo_log() {
    local log=$1 summary t f e bad
    local stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:,]+ [0-9]+'
    # Odoo 19 (odoo/service/server.py) ends a test run with
    # "<f> failed, <e> error(s) of <n> tests when loading database '<db>'".
    summary=$(grep -oE '[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests when loading database' \
        "$log" | tail -n 1 || true)
    if [[ -n $summary ]]; then
        read -r f _ e _ _ t _ <<<"$summary"
        say "Odoo tests: ran=$t failed=$f errors=$e"
        bad=$((f + e))
        passed=$((passed + (t > bad ? t - bad : 0)))
        failed=$((failed + bad))
        ((bad == 0)) || problems+=("$f failed and $e error(s) among $t Odoo tests")
        local expected
        expected=$(count_test_functions)
        if ((t == 0 && expected > 0)); then
            problems+=("Odoo ran 0 tests but tests/test_*.py define $expected: is each test file imported in tests/__init__.py?")
        fi
    else
        problems+=("Odoo stopped before its test summary (install error?): see $log")
    fi
    bad=$(grep -cE "$stamp (ERROR|CRITICAL) " "$log" || true)
    if ((bad > 0)); then
        say "--- ERROR/CRITICAL log lines:"
        grep -E "$stamp (ERROR|CRITICAL) " "$log" >&2 || true
        problems+=("$bad ERROR/CRITICAL log line(s) in $log")
    fi
    local warn_re="$stamp WARNING [^ ]+ odoo\.addons\.${BJ_ADDON_NAME}[.:]"
    bad=$(grep -cE "$warn_re" "$log" || true)
    if ((bad > 0)); then
        say "--- WARNING lines from odoo.addons.$BJ_ADDON_NAME:"
        grep -E "$warn_re" "$log" >&2 || true
        problems+=("$bad WARNING line(s) from odoo.addons.$BJ_ADDON_NAME in $log")
    fi
}

run_odoo_tests() {
    local log rc=0
    local -a odoo_cmd odoo_flags
    prepare_odoo
    log=$BJ_RUN_DIR/odoo-test-$test_db.log
    say "=== Odoo tests: install $BJ_ADDON_NAME with demo data and run /$BJ_ADDON_NAME (log: $log)"
    # --log-level: Odoo 19 accepts "test" but maps it to nothing more than "info".
    "${odoo_cmd[@]}" "${odoo_flags[@]}" -i "$BJ_ADDON_NAME" --with-demo \
        --test-enable --test-tags "/$BJ_ADDON_NAME" --stop-after-init --log-level info \
        2>&1 </dev/null | tee "$log" || rc=$?
    say "odoo-bin exited with $rc"
    check_odoo_log "$log"
    ((rc == 0)) || ((${#problems[@]})) || problems+=("odoo-bin exited with code $rc")
}

run_pytest_odoo() {
    local conf log rc=0 junit p f s
    local -a odoo_cmd odoo_flags
    "$PYTHON" -c 'import pytest_odoo' 2>/dev/null ||
        die "pytest-odoo is not installed: $PYTHON -m pip install pytest-odoo"
    prepare_odoo
    log=$BJ_RUN_DIR/odoo-install-$test_db.log
    say "=== Installing $BJ_ADDON_NAME with demo data into $test_db (log: $log)"
    "${odoo_cmd[@]}" "${odoo_flags[@]}" -i "$BJ_ADDON_NAME" --with-demo --stop-after-init \
        --log-level warn </dev/null >"$log" 2>&1 || rc=$?
    if ((rc != 0)) || grep -qE ' (ERROR|CRITICAL) ' "$log"; then
        cat "$log" >&2
        problems+=("installing $BJ_ADDON_NAME failed (exit $rc): see $log")
        return
    fi
    conf=$BJ_RUN_DIR/pytest-odoo-$test_db.conf
    cat >"$conf" <<EOF
[options]
db_host = $BJ_DB_HOST
db_port = $db_port
db_user = $BJ_DB_USER
db_name = $test_db
addons_path = $(addons_path)
data_dir = $BJ_RUN_DIR/odoo-data
http_interface = 127.0.0.1
EOF
    junit=$BJ_RUN_DIR/pytest-odoo-junit-$$.xml
    say "=== pytest-odoo: $PYTHON -m pytest --odoo-database=$test_db --odoo-config=$conf $BJ_ADDON_NAME/tests"
    # pytest-odoo names test modules after the path given: run from the folder holding the
    # addon so they import as odoo.addons.<addon>.tests.*.
    rc=0
    (cd "$BJ_ADDONS_MOUNT" && "$PYTHON" -m pytest -q -p no:cacheprovider \
        --odoo-database="$test_db" --odoo-config="$conf" --junitxml="$junit" \
        "$BJ_ADDON_NAME/tests") </dev/null || rc=$?
    rm -f "$conf"
    if [[ -f $junit ]]; then
        read -r p f s < <(junit_counts "$junit")
        rm -f "$junit"
        say "pytest-odoo: passed=$p failed=$f skipped=$s"
        passed=$((passed + p))
        failed=$((failed + f))
    fi
    case $rc in
    0 | 5) ;;
    *) problems+=("pytest-odoo exited with code $rc") ;;
    esac
}

# --- main -----------------------------------------------------------------------------

case $mode in
--plain) run_plain ;;
--odoo) run_odoo_tests ;;
--pytest-odoo) run_pytest_odoo ;;
all)
    run_plain
    if odoo_available; then
        run_odoo_tests
    else
        n=$(count_test_functions)
        say ""
        odoo_help
        say ""
        printf 'Odoo 19.0 not found: %d Odoo tests were not run. To run them, set ODOO_SRC to an Odoo 19.0 source tree with its requirements installed, or make the odoo package importable by %s (see above).\n' "$n" "$PYTHON"
    fi
    ;;
esac
drop_test_db
closing_line
