from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..tools import transport
from ..tools.redact import is_secret_header


class BjApiSyncHeader(models.Model):
    _name = "bj.api.sync.header"
    _inherit = ["bj.api.sync.key.value"]
    _description = "Header"

    key = fields.Char(string="Header")

    @api.model
    def _is_secret_name(self, name):
        return is_secret_header(name)

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
