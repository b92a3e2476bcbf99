from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..tools import transport


class BjApiSyncKeyValue(models.AbstractModel):
    """A name and a value sent with every request of a configuration.

    Shared by custom headers and query parameters. Hooks: ``_is_secret_name``
    (whether a name looks like a credential: its value is then masked for
    non-managers, in logs and previews, and blanked by neutralization) and
    ``_value_problem`` (why a value cannot be sent, or None).
    """

    _name = "bj.api.sync.key.value"
    _description = "BJ API name and value"
    _order = "sequence, id"

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    key = fields.Char(required=True)
    value = fields.Char(groups="bj_api_sync.group_bj_api_manager")
    display_value = fields.Char(
        string="Value ",
        compute="_compute_display_value",
        help="The value as users without the manager right see it: secret-looking "
        "names are masked.",
    )
    is_secret = fields.Boolean(
        compute="_compute_is_secret",
        help="Values whose name looks like a credential are masked in logs and "
        "previews.",
    )

    @api.model_create_multi
    def create(self, vals_list):
        self.env.registry.clear_cache()  # the configurations' cached secrets
        return super().create(vals_list)

    def write(self, vals):
        self.env.registry.clear_cache()
        return super().write(vals)

    def unlink(self):
        self.env.registry.clear_cache()
        return super().unlink()

    @api.model
    def _is_secret_name(self, name):
        raise NotImplementedError

    @api.model
    def _value_problem(self, value):
        return transport.invalid_value_reason(value)

    @api.depends("key")
    def _compute_is_secret(self):
        for item in self:
            item.is_secret = bool(item.key) and self._is_secret_name(item.key)

    @api.depends("key", "is_secret")
    def _compute_display_value(self):
        for item in self:
            value = item.sudo().value or ""
            item.display_value = "***" if (item.is_secret and value) else value

    @api.constrains("value")
    def _check_value(self):
        for item in self.sudo():
            problem = item.value and self._value_problem(item.value)
            if problem:
                raise ValidationError(
                    self.env._(
                        "%(what)s %(key)r of configuration %(config)r: the value "
                        "%(problem)s.",
                        what=self._description,
                        key=item.key,
                        config=item.config_id.name,
                        problem=problem,
                    )
                )
