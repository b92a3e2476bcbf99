from . import controllers
from . import models
from . import wizard


def uninstall_hook(env):
    """Remove the crons, automation rules, server actions and "Send to" menu
    entries this addon created, so that nothing keeps firing without it."""
    env["ir.actions.server"]._bj_api_sync_remove_triggers()
