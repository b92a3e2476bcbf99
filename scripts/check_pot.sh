#!/usr/bin/env bash
# The translation template of bj_api_sync, i18n/bj_api_sync.pot, as Odoo's own export makes it.
#
#   scripts/check_pot.sh           export the template into a temporary file and compare it with
#                                  i18n/bj_api_sync.pot, header dates ignored; fails when it is
#                                  stale (`make pot-check`, .ci/run)
#   scripts/check_pot.sh --write   export the template into i18n/bj_api_sync.pot (`make pot`)
#
# Both install the addon without demo data into a fresh database (bjpot_<date>_<pid>_<random>),
# dropped afterwards whatever happens, then run `odoo-bin i18n export`. Without Odoo 19.0 the
# check says it was skipped and succeeds. Logs go to .run/. Environment: see scripts/devenv.sh.
set -euo pipefail

# shellcheck source=scripts/devenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/devenv.sh"

mode=${1:-check}
case $mode in
check | --check) mode=check ;;
--write) mode=write ;;
*)
    sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac

pot_rel=i18n/$BJ_ADDON_NAME.pot
pot=$BJ_ADDON_DIR/$pot_rel

if ! odoo_available; then
    if [[ $mode == check ]]; then
        say "Odoo 19.0 not found: the check of $pot_rel was skipped" \
            "(set ODOO_SRC or make the odoo package importable to run it)."
        exit 0
    fi
    odoo_help
    die "Odoo 19.0 not found: cannot export $pot_rel"
fi

tree=$(find_odoo)
[[ -n ${ODOO_SRC:-} ]] && odoo_pythonpath "$tree"
db_port=$(ensure_pg)
db=bjpot_$(date +%Y%m%d_%H%M%S)_$$_$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/bj_api_sync-pot.XXXXXX")
mkdir -p "$BJ_RUN_DIR"
log=$BJ_RUN_DIR/pot-$db.log
created=

cleanup() {
    if [[ -n $created ]]; then
        bj_psql "$db_port" "$BJ_DB_USER" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
            >/dev/null || say "warning: could not drop database $db"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Odoo reads a copy of the addon: the export walks module folders following symlinks, and
# the checkout's .addons/ mount links back to the checkout (an endless walk). Dot folders
# (.git, .addons, .pgdata, .run, caches) and __pycache__ are left out.
"$PYTHON" - "$BJ_ADDON_DIR" "$work/addons/$BJ_ADDON_NAME" <<'EOF'
import shutil
import sys

source, target = sys.argv[1:]


def ignore(folder, names):
    skipped = {name for name in names if name == "__pycache__"}
    if folder == source:
        skipped |= {name for name in names if name.startswith(".")}
    return skipped


shutil.copytree(source, target, symlinks=True, ignore=ignore)
EOF

addons=$tree/odoo/addons
[[ -d $tree/addons ]] && addons+=,$tree/addons
addons+=,$work/addons
# `odoo-bin i18n` takes the connection from a configuration file only.
cat >"$work/odoo.conf" <<EOF
[options]
db_host = $BJ_DB_HOST
db_port = $db_port
db_user = $BJ_DB_USER
addons_path = $addons
data_dir = $work/data
EOF

odoo_command odoo_cmd "$tree"
say "=== Exporting $pot_rel: install $BJ_ADDON_NAME into $db on $BJ_DB_HOST:$db_port (log: $log)"
created=1
rc=0
"${odoo_cmd[@]}" -c "$work/odoo.conf" -d "$db" -i "$BJ_ADDON_NAME" --stop-after-init \
    --no-http --max-cron-threads 0 --workers 0 --log-level warn </dev/null >"$log" 2>&1 || rc=$?
if ((rc != 0)) || grep -qE '^[0-9-]+ [0-9:,]+ [0-9]+ (ERROR|CRITICAL) ' "$log"; then
    cat "$log" >&2
    die "installing $BJ_ADDON_NAME failed (exit $rc): see $log"
fi
"${odoo_cmd[@]}" i18n export -c "$work/odoo.conf" -d "$db" -o "$work/$BJ_ADDON_NAME.pot" \
    "$BJ_ADDON_NAME" </dev/null >>"$log" 2>&1 || rc=$?
if ((rc != 0)) || [[ ! -s $work/$BJ_ADDON_NAME.pot ]]; then
    cat "$log" >&2
    die "odoo-bin i18n export failed (exit $rc): see $log"
fi
rm -f "$log"

if [[ $mode == write ]]; then
    mkdir -p "$(dirname "$pot")"
    cp "$work/$BJ_ADDON_NAME.pot" "$pot"
    say "Wrote $pot_rel"
    exit 0
fi

if [[ ! -f $pot ]]; then
    say "$pot_rel is missing: run \`make pot\`"
    exit 1
fi
# Compare without the header lines that change with every export (its dates) or with the
# Odoo build (Project-Id-Version); summarize what changed, then show the start of a diff.
"$PYTHON" - "$pot" "$work/$BJ_ADDON_NAME.pot" "$pot_rel" <<'EOF'
import difflib
import re
import sys

committed_path, fresh_path, name = sys.argv[1:]
VOLATILE = re.compile(r'^"(POT-Creation-Date|PO-Revision-Date|Project-Id-Version): ')


def lines(path):
    with open(path, encoding="utf-8") as file:
        return [line for line in file.read().splitlines() if not VOLATILE.match(line)]


def entries(text_lines):
    """{msgid: locations} of a .pot file (msgids joined from their quoted lines)."""
    found, locations, msgid, in_msgid = {}, [], None, False
    for line in [*text_lines, ""]:
        if line.startswith("#:"):
            locations += line[2:].split()
        elif line.startswith("msgid "):
            msgid, in_msgid = line[6:].strip()[1:-1], True
        elif line.startswith('"') and in_msgid:
            msgid += line.strip()[1:-1]
        elif line.startswith("msgstr"):
            in_msgid = False
        elif not line.strip():
            if msgid:
                found[msgid] = locations
            locations, msgid, in_msgid = [], None, False
    return found


committed, fresh = lines(committed_path), lines(fresh_path)
if committed == fresh:
    print(f"{name} is up to date")
    sys.exit(0)
old, new = entries(committed), entries(fresh)
added = [m for m in new if m not in old]
removed = [m for m in old if m not in new]
moved = [m for m in new if m in old and new[m] != old[m]]
for label, items in (
    ("new terms", added),
    ("terms gone", removed),
    ("terms whose locations changed", moved),
):
    if items:
        print(f"{len(items)} {label}:", file=sys.stderr)
        for item in items[:10]:
            print(f"  {item[:100]!r}", file=sys.stderr)
        if len(items) > 10:
            print(f"  ... and {len(items) - 10} more", file=sys.stderr)
diff = list(difflib.unified_diff(committed, fresh, name, "fresh export", lineterm=""))
print("\n".join(diff[:60]), file=sys.stderr)
if len(diff) > 60:
    print(f"... ({len(diff) - 60} more diff lines)", file=sys.stderr)
print(f"{name} is stale: run `make pot`", file=sys.stderr)
sys.exit(1)
EOF
