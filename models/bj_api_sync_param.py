from odoo import api, fields, models

from ..tools.redact import is_secret_param


class BjApiSyncParam(models.Model):
    _name = "bj.api.sync.param"
    _inherit = ["bj.api.sync.key.value"]
    _description = "Query parameter"

    key = fields.Char(string="Parameter")

    @api.model
    def _is_secret_name(self, name):
        return is_secret_param(name)

    @api.model
    def _value_problem(self, value):
        # Parameters are URL-encoded (UTF-8): any text goes but control
        # characters, which have no business in a configured value.
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            return self.env._("contains a control character (CR, LF, tab…)")
        return None
