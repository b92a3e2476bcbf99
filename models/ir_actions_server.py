import datetime as _dt

from odoo import Command, api, fields, models
from odoo.exceptions import UserError, ValidationError

from .bj_api_sync_import import WRITE_BACK_KEY

# base.automation triggers → delivery events
AUTOMATION_EVENTS = {
    "on_create": "create",
    "on_write": "write",
    "on_create_or_write": "create_or_write",
    "on_unlink": "unlink",
}


class _DatetimeCompat:
    """Both the ``datetime`` module and its ``datetime`` class, for snippets.

    Odoo gives server-action code the (wrapped) module, so ``datetime.datetime.now()``
    works; integrators' snippets — the product documentation's included — write
    ``datetime.now()``. This object answers both spellings and returns plain
    ``datetime`` values.
    """

    datetime = _dt.datetime
    date = _dt.date
    time = _dt.time
    timedelta = _dt.timedelta
    timezone = _dt.timezone
    tzinfo = _dt.tzinfo
    MINYEAR = _dt.MINYEAR
    MAXYEAR = _dt.MAXYEAR
    now = staticmethod(_dt.datetime.now)
    today = staticmethod(_dt.datetime.today)
    utcnow = staticmethod(_dt.datetime.utcnow)
    combine = staticmethod(_dt.datetime.combine)
    strptime = staticmethod(_dt.datetime.strptime)
    fromisoformat = staticmethod(_dt.datetime.fromisoformat)
    fromtimestamp = staticmethod(_dt.datetime.fromtimestamp)
    min = _dt.datetime.min
    max = _dt.datetime.max

    def __repr__(self):
        return "<datetime module and class>"


DATETIME_COMPAT = _DatetimeCompat()


class IrActionsServer(models.Model):
    _inherit = "ir.actions.server"

    state = fields.Selection(
        selection_add=[("bj_api_sync", "Sync to External API")],
        ondelete={"bj_api_sync": "cascade"},
    )
    bj_api_sync_config_id = fields.Many2one(
        "bj.api.sync.config",
        string="API Configuration",
        ondelete="cascade",
        index="btree_not_null",
        domain="[('request_type', '=', 'out'), ('model_id', '=', model_id)]",
    )

    @api.constrains("state", "bj_api_sync_config_id", "model_id")
    def _check_bj_api_sync_config(self):
        for action in self.filtered(lambda a: a.state == "bj_api_sync"):
            config = action.bj_api_sync_config_id
            if not config:
                raise ValidationError(
                    self.env._(
                        "Server action %(name)r: choose the API Configuration to sync.",
                        name=action.name,
                    )
                )
            if config.model_id != action.model_id:
                raise ValidationError(
                    self.env._(
                        "Server action %(name)r runs on %(model)s but configuration "
                        "%(config)r maps %(config_model)s.",
                        name=action.name,
                        model=action.model_id.model,
                        config=config.name,
                        config_model=config.model_name,
                    )
                )

    def _get_eval_context(self, action=None):
        """Let scheduled and server actions run the documented snippets as written:
        ``datetime.now() - timedelta(hours=1)`` and ``self.env[...]``."""
        eval_context = super()._get_eval_context(action=action)
        eval_context["datetime"] = DATETIME_COMPAT
        eval_context.setdefault("timedelta", _dt.timedelta)
        eval_context.setdefault("self", eval_context.get("model"))
        return eval_context

    def _bj_api_sync_event(self):
        """The event that runs this action: its automation's trigger, else manual."""
        automation = self.sudo().base_automation_id
        done = self.env.context.get("__action_done")
        # Only the automation runner puts records in __action_done: a context
        # sent over RPC (JSON) cannot, so it cannot pose as an automation.
        if automation and isinstance(done, dict) and automation in done:
            return AUTOMATION_EVENTS.get(automation.trigger, "manual")
        return "manual"

    def _run_action_bj_api_sync_multi(self, eval_context=None):
        """Sync the active records, with the caller's rights; or, run by its own
        scheduled action, every record matching the domain.

        Odoo runs server actions in ``sudo()``: the records are taken back to
        the calling user, who must be able to read them. Without records only a
        scheduled action (``ir.cron``) of this server action, running as its
        own user, syncs "everything"; any other caller gets an error rather
        than a full sync (SPEC §9).
        """
        config = self.sudo().bj_api_sync_config_id
        if not config.active:
            return False
        automated = self._bj_api_sync_event() != "manual"
        if self.env.context.get(WRITE_BACK_KEY) and automated:
            # An automation rule fired by a write-back of this addon: the
            # values came from the receiver, sending them again would loop.
            return False
        env = (eval_context or {}).get("env") or self.env
        env = env(su=False)
        context = self.env.context
        model = context.get("active_model")
        ids = context.get("active_ids") or (
            [context["active_id"]] if context.get("active_id") else []
        )
        if model and model != config.model_name:
            raise UserError(
                self.env._(
                    "Server action %(name)r syncs %(expected)s records, not %(given)s.",
                    name=self.name,
                    expected=config.model_name,
                    given=model,
                )
            )
        if ids:
            records = env[config.model_name].browse(ids)
            config._trigger_records(records, self._bj_api_sync_event())
            return False
        if not self._bj_api_sync_runs_as_cron(env):
            raise UserError(
                self.env._(
                    "Server action %(name)r needs records to sync: run it from "
                    "a list or a form. Syncing every record is done by its "
                    "scheduled action only.",
                    name=self.name,
                )
            )
        if config.import_response:
            config._import_run(
                env, commit=self.env["ir.cron"]._commit_progress, event="cron"
            )
        else:
            config._sync_all("cron", env=env)
        return False

    def _bj_api_sync_runs_as_cron(self, env):
        """Whether this run is a scheduled action of this server action,
        executed by the cron runner as the scheduled action's own user."""
        cron_id = self.env.context.get("cron_id")
        if not cron_id:
            return False
        cron = self.env["ir.cron"].sudo().browse(cron_id).exists()
        return bool(
            cron
            and cron.ir_actions_server_id.id == self.id
            and cron.user_id.id == env.uid
        )

    @api.model
    def _bj_api_sync_remove_triggers(self):
        """Remove what drives this addon's syncs (used when uninstalling):
        scheduled actions, automation rules (their other actions are kept, on
        the rule), "Send to" menu entries and the server actions themselves.
        Without it Odoo would leave active crons and rules that log "Found no
        way to execute server action" on every write."""
        actions = (
            self.sudo()
            .with_context(active_test=False)
            .search([("state", "=", "bj_api_sync")])
        )
        if not actions:
            return
        crons = (
            self.env["ir.cron"]
            .sudo()
            .with_context(active_test=False)
            .search([("ir_actions_server_id", "in", actions.ids)])
        )
        automations = (
            self.env["base.automation"]
            .sudo()
            .with_context(active_test=False)
            .search([("action_server_ids", "in", actions.ids)])
        )
        crons.unlink()
        emptied = automations.filtered(lambda a: not (a.action_server_ids - actions))
        emptied.unlink()
        for automation in automations - emptied:
            automation.action_server_ids = [
                Command.unlink(action.id)
                for action in automation.action_server_ids & actions
            ]
        actions = actions.exists()
        actions.filtered("binding_model_id").unlink_action()
        actions.unlink()
