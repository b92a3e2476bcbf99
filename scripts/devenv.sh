#!/usr/bin/env bash
# Developer environment for bj_api_sync: where Odoo is, a PostgreSQL server, the addons path.
#
#   scripts/devenv.sh find-odoo     print the Odoo 19.0 source tree, or explain how to get one
#   scripts/devenv.sh ensure-pg     reuse or start PostgreSQL on 127.0.0.1, ensure role `odoo`;
#                                   prints the port
#   scripts/devenv.sh stop-pg       stop the private cluster under .pgdata (if running)
#   scripts/devenv.sh addons-path   mount the addon under .addons/, print --addons-path
#
# The other scripts source this file and use the same functions.
#
# Environment:
#   ODOO_SRC         Odoo 19.0 source tree (else: the tree of the importable `odoo` package)
#   PYTHON           interpreter that runs Odoo and pytest (default python3)
#   PGPORT           PostgreSQL port to reuse or start on (default 5432)
#   BJ_DB_USER       database role Odoo connects as (default odoo; never postgres)
#   BJ_ADDON_NAME    technical name of the addon (default bj_api_sync)
#   BJ_ADDON_DIR     the addon's directory (default: this checkout)
#   BJ_ADDONS_MOUNT  folder holding the <name> symlink (default <checkout>/.addons)
#   BJ_PGDATA        private cluster folder (default <checkout>/.pgdata)
set -euo pipefail

BJ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
BJ_ADDON_NAME=${BJ_ADDON_NAME:-bj_api_sync}
BJ_ADDON_DIR=$(cd "${BJ_ADDON_DIR:-$BJ_ROOT}" && pwd)
BJ_ADDONS_MOUNT=${BJ_ADDONS_MOUNT:-$BJ_ROOT/.addons}
BJ_PGDATA=${BJ_PGDATA:-$BJ_ROOT/.pgdata}
BJ_DB_HOST=127.0.0.1
BJ_DB_USER=${BJ_DB_USER:-odoo}
BJ_RUN_DIR=$BJ_ROOT/.run

say() { printf '%s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- Odoo ---------------------------------------------------------------------------

odoo_help() {
    cat >&2 <<'EOF'
Odoo 19.0 is needed to install bj_api_sync and run its Odoo tests. Either:
  * set ODOO_SRC to an Odoo 19.0 source tree (the folder holding odoo-bin), e.g.
        git clone --depth 1 --branch 19.0 https://github.com/odoo/odoo.git ~/odoo19
        export ODOO_SRC=~/odoo19
    and install its Python requirements into the same python3:
        python3 -m pip install -r "$ODOO_SRC/requirements.txt"
  * or make the `odoo` package importable by python3 (checked with
    `python3 -c 'import odoo.release'`), e.g. by writing a .pth file naming the tree
    into python3's site-packages folder.
PostgreSQL 13+ server binaries (initdb, pg_ctl) are needed too, or a server that answers
on 127.0.0.1:5432 (or on port $PGPORT when set).
EOF
}

# True when Odoo can be found (ODOO_SRC set or `odoo` importable); quiet.
odoo_available() {
    [[ -n ${ODOO_SRC:-} ]] || "$PYTHON" -c 'import odoo.release' >/dev/null 2>&1
}

# Print the Odoo source tree (the parent of the folder holding odoo/release.py).
find_odoo() {
    local tree version
    if [[ -n ${ODOO_SRC:-} ]]; then
        tree=$(cd "$ODOO_SRC" 2>/dev/null && pwd) ||
            die "ODOO_SRC=$ODOO_SRC is not a folder"
        [[ -f $tree/odoo/release.py ]] || {
            odoo_help
            die "ODOO_SRC=$ODOO_SRC is not an Odoo source tree (no odoo/release.py)"
        }
    else
        tree=$("$PYTHON" -c 'import os, odoo.release as r
print(os.path.dirname(os.path.dirname(os.path.abspath(r.__file__))))' 2>/dev/null) || {
            odoo_help
            die "Odoo 19.0 not found: ODOO_SRC is unset and '$PYTHON -c \"import odoo\"' fails"
        }
    fi
    # release.py has no imports: read the version without importing odoo.
    version=$("$PYTHON" -c 'import runpy, sys
print(runpy.run_path(sys.argv[1])["version"])' "$tree/odoo/release.py")
    [[ $version == 19.0* ]] || die "Odoo $version found at $tree; bj_api_sync needs Odoo 19.0"
    printf '%s\n' "$tree"
}

# Fill the array named $1 with the command that starts Odoo from tree $2.
odoo_command() {
    local -n _cmd=$1
    local tree=$2
    if [[ -f $tree/odoo-bin ]]; then
        _cmd=("$PYTHON" "$tree/odoo-bin")
    else
        _cmd=("$PYTHON" -m odoo)
    fi
}

# Make `import odoo` resolve to the tree found (matters when ODOO_SRC is set).
odoo_pythonpath() {
    local tree=$1
    export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"
}

# Mount the addon as <mount>/<name> (a symlink: Odoo and pylint-odoo want the folder
# named after the module).
mount_addon() {
    local link=$BJ_ADDONS_MOUNT/$BJ_ADDON_NAME
    mkdir -p "$BJ_ADDONS_MOUNT"
    if [[ -e $link && ! -L $link ]]; then
        die "$link exists and is not a symlink; move it away"
    fi
    # Recreate only when needed: concurrent runs must not race on the link.
    if [[ $(readlink "$link" 2>/dev/null || true) != "$BJ_ADDON_DIR" ]]; then
        ln -sfn "$BJ_ADDON_DIR" "$link"
    fi
    [[ -f $link/__manifest__.py ]] || die "$BJ_ADDON_DIR has no __manifest__.py"
}

# Mount the addon and print the full --addons-path value.
addons_path() {
    local tree path
    tree=$(find_odoo)
    mount_addon
    path=$tree/odoo/addons
    [[ -d $tree/addons ]] && path+=,$tree/addons
    printf '%s\n' "$path,$BJ_ADDONS_MOUNT"
}

# --- PostgreSQL ---------------------------------------------------------------------

pg_tool() { # print the path of a PostgreSQL server binary (initdb, pg_ctl)
    local name=$1 found
    found=$(command -v "$name" 2>/dev/null) ||
        found=$(printf '%s\n' /usr/lib/postgresql/*/bin/"$name" | sort -V | tail -n 1)
    [[ -x $found ]] || found=
    [[ -n $found ]] || die "PostgreSQL server binary '$name' not found: install PostgreSQL 13+
(Debian/Ubuntu: apt-get install postgresql) or start a server on $BJ_DB_HOST:${PGPORT:-5432}"
    printf '%s\n' "$found"
}

pg_ready() { pg_isready -q -h "$BJ_DB_HOST" -p "$1" -t 3 >/dev/null 2>&1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Run a command as the owner of the private cluster: `postgres` when we are root
# (PostgreSQL refuses to run as root), else ourselves.
as_pg_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# The same for a command that leaves a daemon behind (pg_ctl start): the daemon must not
# inherit our open descriptors (the lock below, callers' pipes), it would hold them for its
# whole life. Python's subprocess closes every descriptor above 2.
as_pg_owner_detached() {
    local -a cmd=("$@")
    [[ $(id -u) -ne 0 ]] || cmd=(runuser -u postgres -- "$@")
    (cd / && "$PYTHON" -c 'import subprocess, sys
sys.exit(subprocess.call(sys.argv[1:], stdin=subprocess.DEVNULL))' "${cmd[@]}")
}

# psql against the server on port $1 as role $2; never prompts for a password.
bj_psql() {
    local port=$1 user=$2
    shift 2
    psql -X -w -q -v ON_ERROR_STOP=1 -h "$BJ_DB_HOST" -p "$port" -U "$user" -d postgres "$@"
}

# When root, the private cluster must be reachable by `postgres`; fall back to /tmp if not.
pick_pgdata() {
    if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$(dirname "$BJ_PGDATA")"; then
        local fallback=${TMPDIR:-/tmp}/bj_api_sync-pgdata
        say "note: user postgres cannot enter $(dirname "$BJ_PGDATA"); using $fallback"
        BJ_PGDATA=$fallback
    fi
}

# Start (initdb first if needed) the private cluster; print its port.
start_private_cluster() {
    local want=$1 data port initdb pg_ctl
    pick_pgdata
    data=$BJ_PGDATA/data
    initdb=$(pg_tool initdb)
    pg_ctl=$(pg_tool pg_ctl)
    if [[ ! -f $data/PG_VERSION ]]; then
        say "Creating a private PostgreSQL cluster in $data"
        mkdir -p "$BJ_PGDATA"
        [[ $(id -u) -eq 0 ]] && chown postgres: "$BJ_PGDATA"
        chmod 700 "$BJ_PGDATA"
        as_pg_owner "$initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$BJ_RUN_DIR/initdb.log" 2>&1 || {
            cat "$BJ_RUN_DIR/initdb.log" >&2
            die "initdb failed"
        }
        # TCP on loopback only; no Unix socket (its folder may not exist or be writable).
        as_pg_owner tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# bj_api_sync developer cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    if as_pg_owner "$pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(sed -n 4p "$data/postmaster.pid")
        say "Reusing the private PostgreSQL cluster on $BJ_DB_HOST:$port ($data)"
        printf '%s\n' "$port"
        return
    fi
    port=$want
    while port_in_use "$port"; do
        say "port $port is taken by something that is not PostgreSQL; trying $((port + 1))"
        port=$((port + 1))
    done
    say "Starting the private PostgreSQL cluster on $BJ_DB_HOST:$port (log: $BJ_PGDATA/postgresql.log)"
    if ! as_pg_owner_detached "$pg_ctl" -D "$data" -l "$BJ_PGDATA/postgresql.log" \
        -o "-p $port" -w -t 60 start >&2; then
        tail -n 20 "$BJ_PGDATA/postgresql.log" >&2 || true
        die "could not start PostgreSQL from $data"
    fi
    printf '%s\n' "$port"
}

# Make sure role $BJ_DB_USER can log in and create databases on the server at port $1.
ensure_role() {
    local port=$1 can
    [[ $BJ_DB_USER != postgres ]] || die "Odoo refuses the role postgres: set BJ_DB_USER"
    can=$(bj_psql "$port" "$BJ_DB_USER" -tAc \
        "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user" \
        2>/dev/null || true)
    [[ $can == t ]] && return
    bj_psql "$port" postgres >/dev/null <<EOF || die "cannot create role $BJ_DB_USER as postgres on $BJ_DB_HOST:$port
(set PGPASSWORD for password authentication, or create it yourself:
  CREATE ROLE $BJ_DB_USER LOGIN CREATEDB;)"
SELECT format('CREATE ROLE %I', '$BJ_DB_USER')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$BJ_DB_USER') \gexec
ALTER ROLE "$BJ_DB_USER" WITH LOGIN SUPERUSER;
EOF
    say "Role $BJ_DB_USER (LOGIN SUPERUSER) is ready"
}

# Reuse whatever answers on 127.0.0.1:$PGPORT, else start the private cluster; print the port.
ensure_pg() {
    local port=${PGPORT:-5432}
    mkdir -p "$BJ_RUN_DIR"
    command -v pg_isready >/dev/null || die "pg_isready not found: install the PostgreSQL client"
    command -v psql >/dev/null || die "psql not found: install the PostgreSQL client"
    if pg_ready "$port"; then
        say "Reusing the PostgreSQL server on $BJ_DB_HOST:$port"
    else
        # One starter at a time per checkout; the loser re-checks and reuses.
        exec 9>"$BJ_RUN_DIR/pg-start.lock"
        flock -w 120 9 || die "timed out waiting for $BJ_RUN_DIR/pg-start.lock"
        if pg_ready "$port"; then
            say "Reusing the PostgreSQL server on $BJ_DB_HOST:$port"
        else
            port=$(start_private_cluster "$port")
            pg_ready "$port" || die "PostgreSQL on $BJ_DB_HOST:$port does not answer"
        fi
        exec 9>&-
    fi
    ensure_role "$port"
    printf '%s\n' "$port"
}

stop_pg() {
    local data
    pick_pgdata
    data=$BJ_PGDATA/data
    if [[ -f $data/PG_VERSION ]] && as_pg_owner "$(pg_tool pg_ctl)" -D "$data" status >/dev/null 2>&1; then
        as_pg_owner "$(pg_tool pg_ctl)" -D "$data" -m fast -w stop >&2
    else
        say "No private cluster is running in $data"
    fi
}

# Database helpers (port, name).
db_exists() {
    [[ $(bj_psql "$1" "$BJ_DB_USER" -tAc "SELECT 1 FROM pg_database WHERE datname = '$2'") == 1 ]]
}

drop_db() {
    local port=$1 db=$2
    bj_psql "$port" "$BJ_DB_USER" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    rm -rf "$BJ_RUN_DIR/odoo-data/filestore/$db"
}

free_tcp_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

main() {
    case ${1:-} in
    find-odoo) find_odoo ;;
    ensure-pg) ensure_pg ;;
    stop-pg) stop_pg ;;
    addons-path) addons_path ;;
    *)
        sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
