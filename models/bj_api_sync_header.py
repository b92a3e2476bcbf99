from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..tools import transport
from ..tools.redact import redact_headers


class BjApiSyncHeader(models.Model):
    _name = "bj.api.sync.header"
    _description = "BJ API Custom Header"
    _order = "sequence, id"

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    key = fields.Char(string="Header", required=True)
    value = fields.Char(groups="bj_api_sync.group_bj_api_manager")
    display_value = fields.Char(
        string="Value ",
        compute="_compute_display_value",
        help="The value as users without the manager right see it: secret-looking "
        "headers are masked.",
    )
    is_secret = fields.Boolean(
        compute="_compute_is_secret",
        help="Headers whose name looks like a credential are masked in logs "
        "and previews.",
    )

    @api.depends("key")
    def _compute_is_secret(self):
        for header in self:
            name = header.key or ""
            header.is_secret = bool(name) and redact_headers({name: "x"})[name] != "x"

    @api.depends("key", "is_secret")
    def _compute_display_value(self):
        for header in self:
            value = header.sudo().value or ""
            header.display_value = "***" if (header.is_secret and value) else value

    @api.constrains("key")
    def _check_key(self):
        for header in self:
            if not transport.is_valid_header_name(header.key or ""):
                raise ValidationError(
                    self.env._(
                        "Header name %(key)r is not a valid HTTP header name.",
                        key=header.key,
                    )
                )
