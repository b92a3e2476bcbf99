#!/usr/bin/env bash
# The run command of bj_api_sync: Odoo 19.0 on http://127.0.0.1:8069 with database bj_demo
# (created with demo data and bj_api_sync installed on first run, bj_api_sync updated on
# later runs) and the demo receiver on http://127.0.0.1:8070 printing what it gets.
# Stop with Ctrl-C. Environment: see scripts/devenv.sh; BJ_DEMO_DB (default bj_demo),
# BJ_HTTP_PORT (default 8069), BJ_RECEIVER_PORT (default 8070).
set -euo pipefail

# shellcheck source=scripts/devenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/devenv.sh"

db=${BJ_DEMO_DB:-bj_demo}
http_port=${BJ_HTTP_PORT:-8069}
receiver_port=${BJ_RECEIVER_PORT:-8070}

tree=$(find_odoo)
[[ -n ${ODOO_SRC:-} ]] && odoo_pythonpath "$tree"
addons=$(addons_path)
db_port=$(ensure_pg)
odoo_cmd=()
odoo_command odoo_cmd "$tree"

port_in_use "$http_port" && die "port $http_port is already in use (another Odoo running?)"

if db_exists "$db_port" "$db"; then
    module_flags=(-u "$BJ_ADDON_NAME")
    say "Database $db exists: updating $BJ_ADDON_NAME"
else
    module_flags=(-i "$BJ_ADDON_NAME" --with-demo)
    say "Creating database $db with demo data and installing $BJ_ADDON_NAME"
fi

receiver_pid=
stop_receiver() {
    [[ -z $receiver_pid ]] || kill "$receiver_pid" 2>/dev/null || true
}
trap stop_receiver EXIT

if port_in_use "$receiver_port"; then
    say "note: port $receiver_port is in use; not starting the demo receiver (one already running?)"
else
    "$PYTHON" "$BJ_ROOT/scripts/demo_receiver.py" --port "$receiver_port" &
    receiver_pid=$!
fi

cat >&2 <<EOF

  bj_api_sync demo
  Odoo:      http://127.0.0.1:$http_port/odoo   (database $db, login admin / password admin)
  Menu:      Settings > Technical > BJ API (activate developer mode first)
  Receiver:  http://127.0.0.1:$receiver_port/<anything> answers 200 {"ok": true}; each request
             it gets is printed in this terminal, on lines starting with [receiver]
  Stop:      Ctrl-C
  (the first run installs the module and takes a minute before the URL answers)

EOF

# Odoo stays a child (not exec) so that the trap stops the receiver when it exits.
"${odoo_cmd[@]}" -d "$db" --db_host "$BJ_DB_HOST" --db_port "$db_port" --db_user "$BJ_DB_USER" \
    --addons-path "$addons" --data-dir "$BJ_RUN_DIR/odoo-data" --db-filter "^$db\$" \
    --http-interface 127.0.0.1 --http-port "$http_port" "${module_flags[@]}"
