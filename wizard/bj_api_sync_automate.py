from odoo import Command, fields, models
from odoo.exceptions import UserError

TRIGGERS = (
    ("on_create", "on_create"),
    ("on_create_or_write", "on_create_or_write"),
    ("on_unlink", "on_unlink"),
)


class BjApiSyncAutomate(models.TransientModel):
    _name = "bj.api.sync.automate"
    _description = "BJ API: create automation rules"

    config_id = fields.Many2one("bj.api.sync.config", required=True, ondelete="cascade")
    on_create = fields.Boolean(string="On creation", default=True)
    on_create_or_write = fields.Boolean(string="On creation and update")
    on_unlink = fields.Boolean(string="On deletion")

    def action_create_automations(self):
        """Create one automation rule per chosen event, sharing one server action."""
        self.ensure_one()
        config = self.config_id
        chosen = [trigger for field, trigger in TRIGGERS if self[field]]
        if not chosen:
            raise UserError(self.env._("Choose at least one event to automate."))
        labels = dict(self.env["base.automation"]._fields["trigger"].selection)
        existing = config.automation_ids
        automations = self.env["base.automation"]
        for trigger in chosen:
            found = existing.filtered(lambda a, t=trigger: a.trigger == t)
            if found:
                found.active = True
                automations |= found
                continue
            automations |= self.env["base.automation"].create(
                {
                    "name": f"{config.name}: {labels[trigger]}",
                    "model_id": config.model_id.id,
                    "trigger": trigger,
                    "action_server_ids": [
                        Command.create(
                            dict(
                                config._prepare_trigger_action_values(
                                    self.env._("Sync to %s", config.name)
                                ),
                                usage="base_automation",
                            )
                        )
                    ],
                }
            )
        config.invalidate_recordset(["automation_ids", "automation_count"])
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Automations"),
            "res_model": "base.automation",
            "view_mode": "list,form",
            "domain": [("id", "in", automations.ids)],
        }
