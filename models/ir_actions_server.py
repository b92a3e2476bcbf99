from odoo import api, fields, models
from odoo.exceptions import ValidationError

# base.automation triggers → delivery events
AUTOMATION_EVENTS = {
    "on_create": "create",
    "on_write": "write",
    "on_create_or_write": "create_or_write",
    "on_unlink": "unlink",
}


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
