#!/usr/bin/env bash
# The lint of bj_api_sync (`make lint`, `.ci/run`): ruff check and ruff format --check
# (ruff.toml), then pylint-odoo's checks (.pylintrc) when pylint-odoo is installed.
# Runs all of them; exits 1 when any reports a finding. Environment: see scripts/devenv.sh.
set -euo pipefail

# shellcheck source=scripts/devenv.sh
source "$(dirname "${BASH_SOURCE[0]}")/devenv.sh"
cd "$BJ_ADDON_DIR"

# .addons holds a symlink back to the checkout; .pgdata belongs to postgres.
exclude=(--extend-exclude .addons,.pgdata,.run)
failed=()
say "=== ruff check"
"$PYTHON" -m ruff check "${exclude[@]}" . || failed+=("ruff check")
say "=== ruff format --check"
"$PYTHON" -m ruff format --check "${exclude[@]}" . || failed+=("ruff format --check")
if "$PYTHON" -c 'import pylint_odoo' 2>/dev/null; then
    say "=== pylint-odoo (.pylintrc)"
    # pylint-odoo reads the module's name from its folder: lint the mounted one.
    mount_addon
    (cd "$BJ_ADDONS_MOUNT" && "$PYTHON" -m pylint --rcfile="$BJ_ADDON_DIR/.pylintrc" \
        "$BJ_ADDON_NAME") || failed+=("pylint-odoo")
else
    say "pylint-odoo not installed: its checks were skipped ($PYTHON -m pip install pylint-odoo)"
fi

if ((${#failed[@]})); then
    printf -v list '%s, ' "${failed[@]}"
    say "lint: FAILED: ${list%, }"
    exit 1
fi
say "lint: clean"
