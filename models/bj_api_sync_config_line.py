from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..mapping import IN_DIRECTIONS, RELATIONAL_TYPES, field_writable_problem


class BjApiSyncConfigLine(models.Model):
    _name = "bj.api.sync.config.line"
    _description = "BJ API Field Mapping"
    _order = "sequence, id"

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    model_name = fields.Char(related="config_id.model_name")
    sequence = fields.Integer(default=10)
    field_path = fields.Char(
        string="Odoo Field",
        help="Dotted path from the configuration's model, e.g. "
        "partner_id.country_id.code. Leave empty only for Python lines.",
    )
    api_key = fields.Char(
        string="External API Key",
        required=True,
        help="Key in the payload; dots build nested objects: customer.email gives "
        '{"customer": {"email": ...}}.',
    )
    value_type = fields.Selection(
        [
            ("plain", "Plain"),
            ("relational", "Relational"),
            ("mapping", "Mapping"),
            ("python", "Python"),
        ],
        required=True,
        default="plain",
        help="Plain: the raw value (ids for relations). Relational: display names. "
        "Mapping: nested object(s) built by another configuration. Python: the "
        "result of the Python code.",
    )
    mapping_config_id = fields.Many2one(
        "bj.api.sync.config",
        string="Mapping Configuration",
        ondelete="restrict",
        help="Configuration whose field mappings build the nested object(s).",
    )
    python_code = fields.Text(
        help="Runs for each record; set `result`. Available: env, model, record, "
        "records, value, datetime, timedelta, json.",
    )
    is_identifier = fields.Boolean(
        string="Record Identifier",
        help="Marks the value that identifies the record on the external side: "
        "incoming objects are matched to records by it (upsert key).",
    )
    direction = fields.Selection(
        [
            ("both", "Both (Inbound & Outbound)"),
            ("out", "Outbound (Odoo → JSON)"),
            ("in", "Inbound (JSON → Odoo)"),
        ],
        required=True,
        default="both",
        help="Outbound work (payloads, GET answers) uses Both and Outbound lines; "
        "inbound work (endpoints, imports, write-back) uses Both and Inbound "
        "lines.",
    )

    @api.model_create_multi
    def create(self, vals_list):
        if any(vals.get("python_code") for vals in vals_list):
            self.env["bj.api.sync.config"]._check_code_author()
        self.env.registry.clear_cache()  # cached payload plans
        return super().create(vals_list)

    def write(self, vals):
        # Writing code, or turning a line that holds code into a Python line,
        # is for Settings administrators only (SPEC §9).
        changes_code = "python_code" in vals and any(
            (line.python_code or False) != (vals["python_code"] or False)
            for line in self
        )
        activates_code = vals.get("value_type") == "python" and any(
            line.python_code and line.value_type != "python" for line in self
        )
        if changes_code or activates_code:
            self.env["bj.api.sync.config"]._check_code_author()
        self.env.registry.clear_cache()
        return super().write(vals)

    def unlink(self):
        self.env.registry.clear_cache()
        return super().unlink()

    # ------------------------------------------------------------------
    # Path helpers
    # ------------------------------------------------------------------

    @api.model
    def _resolve_field_path(self, model_name, path):
        """Return the list of ``fields.Field`` a dotted path walks through.

        :raises ValidationError: naming the faulty segment when the path does not
            exist, goes through a non-relational field, or names a
            group-restricted field.
        """
        if not path or not path.strip():
            raise ValidationError(self.env._("The field path is empty."))
        model = self.env[model_name]
        chain = []
        names = path.strip().split(".")
        for index, name in enumerate(names):
            field = model._fields.get(name)
            if field is None:
                raise ValidationError(
                    self.env._(
                        "Field path %(path)s: model %(model)s has no field %(name)r.",
                        path=path,
                        model=model._name,
                        name=name,
                    )
                )
            if field.groups:
                raise ValidationError(
                    self.env._(
                        "Field path %(path)s: field %(name)r of %(model)s is "
                        "restricted to some user groups and cannot be sent.",
                        path=path,
                        name=name,
                        model=model._name,
                    )
                )
            chain.append(field)
            if index < len(names) - 1:
                if field.type not in RELATIONAL_TYPES:
                    raise ValidationError(
                        self.env._(
                            "Field path %(path)s: %(name)r is a %(type)s field, "
                            "not a relation, so nothing can follow it.",
                            path=path,
                            name=name,
                            type=field.type,
                        )
                    )
                model = self.env[field.comodel_name]
        return chain

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains("field_path", "value_type", "config_id")
    def _check_field_path(self):
        for line in self:
            if not line.config_id.model_name:
                continue
            if not line.field_path:
                if line.value_type != "python":
                    raise ValidationError(
                        self.env._(
                            "Mapping line %(key)r: an Odoo field is required "
                            "(only Python lines may leave it empty).",
                            key=line.api_key,
                        )
                    )
                continue
            chain = self._resolve_field_path(line.config_id.model_name, line.field_path)
            if line.value_type == "mapping" and chain[-1].type not in RELATIONAL_TYPES:
                raise ValidationError(
                    self.env._(
                        "Mapping line %(key)r: a Mapping needs a relational field, "
                        "and %(path)s is not one.",
                        key=line.api_key,
                        path=line.field_path,
                    )
                )

    @api.constrains("field_path", "direction", "value_type", "config_id")
    def _check_inbound_field(self):
        """An inbound line must be able to write its field (SPEC §10): refused
        at save on readonly fields and on non-stored fields without inverse.
        Checked for lines the configuration reads inbound."""
        for line in self:
            if not line.field_path or not line._is_read_inbound():
                continue
            first = self._resolve_field_path(
                line.config_id.model_name, line.field_path
            )[0]
            problem = field_writable_problem(first)
            if problem:
                raise ValidationError(
                    self.env._(
                        "Mapping line %(key)r: field %(field)s of %(model)s is "
                        "%(problem)s, so incoming values cannot be written to it. "
                        "Make the line Outbound only.",
                        key=line.api_key,
                        field=first.name,
                        model=line.config_id.model_name,
                        problem=problem,
                    )
                )

    def _is_read_inbound(self):
        """Whether the configuration applies this line to incoming JSON."""
        self.ensure_one()
        return (
            self.direction in IN_DIRECTIONS
            and self.config_id._reads_inbound()
            and self.value_type != "python"
        )

    @api.constrains("is_identifier", "direction")
    def _check_identifier(self):
        self.config_id._check_identifier_line()

    @api.constrains("api_key")
    def _check_api_key(self):
        for line in self:
            key = (line.api_key or "").strip()
            if not key or any(not part.strip() for part in key.split(".")):
                raise ValidationError(
                    self.env._(
                        "External API key %(key)r is not valid: it must not be "
                        "empty nor contain empty parts between dots.",
                        key=line.api_key,
                    )
                )

    @api.constrains("value_type", "mapping_config_id", "field_path")
    def _check_mapping_config(self):
        for line in self.filtered(lambda x: x.value_type == "mapping"):
            if not line.mapping_config_id:
                raise ValidationError(
                    self.env._(
                        "Mapping line %(key)r needs a Mapping Configuration.",
                        key=line.api_key,
                    )
                )
            if line.field_path and line.config_id.model_name:
                chain = self._resolve_field_path(
                    line.config_id.model_name, line.field_path
                )
                comodel = chain[-1].comodel_name
                if comodel and line.mapping_config_id.model_name != comodel:
                    raise ValidationError(
                        self.env._(
                            "Mapping line %(key)r: %(path)s points to %(comodel)s "
                            "but configuration %(config)r maps %(model)s.",
                            key=line.api_key,
                            path=line.field_path,
                            comodel=comodel,
                            config=line.mapping_config_id.name,
                            model=line.mapping_config_id.model_name,
                        )
                    )
            line.config_id._check_mapping_cycle()

    @api.constrains("python_code", "value_type")
    def _check_python_code(self):
        for line in self.filtered(lambda x: x.value_type == "python"):
            if not (line.python_code or "").strip():
                raise ValidationError(
                    self.env._(
                        "Mapping line %(key)r is of type Python but has no code.",
                        key=line.api_key,
                    )
                )
            self.env["bj.api.sync.config"]._check_python_source(
                line.python_code,
                self.env._("Python code of mapping line %(key)r", key=line.api_key),
            )
