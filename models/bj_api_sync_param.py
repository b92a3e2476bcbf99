from odoo import fields, models


class BjApiSyncParam(models.Model):
    _name = "bj.api.sync.param"
    _description = "BJ API Query Parameter"
    _order = "sequence, id"

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    key = fields.Char(string="Parameter", required=True)
    value = fields.Char()
