"""``bj.api.sync.config``: what to send, where and when (SPEC §2).

This file holds the configuration's fields, constraints, CRUD and buttons. The
rest of its behaviour lives in named mixins, each in its own file:

* ``bj.api.sync.request.mixin`` (``bj_api_sync_request.py``): which records,
  the requests built from them, sending now, logging;
* ``bj.api.sync.outbox.mixin`` (``bj_api_sync_outbox.py``): queued delivery,
  circuit breaker and triggers;
* ``bj.api.sync.changes.mixin`` (``bj_api_sync_changes.py``): update events
  that send the changed fields only (``payload_scope``);
* ``bj.api.sync.auth.mixin`` (``bj_api_sync_auth.py``): authentication, signing
  and the host allow-list;
* ``bj.api.sync.connection.mixin`` (``bj_api_sync_connection.py``): mutual TLS
  and the Test Connection button;
* ``bj.api.sync.inbound.mixin`` (``bj_api_sync_inbound.py``): the inbound REST
  endpoints of In configurations (``controllers/main.py`` routes to them);
* ``bj.api.sync.stats.mixin`` (``bj_api_sync_stats.py``): health figures of the
  Overview dashboard;

and payloads are built (and JSON read back into values) by the mapping engine,
``mapping.py``.
"""

import psycopg2

from odoo import SUPERUSER_ID, api, fields, models, tools
from odoo.exceptions import AccessError, UserError, ValidationError

from ..exceptions import SyncError
from ..mapping import MAPPING_MAX_DEPTH, OUT_DIRECTIONS, LinePlan
from ..tools import sandbox, transport
from ..tools.redact import redact_text, truncate
from .bj_api_sync_delivery import OPEN_STATES

#: Only members of this group write Python code (lines and scripts), as Odoo
#: lets only them write server-action code (SPEC §9).
CODE_GROUP = "base.group_system"
#: Users of this group may see samples built by Python code (SPEC §9): code
#: runs for nobody else when a form is merely opened.
SAMPLE_CODE_GROUP = "bj_api_sync.group_bj_api_manager"
#: The Sample Payload panel shows at most this many bytes.
SAMPLE_LIMIT = 16 * 1024
#: Fields whose change changes the cached line plans.
PLAN_FIELDS = frozenset(
    {
        "line_ids",
        "request_url",
        "model_id",
        "http_method_ids",
        "header_ids",
        "param_ids",
        "endpoint",
        "request_type",
        "active",
    }
)


class BjApiSyncConfig(models.Model):
    _name = "bj.api.sync.config"
    _description = "BJ API Configuration"
    # Earlier mixins override later ones: auth and outbox hooks wrap the
    # request mixin's methods.
    _inherit = [
        "mail.thread",
        "bj.api.sync.import.mixin",
        "bj.api.sync.inbound.mixin",
        "bj.api.sync.openapi.mixin",
        "bj.api.sync.connection.mixin",
        "bj.api.sync.auth.mixin",
        "bj.api.sync.changes.mixin",
        "bj.api.sync.outbox.mixin",
        "bj.api.sync.request.mixin",
        "bj.api.sync.stats.mixin",
    ]
    _order = "sequence, name, id"

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one("res.company", index=True)
    request_type = fields.Selection(
        [("in", "In"), ("out", "Out")],
        required=True,
        default="out",
        help="Out sends Odoo records to an external API. In answers the REST "
        "endpoint /bj_api_sync/v1/<endpoint> with this configuration's lines.",
    )
    model_id = fields.Many2one(
        "ir.model",
        required=True,
        ondelete="cascade",
        tracking=True,
        domain=[("transient", "=", False)],
    )
    model_name = fields.Char(
        related="model_id.model", store=True, string="Model Name", index=True
    )
    filter_domain = fields.Char(
        default="[]",
        tracking=True,
        help="Only records matching this domain are sent. May use datetime, "
        "timedelta, relativedelta, context_today and uid.",
    )
    request_url = fields.Char(
        string="Request URL",
        tracking=True,
        help="http(s) URL of the external endpoint. {field_path} placeholders are "
        "replaced per record, e.g. https://api.example.com/partners/{ref}.",
    )
    http_method_ids = fields.Many2many(
        "bj.http.method",
        string="HTTP Method",
        tracking=True,
        help="Outbound configurations need exactly one method.",
    )
    http_method = fields.Char(compute="_compute_http_method", string="Method")
    connect_timeout = fields.Float(
        string="Connection Timeout", default=5.0, help="Seconds."
    )
    read_timeout = fields.Float(default=15.0, help="Seconds.")
    header_ids = fields.One2many(
        "bj.api.sync.header", "config_id", string="Headers", copy=True
    )
    param_ids = fields.One2many(
        "bj.api.sync.param", "config_id", string="Query Parameters", copy=True
    )
    line_ids = fields.One2many(
        "bj.api.sync.config.line", "config_id", string="Field Mappings", copy=True
    )
    python_script = fields.Text(
        help="Transforms the whole payload. Available: env, model, records, "
        "request_data, datetime, timedelta, json. Set `result` to replace the body.",
    )
    is_paginated = fields.Boolean(
        help="Send records in pages: one request per page, body = JSON array.",
    )
    page_size = fields.Integer(default=100)
    max_retries = fields.Integer(
        default=3, help="Quick retries inside one call (connection errors, 429, 5xx)."
    )
    backoff_factor = fields.Float(
        default=0.5, help="Exponential backoff factor between quick retries (s)."
    )
    log_ids = fields.One2many("bj.api.log", "config_id", string="Logs")
    log_count = fields.Integer(compute="_compute_log_count")
    run_as_user_id = fields.Many2one(
        "res.users",
        string="Run As",
        ondelete="restrict",
        domain=[("share", "=", False)],
        help="Automation rules and scheduled syncs read the records and run the "
        "mapping code with this user's access rights and record rules. Empty: "
        "the user whose change fired the rule (scheduled syncs: the user who "
        "set the schedule). Only Settings administrators choose another user "
        "than themselves. Buttons (Send Now, Preview, Send to) always use the "
        "rights of the user who presses them. Inbound endpoints run every "
        "request as this user (required, unless they authenticate with an Odoo "
        "API key: then as the key's user).",
    )
    inbound_create_missing = fields.Boolean(
        string="Create Missing Records",
        help="When a configuration nests this one (Mapping lines) and an incoming "
        "object's identifier matches no record, create it from this "
        "configuration's lines instead of refusing the object.",
    )
    can_edit_code = fields.Boolean(
        compute="_compute_can_edit_code",
        help="Whether the current user may write Python code (Settings admins).",
    )
    sample_payload = fields.Text(
        compute="_compute_sample_payload",
        help="The payload built from the first record matching the filter domain "
        "that you may read, with your access rights; nothing is sent. Save the "
        "configuration to refresh it.",
    )

    # Bounds of numeric settings, enforced by the database (NaN and infinities
    # fail them too): absurd values are refused when saving, naming the field.
    _connect_timeout_range = models.Constraint(
        "CHECK (connect_timeout > 0 AND connect_timeout <= 300)",
        "Connection Timeout must be more than 0 and at most 300 seconds.",
    )
    _read_timeout_range = models.Constraint(
        "CHECK (read_timeout > 0 AND read_timeout <= 3600)",
        "Read Timeout must be more than 0 and at most 3600 seconds.",
    )
    _page_size_range = models.Constraint(
        "CHECK (page_size BETWEEN 1 AND 10000)",
        "Page Size must be between 1 and 10000.",
    )
    _max_retries_range = models.Constraint(
        "CHECK (max_retries BETWEEN 0 AND 10)",
        "Max Retries must be between 0 and 10.",
    )
    _backoff_factor_range = models.Constraint(
        "CHECK (backoff_factor >= 0 AND backoff_factor <= 60)",
        "Backoff Factor must be between 0 and 60 seconds.",
    )
    _max_attempts_range = models.Constraint(
        "CHECK (max_attempts BETWEEN 1 AND 100)",
        "Max Attempts must be between 1 and 100.",
    )
    _max_concurrency_range = models.Constraint(
        "CHECK (max_concurrency BETWEEN 1 AND 16)",
        "Max Concurrency must be between 1 and 16.",
    )
    _rate_limit_per_second_range = models.Constraint(
        "CHECK (rate_limit_per_second >= 0 AND rate_limit_per_second <= 10000)",
        "Rate Limit (requests/s) must be between 0 (no limit) and 10000.",
    )
    _circuit_threshold_range = models.Constraint(
        "CHECK (circuit_threshold BETWEEN 1 AND 100000)",
        "Pause After Failures must be between 1 and 100000.",
    )
    _sync_interval_range = models.Constraint(
        "CHECK (sync_interval_number BETWEEN 0 AND 100000)",
        "Sync Every must be between 0 and 100000.",
    )
    _signing_grace_range = models.Constraint(
        "CHECK (signing_grace_hours BETWEEN 0 AND 8760)",
        "Rotation Grace must be between 0 and 8760 hours (a year).",
    )

    # ------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------

    @api.depends("http_method_ids")
    def _compute_http_method(self):
        for config in self:
            config.http_method = ",".join(config.http_method_ids.mapped("name"))

    @api.depends_context("uid")
    def _compute_can_edit_code(self):
        can = self._user_can_write_code()
        for config in self:
            config.can_edit_code = can

    @api.depends(
        "request_type",
        "model_id",
        "filter_domain",
        "python_script",
        "http_method_ids",
        "body_format",
        "xml_root_tag",
        "is_paginated",
        "line_ids.sequence",
        "line_ids.field_path",
        "line_ids.api_key",
        "line_ids.value_type",
        "line_ids.mapping_config_id",
        "line_ids.python_code",
        "line_ids.direction",
    )
    @api.depends_context("uid", "allowed_company_ids")
    def _compute_sample_payload(self):
        for config in self:
            config.sample_payload = config._get_sample_payload()

    def _compute_log_count(self):
        counts = dict(
            self.env["bj.api.log"]._read_group(
                [("config_id", "in", self.ids)], ["config_id"], ["__count"]
            )
        )
        for config in self:
            config.log_count = counts.get(config, 0)

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains("request_url", "request_type", "is_paginated", "model_id")
    def _check_request_url(self):
        for config in self:
            if not config.request_url:
                if config.request_type == "out":
                    raise ValidationError(
                        self.env._(
                            "Configuration %(name)r: an outbound configuration "
                            "needs a Request URL.",
                            name=config.name,
                        )
                    )
                continue
            error = transport.validate_url(config.request_url)
            if error:
                raise ValidationError(
                    self.env._(
                        "Request URL of %(name)r: %(error)s",
                        name=config.name,
                        error=error,
                    )
                )
            placeholders = transport.url_placeholders(config.request_url)
            if placeholders and config.is_paginated:
                raise ValidationError(
                    self.env._(
                        "Request URL of %(name)r uses placeholders (%(names)s), "
                        "which need one request per record: they cannot be used "
                        "on a paginated configuration.",
                        name=config.name,
                        names=", ".join(placeholders),
                    )
                )
            for path in placeholders:
                self.env["bj.api.sync.config.line"]._resolve_field_path(
                    config.model_name, path
                )

    @api.constrains("http_method_ids", "request_type")
    def _check_http_method(self):
        for config in self.filtered(lambda c: c.request_type == "out"):
            if len(config.http_method_ids) != 1:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: outbound configurations require "
                        "exactly one HTTP method (%(count)s selected).",
                        name=config.name,
                        count=len(config.http_method_ids),
                    )
                )

    @api.constrains("filter_domain", "model_id")
    def _check_filter_domain(self):
        for config in self:
            config._get_records_domain()

    @api.constrains("request_type", "line_ids")
    def _check_identifier_line(self):
        """Configurations that read JSON into records match them by exactly one
        Record Identifier line (SPEC §10)."""
        for config in self.filtered(lambda c: c._reads_inbound()):
            identifiers = config.line_ids.filtered(
                lambda line: line.is_identifier and line.direction != "out"
            )
            if len(identifiers) != 1:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r reads incoming objects into "
                        "records: it needs exactly one inbound mapping line marked "
                        "Record Identifier (found %(count)s).",
                        name=config.name,
                        count=len(identifiers),
                    )
                )
            config.line_ids._check_inbound_field()

    def _reads_inbound(self):
        """Whether incoming JSON is turned into records with the in lines (In
        endpoints)."""
        self.ensure_one()
        return self.request_type == "in"

    @api.constrains("run_as_user_id")
    def _check_run_as_user(self):
        for config in self:
            if config.run_as_user_id.id == SUPERUSER_ID:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: Run As cannot be the superuser "
                        "(OdooBot); choose a user whose access rights apply.",
                        name=config.name,
                    )
                )

    @api.constrains("python_script")
    def _check_python_script(self):
        for config in self.filtered("python_script"):
            self._check_python_source(
                config.python_script,
                self.env._("Python Script of %(name)r", name=config.name),
            )

    @api.constrains("model_id")
    def _check_lines_follow_model(self):
        lines = self.line_ids
        lines._check_field_path()
        lines._check_mapping_config()
        # Configurations that nest this one must still point at its model.
        self.env["bj.api.sync.config.line"].search(
            [("mapping_config_id", "in", self.ids)]
        )._check_mapping_config()

    def _check_mapping_cycle(self):
        """Refuse a chain of Mapping lines that comes back to where it started."""
        for config in self:
            stack = [(config, (config.name,))]
            while stack:
                current, trail = stack.pop()
                for line in current.line_ids.filtered(
                    lambda x: x.value_type == "mapping" and x.mapping_config_id
                ):
                    target = line.mapping_config_id
                    if target == config:
                        raise ValidationError(
                            self.env._(
                                "Mapping cycle: %(chain)s. A configuration cannot "
                                "nest itself.",
                                chain=" → ".join((*trail, target.name)),
                            )
                        )
                    if len(trail) < MAPPING_MAX_DEPTH:
                        stack.append((target, (*trail, target.name)))

    @api.model
    def _check_python_source(self, code, label):
        """Validate admin Python code at save (``sandbox.check_source``).

        :raises ValidationError: with ``label`` and the line at fault
        """
        try:
            sandbox.check_source(code)
        except sandbox.CodeRefused as error:
            raise ValidationError(
                self.env._("%(label)s: %(error)s", label=label, error=error)
            ) from None

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("python_script"):
                self._check_code_author()
            if vals.get("run_as_user_id"):
                self._check_run_as_author(vals["run_as_user_id"])
        self.env.registry.clear_cache()  # the new lines' plans
        return super().create(vals_list)

    def write(self, vals):
        if "python_script" in vals and any(
            (config.python_script or False) != (vals["python_script"] or False)
            for config in self
        ):
            self._check_code_author()
        if vals.get("run_as_user_id") and any(
            config.run_as_user_id.id != vals["run_as_user_id"] for config in self
        ):
            self._check_run_as_author(vals["run_as_user_id"])
        if PLAN_FIELDS & set(vals):
            # Only changes of the lines, URL, model, methods, headers,
            # parameters or endpoint change the cached plans:
            # pausing, probing or a token refresh keep every worker's caches.
            self.env.registry.clear_cache()
        return super().write(vals)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_waiting_deliveries(self):
        waiting = (
            self.env["bj.api.sync.delivery"]
            .sudo()
            ._read_group(
                [
                    ("config_id", "in", self.ids),
                    ("state", "in", OPEN_STATES),
                ],
                ["config_id"],
                ["__count"],
            )
        )
        if waiting:
            raise UserError(
                self.env._(
                    "Configuration %(name)r still has %(count)s deliveries waiting "
                    "to be sent. Archive it instead (its queue is kept), or cancel "
                    "those deliveries first.",
                    name=waiting[0][0].name,
                    count=waiting[0][1],
                )
            )

    def unlink(self):
        self.env.registry.clear_cache()
        return super().unlink()

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        if "name" not in (default or {}):
            for config, vals in zip(self, vals_list, strict=False):
                vals["name"] = self.env._("%s (copy)", config.name)
        return vals_list

    # ------------------------------------------------------------------
    # Who may do what (SPEC §9)
    # ------------------------------------------------------------------

    @api.model
    def _user_can_write_code(self):
        return self.env.su or self.env.user.has_group(CODE_GROUP)

    @api.model
    def _check_code_author(self):
        """Only Settings administrators write Python code (SPEC §9).

        :raises AccessError: for anybody else
        """
        if not self._user_can_write_code():
            raise AccessError(
                self.env._(
                    "Only Settings administrators may write Python code in BJ API "
                    "configurations (Python Script, Python mapping lines), as "
                    "for Odoo's own server actions."
                )
            )

    @api.model
    def _check_run_as_author(self, user_id):
        """Only Settings administrators make a configuration run as somebody
        else: it lends that user's access rights to the configuration."""
        if user_id != self.env.uid and not self._user_can_write_code():
            raise AccessError(
                self.env._(
                    "Only Settings administrators may choose another user than "
                    "themselves in Run As."
                )
            )

    def _check_manager_access(self):
        """Buttons that change or send: BJ API Managers of the configuration's
        company only (``AccessError`` for everybody else), checked before any
        ``sudo()``."""
        self.check_access("write")

    # ------------------------------------------------------------------
    # Sample payload
    # ------------------------------------------------------------------

    def _get_sample_payload(self):
        """The text of the Sample Payload panel: the body the first record
        matching the domain makes, built by the Preview's code path with the
        current user's rights and record rules (never as superuser), secrets
        masked; an explanation instead when there is nothing to show or the
        user may not see it. Python code runs for BJ API Managers only.
        """
        self.ensure_one()
        if not self.id:
            # A form being edited: its lines are not saved yet.
            if self.request_type != "out":
                return False
            return self.env._("Save the configuration to see a sample payload.")
        # Whoever asks (a sudo() caller included) sees what its own user may
        # see; and nothing of a configuration that user may not read.
        config = self.with_env(self.env(su=False))
        if not config.has_access("read"):
            return self.env._("You are not allowed to read this configuration.")
        if config.request_type != "out":
            return False
        if not config.line_ids:
            return self.env._("Add field mappings to see a sample payload.")
        if config._runs_python_code() and not config.env.user.has_group(
            SAMPLE_CODE_GROUP
        ):
            return self.env._(
                "The sample payload is not available: this configuration runs "
                "Python code, which only BJ API Managers may run."
            )
        model = config.env[config.model_name]
        if not model.has_access("read"):
            return self.env._(
                "The sample payload is not available: you are not allowed to "
                "read %(model)s records.",
                model=config.model_name,
            )
        try:
            records = config._get_matching_records(limit=1)
            unit = config._prepare_preview_unit(records)
        except psycopg2.Error:
            raise  # the transaction is gone: not something to show in a panel
        except Exception as error:  # noqa: BLE001 - the form opens all the same
            # A bad domain, a record rule on a related record...: the message
            # the user would get from Odoo opening the same records.
            return self.env._(
                "The sample payload cannot be built: %(error)s", error=error
            )
        if unit is None:
            return self.env._(
                "No %(model)s record you may read matches the filter domain.",
                model=config.model_name,
            )
        if unit.error:
            text = self.env._(
                "The sample payload cannot be built: %(error)s", error=unit.error
            )
        else:
            text = config._preview_body(unit)
        return truncate(redact_text(text, config._get_secrets()), SAMPLE_LIMIT)

    def _runs_python_code(self):
        """Whether building this configuration's payload runs Python code: its
        Python Script, or an outbound Python line of its own or of a
        configuration it nests (Mapping lines)."""
        self.ensure_one()
        if self.sudo().python_script:
            return True
        seen = set()
        todo = [self.sudo()]
        while todo:
            config = todo.pop()
            if config.id in seen:
                continue
            seen.add(config.id)
            for plan in config._get_line_plans():
                if plan.direction not in OUT_DIRECTIONS:
                    continue
                if plan.value_type == "python":
                    return True
                if plan.value_type == "mapping" and plan.mapping_config_id:
                    todo.append(config.browse(plan.mapping_config_id))
        return False

    @tools.ormcache("self.id")
    def _get_line_plans(self):
        """The mapping lines as plain tuples (see ``mapping.LinePlan``), cached
        until the lines change: building a page then reads no configuration row.
        """
        return tuple(
            LinePlan(
                id=line.id,
                api_key=line.api_key,
                value_type=line.value_type,
                field_path=line.field_path or None,
                mapping_config_id=line.mapping_config_id.id or None,
                python_code=line.python_code or None,
                direction=line.direction,
                is_identifier=line.is_identifier,
            )
            for line in self.sudo().line_ids
        )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_send_now(self):
        """Send every record matching the domain now and report the outcome."""
        self.ensure_one()
        self._check_manager_access()
        self._check_sendable()
        records = self._get_matching_records()
        if not records:
            raise UserError(
                self.env._(
                    "No %(model)s record matches the filter domain of %(name)r.",
                    model=self.model_name,
                    name=self.name,
                )
            )
        if self.delivery_mode == "queued":
            return self._action_send_now_queued()
        logs = self._make_outbound_http_request(records)
        failed = logs.filtered(lambda log: log.state == "error")
        message = self.env._(
            "%(count)s request(s) sent for %(records)s record(s): "
            "%(ok)s succeeded, %(ko)s failed.",
            count=len(logs),
            records=len(records),
            ok=len(logs) - len(failed),
            ko=len(failed),
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.name,
                "message": message,
                "type": "warning" if failed else "success",
                "sticky": bool(failed),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_preview_payload(self):
        """Show the first request this configuration would send; nothing is sent."""
        self.ensure_one()
        self._check_manager_access()
        self._check_sendable()
        try:
            if self.import_response:
                # A real GET of the first page; nothing is written.
                values = self._prepare_import_preview_values(self.env)
            else:
                records = self._get_matching_records(limit=self._unit_size())
                values = self._prepare_preview_values(records)
        except SyncError as error:
            raise UserError(
                self.env._(
                    "Configuration %(name)r cannot build its request: %(error)s",
                    name=self.name,
                    error=error,
                )
            ) from None
        preview = self.env["bj.api.sync.preview"].create(values)
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Payload Preview"),
            "res_model": "bj.api.sync.preview",
            "res_id": preview.id,
            "view_mode": "form",
            "target": "new",
        }

    def action_view_logs(self):
        """Open the logs of this configuration."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "bj_api_sync.bj_api_log_action"
        )
        action["domain"] = [("config_id", "=", self.id)]
        action["context"] = {"default_config_id": self.id}
        return action
