import datetime as _dt

from odoo import api, fields, models
from odoo.exceptions import ValidationError

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
        if automation and self.env.context.get("__action_done"):
            return AUTOMATION_EVENTS.get(automation.trigger, "manual")
        return "manual"

    def _run_action_bj_api_sync_multi(self, eval_context=None):
        """Sync the active records, or every matching record when there are none
        (scheduled action)."""
        config = self.bj_api_sync_config_id
        if not config.active:
            return False
        context = self.env.context
        ids = context.get("active_ids") or (
            [context["active_id"]] if context.get("active_id") else []
        )
        if context.get("active_model") == config.model_name and ids:
            records = self.env[config.model_name].browse(ids)
            config._trigger_records(records, self._bj_api_sync_event())
            return False
        config._sync_all("cron")
        return False
