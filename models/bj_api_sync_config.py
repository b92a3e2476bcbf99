import ast
import base64
import functools
import json
import logging
import math
import typing
import uuid
from datetime import date, datetime, timedelta

import psycopg2
from dateutil.relativedelta import relativedelta

from odoo import SUPERUSER_ID, api, fields, models, release, tools
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.fields import Domain
from odoo.modules.module import get_manifest
from odoo.tools import safe_eval as safe_eval_module
from odoo.tools.safe_eval import safe_eval, wrap_module

from ..exceptions import SyncError
from ..tools import jsonenc, sandbox, transport
from ..tools.redact import redact_headers, redact_text, redact_url

_logger = logging.getLogger(__name__)

MAPPING_MAX_DEPTH = 8
#: Only members of this group write Python code (lines and scripts), as Odoo
#: lets only them write server-action code (SPEC §9).
CODE_GROUP = "base.group_system"
#: Events fired by automation rules and scheduled syncs: their payloads are
#: built with the rights of the configuration's Run As user when it has one.
UNATTENDED_EVENTS = ("create", "write", "create_or_write", "unlink", "cron")
#: Sane bounds of numeric settings, refused at save outside them (SPEC §9).
#: ``{field: (low, high)}``; timeouts must be strictly above their low bound.
LIMITS = {
    "connect_timeout": (0.0, 300.0),
    "read_timeout": (0.0, 3600.0),
    "page_size": (1, 10000),
    "max_retries": (0, 10),
    "backoff_factor": (0.0, 60.0),
}
EXCLUSIVE_LOW = frozenset({"connect_timeout", "read_timeout"})
#: Records whose objects are built together when each is sent on its own.
BUILD_CHUNK = 100

# Names a script has no business calling; safe_eval would only fail on them at
# run time, so they are refused at save with a clearer message.
FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "memoryview",
        "type",
        "object",
        "super",
    }
)

_SANDBOX_MODULES = {
    "datetime": safe_eval_module.datetime,
    "time": safe_eval_module.time,
    "json": safe_eval_module.json,
    "math": wrap_module(math, [n for n in dir(math) if not n.startswith("_")]),
    "dateutil": safe_eval_module.dateutil,
    "dateutil.relativedelta": safe_eval_module.dateutil.relativedelta,
    "dateutil.parser": safe_eval_module.dateutil.parser,
    "dateutil.tz": safe_eval_module.dateutil.tz,
    "dateutil.rrule": safe_eval_module.dateutil.rrule,
}


def _sandbox_import(name):
    """Loader used by rewritten ``import`` lines (see tools/sandbox.py)."""
    try:
        return _SANDBOX_MODULES[name]
    except KeyError:
        raise ImportError(f"import of {name!r} is not allowed") from None


@functools.cache
def _module_version():
    """The addon's version from its manifest, for the User-Agent header."""
    manifest = get_manifest("bj_api_sync") or {}
    return manifest.get("version") or release.major_version


@functools.lru_cache(maxsize=512)
def _compile_sandboxed(code):
    """Rewrite allowed imports, compile and validate admin code like safe_eval."""
    source = sandbox.rewrite_imports(code)
    code_obj = safe_eval_module.compile_codeobj(source, mode="exec")
    safe_eval_module.assert_valid_codeobj(
        safe_eval_module._SAFE_OPCODES, code_obj, source
    )
    return code_obj, source


def _as_text(value):
    if value is False or value is None or value == "":
        return None
    return str(value)


def _as_binary(value):
    if not value:
        return None
    return value.decode() if isinstance(value, bytes) else value


_PLAIN_CONVERTERS = {
    "many2one": lambda value: value.id or None,
    "one2many": lambda value: list(value.ids),
    "many2many": lambda value: list(value.ids),
    "boolean": bool,
    "integer": lambda value: value or 0,
    "float": lambda value: value or 0,
    "monetary": lambda value: value or 0,
    "datetime": lambda value: jsonenc.format_datetime(value) if value else None,
    "date": lambda value: value.isoformat() if value else None,
    "binary": _as_binary,
    "json": lambda value: None if value is False else value,
    "properties": lambda value: None if value is False else value,
    "many2one_reference": lambda value: value or None,
    "reference": lambda value: f"{value._name},{value.id}" if value else None,
}


def _plain_converter(field_type):
    """The function giving the JSON form of a value of this field type (SPEC §3):
    char, text, html, selection and any other type are text, empty → null."""
    return _PLAIN_CONVERTERS.get(field_type, _as_text)


class LinePlan(typing.NamedTuple):
    """What payload building needs of one mapping line (cached, ORM-free)."""

    api_key: str
    value_type: str
    field_path: str | None
    mapping_config_id: int | None
    python_code: str | None


class PayloadError(Exception):
    """Building the payload of one record or page failed."""


class BjApiSyncConfig(models.Model):
    _name = "bj.api.sync.config"
    _description = "BJ API Configuration"
    _inherit = ["mail.thread"]
    _order = "sequence, name, id"

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one("res.company", index=True)
    request_type = fields.Selection(
        [("in", "In"), ("out", "Out")],
        required=True,
        default="out",
        help="Out sends Odoo records to an external API. In is reserved for "
        "inbound endpoints.",
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
    auth_type = fields.Selection(
        [("none", "None"), ("basic", "Basic Auth"), ("bearer", "Bearer Token")],
        string="Authorization Type",
        required=True,
        default="none",
        tracking=True,
    )
    auth_login = fields.Char(string="Login")
    auth_password = fields.Char(
        string="Password", groups="bj_api_sync.group_bj_api_manager", copy=False
    )
    bearer_token = fields.Char(groups="bj_api_sync.group_bj_api_manager", copy=False)
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
        "rights of the user who presses them.",
    )
    can_edit_code = fields.Boolean(
        compute="_compute_can_edit_code",
        help="Whether the current user may write Python code (Settings admins).",
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

    @api.constrains(*LIMITS)
    def _check_limits(self):
        for config in self:
            config._check_bounds(LIMITS)

    def _check_bounds(self, limits):
        """Refuse NaN, infinities and values out of ``limits`` (``{field: (low,
        high)}``, low excluded for the fields of ``EXCLUSIVE_LOW``), naming the
        field."""
        self.ensure_one()
        for name, (low, high) in limits.items():
            value = self[name]
            field = self._fields[name]
            exclusive = name in EXCLUSIVE_LOW
            bad = not math.isfinite(value) or value > high
            bad = bad or (value <= low if exclusive else value < low)
            if bad:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: %(field)s must be %(rule)s "
                        "(got %(value)s).",
                        name=self.name,
                        field=field._description_string(self.env),
                        rule=(
                            self.env._(
                                "more than %(low)s and at most %(high)s",
                                low=low,
                                high=high,
                            )
                            if exclusive
                            else self.env._(
                                "between %(low)s and %(high)s", low=low, high=high
                            )
                        ),
                        value=value,
                    )
                )

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

    @api.constrains("auth_login", "auth_password", "bearer_token")
    def _check_auth_values(self):
        self._check_header_safe_values(["auth_login", "auth_password", "bearer_token"])

    def _check_header_safe_values(self, names):
        """Values that travel in headers: no CR/LF, nothing outside Latin-1
        (refused at save, naming the field, instead of failing at send)."""
        for config in self.sudo():
            for name in names:
                problem = config[name] and transport.invalid_value_reason(config[name])
                if problem:
                    raise ValidationError(
                        self.env._(
                            "Configuration %(name)r: %(field)s %(problem)s.",
                            name=config.name,
                            field=self._fields[name]._description_string(self.env),
                            problem=problem,
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
        """Validate admin Python code at save: syntax, imports, forbidden names.

        :raises ValidationError: with ``label`` and the line at fault
        """
        try:
            sandbox.check_size(code)
        except ValueError as error:
            raise ValidationError(
                self.env._("%(label)s: %(error)s", label=label, error=error)
            ) from None
        try:
            ast.parse(code, mode="exec")
            rewritten = sandbox.rewrite_imports(code)
        except SyntaxError as error:
            raise ValidationError(
                self.env._(
                    "%(label)s: syntax error at line %(line)s: %(msg)s",
                    label=label,
                    line=error.lineno,
                    msg=error.msg,
                )
            ) from None
        except sandbox.ImportRefused as error:
            raise ValidationError(
                self.env._("%(label)s: %(error)s", label=label, error=error)
            ) from None
        tree = ast.parse(rewritten, mode="exec")
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
                name = node.id
            elif isinstance(node, (ast.Name, ast.Attribute)):
                ident = node.id if isinstance(node, ast.Name) else node.attr
                if "__" in ident:
                    name = ident
            if name:
                raise ValidationError(
                    self.env._(
                        "%(label)s: line %(line)s uses %(name)r, which is not "
                        "allowed in sandboxed code.",
                        label=label,
                        line=node.lineno,
                        name=name,
                    )
                )
        try:
            code_obj = safe_eval_module.compile_codeobj(rewritten, mode="exec")
            safe_eval_module.assert_valid_codeobj(
                safe_eval_module._SAFE_OPCODES, code_obj, rewritten
            )
        except (SyntaxError, TypeError, ValueError, NameError) as error:
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
        self.env.registry.clear_cache()
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
                    ("state", "in", ("pending", "retrying")),
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

    def copy_data(self, default=None):
        vals_list = super().copy_data(default=default)
        if "name" not in (default or {}):
            for config, vals in zip(self, vals_list, strict=False):
                vals["name"] = self.env._("%s (copy)", config.name)
        return vals_list

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
        records = self._get_matching_records(limit=self._unit_size())
        try:
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

    # ------------------------------------------------------------------
    # Record selection
    # ------------------------------------------------------------------

    def _get_domain_eval_context(self):
        """Names a filter domain may use: values only. No record (such as
        ``user``) is offered, whose methods a domain could call: BJ API Managers
        who are not Settings admins write domains (SPEC §9)."""
        return {
            "datetime": datetime,
            "date": date,
            "timedelta": timedelta,
            "relativedelta": relativedelta,
            "time": safe_eval_module.time,
            "context_today": lambda: fields.Date.context_today(self),
            "uid": self.env.uid,
        }

    def _get_records_domain(self):
        """Return the evaluated and validated filter domain as a ``Domain``.

        :raises ValidationError: naming the configuration when the domain does not
            parse or names an unknown field
        """
        self.ensure_one()
        text = (self.filter_domain or "").strip() or "[]"
        try:
            value = safe_eval(text, self._get_domain_eval_context())
            domain = Domain(value)
            if self.model_name:
                domain.validate(self.env[self.model_name])
        except Exception as error:  # noqa: BLE001 - any failure is a bad domain
            raise ValidationError(
                self.env._(
                    "Filter Domain of %(name)r is not valid: %(error)s",
                    name=self.name,
                    error=error,
                )
            ) from None
        return domain

    def _get_matching_records(self, limit=None):
        """Return the records of the configuration's model matching its domain."""
        self.ensure_one()
        return self.env[self.model_name].search(self._get_records_domain(), limit=limit)

    def _filter_records(self, records):
        """Keep the given records that match the domain, in their original order."""
        domain = self._get_records_domain()
        if domain.is_true():
            return records
        matching = set(
            records.with_context(active_test=False)
            .search(Domain("id", "in", records.ids) & domain)
            .ids
        )
        return records.filtered(lambda r: r.id in matching)

    def _records_for_build(self, records, event):
        """``records`` in the environment whose rights read them and run the
        mapping code (SPEC §9), after checking that it may read them.

        Automation rules and scheduled syncs use the configuration's Run As user
        when set; everything else uses the caller. Never the superuser flag: a
        caller in ``sudo()`` (automation rules run their actions so) is brought
        back to its own user's rights.

        :raises AccessError: when that user may not read every record
        """
        self.ensure_one()
        run_as = self.sudo().run_as_user_id
        if run_as and event in UNATTENDED_EVENTS:
            env = records.env(user=run_as.id, su=False)
        else:
            env = records.env(su=False)
        records = records.with_env(env)
        if records:
            records.check_access("read")
        return records

    def _unit_size(self):
        return self.page_size if self.is_paginated else 1

    def _iter_pages(self, records, size=None):
        """Yield the records in chunks with their own prefetch set (request-sized
        pages by default): each field is then read once per chunk."""
        size = size or self._unit_size()
        for start in range(0, len(records), size):
            page = records[start : start + size]
            yield page.with_prefetch(page._ids)

    # ------------------------------------------------------------------
    # Payload building
    # ------------------------------------------------------------------

    @api.model
    def _convert_plain(self, field, value):
        """Turn one ORM value into its JSON form (SPEC §3 'plain')."""
        return _plain_converter(field.type)(value)

    def _walk_path(self, record, chain):
        """Follow all relational segments but the last; return (target, multi)."""
        current, multi = record, False
        for field in chain[:-1]:
            if field.type in ("one2many", "many2many"):
                multi = True
            current = current.mapped(field.name) if multi else current[field.name]
        return current, multi

    def _line_values(self, line, records, depth):
        """Values of one mapping line for every record, aligned with ``records``.

        A record whose value cannot be computed gets a ``PayloadError`` instead.
        """
        values = []
        if line.value_type == "python":
            plain = (
                self._path_values(line, records, "plain", depth)
                if line.field_path
                else [None] * len(records)
            )
            model = records.browse()
            for record, value in zip(records, plain, strict=True):
                context = self._get_script_eval_context(model, record)
                context.update(record=record, value=value)
                try:
                    values.append(self._run_script(line.python_code, context))
                except Exception as error:  # noqa: BLE001
                    values.append(
                        PayloadError(
                            self.env._(
                                "Python code of mapping line %(key)r failed: %(error)s",
                                key=line.api_key,
                                error=error,
                            )
                        )
                    )
            return values
        return self._path_values(line, records, line.value_type, depth)

    def _path_values(self, line, records, value_type, depth):
        chain = self.env["bj.api.sync.config.line"]._resolve_field_path(
            self.model_name, line.field_path
        )
        leaf = chain[-1]
        get = leaf.__get__
        recs = list(records)
        if leaf.type not in ("many2one", "one2many", "many2many"):
            convert = _plain_converter(leaf.type)
            if len(chain) == 1:  # the common case, kept tight
                return [convert(get(rec)) for rec in recs]
            result = []
            for current, multi in (self._walk_path(rec, chain) for rec in recs):
                if multi:
                    result.append([convert(get(rec)) for rec in current])
                else:
                    result.append(convert(get(current)) if current else None)
            return result
        related_list = []
        for rec in recs:
            current, multi = (
                (rec, False) if len(chain) == 1 else self._walk_path(rec, chain)
            )
            if not multi and len(current) == 1:
                related = get(current)
            else:
                related = current.mapped(leaf.name)
            related_list.append((related, leaf.type == "many2one" and not multi))
        if value_type == "plain":
            return [
                (related.id or None) if single else list(related.ids)
                for related, single in related_list
            ]
        if value_type == "relational":
            return [
                (related.display_name or None)
                if single
                else related.mapped("display_name")
                for related, single in related_list
            ]
        # mapping: build every nested object in one batch, then distribute.
        mapping = self.browse(line.mapping_config_id)
        if depth >= MAPPING_MAX_DEPTH:
            error = PayloadError(
                self.env._("Mapping nested deeper than %s levels.", MAPPING_MAX_DEPTH)
            )
            return [error] * len(records)
        union_ids = list(
            dict.fromkeys(i for related, _single in related_list for i in related._ids)
        )
        union = records.env[leaf.comodel_name].browse(union_ids)
        union = union.with_prefetch(union_ids)
        objects, errors = mapping._build_objects(union, depth + 1)
        by_id = {}
        for rec, obj, err in zip(union, objects, errors, strict=True):
            by_id[rec.id] = err or obj
        result = []
        for related, single in related_list:
            items = [by_id[rec.id] for rec in related]
            failed = next((i for i in items if isinstance(i, PayloadError)), None)
            if failed:
                result.append(failed)
            elif single:
                result.append(items[0] if items else None)
            else:
                result.append(items)
        return result

    def _build_objects(self, records, depth=0):
        """Build one JSON object per record from the mapping lines.

        Values are computed line by line over the whole batch so that the ORM
        prefetches each field once for all records.

        :return: ``(objects, errors)`` lists aligned with ``records``; ``errors``
            holds a ``PayloadError`` for the records that failed, else ``None``
        """
        self.ensure_one()
        objects = [{} for _record in records]
        errors = [None] * len(records)
        self._prefetch_paths(records)
        for line in self._get_payload_plan():
            values = self._line_values(line, records, depth)
            key = line.api_key
            simple = "." not in key
            for index, value in enumerate(values):
                if errors[index]:
                    continue
                if isinstance(value, PayloadError):
                    errors[index] = value
                elif simple:
                    objects[index][key] = value
                else:
                    try:
                        jsonenc.set_nested(objects[index], key, value)
                    except ValueError as error:
                        errors[index] = PayloadError(str(error))
        return objects, errors

    def _build_objects_isolated(self, records):
        """:meth:`_build_objects`, but a failure that escapes it (an access
        error on a related record, say) only fails the records it concerns:
        the chunk is built again record by record."""
        try:
            return self._build_objects(records)
        except psycopg2.Error:
            raise
        except Exception as error:  # noqa: BLE001 - becomes the records' error
            if len(records) == 1:
                return [None], [PayloadError(str(error))]
        objects, errors = [], []
        for record in records:
            obj, err = self._build_objects_isolated(record)
            objects += obj
            errors += err
        return objects, errors

    @tools.ormcache("self.id")
    def _get_payload_plan(self):
        """The mapping lines as plain tuples, cached until a configuration or
        line changes: building a page then reads no configuration row."""
        return tuple(
            LinePlan(
                api_key=line.api_key,
                value_type=line.value_type,
                field_path=line.field_path or None,
                mapping_config_id=line.mapping_config_id.id or None,
                python_code=line.python_code or None,
            )
            for line in self.sudo().line_ids
        )

    @tools.ormcache("self.id")
    def _get_placeholder_paths(self):
        return tuple(transport.url_placeholders(self.sudo().request_url or ""))

    def _prefetch_paths(self, records):
        """Read every field the lines walk through, level by level, in bulk.

        Accessing fields record by record would also work thanks to prefetching,
        but one ``fetch`` per model and level reads exactly the needed columns
        (like ``read()`` would) instead of every prefetchable field, field by field.
        """
        tree = {}
        line_model = self.env["bj.api.sync.config.line"]
        paths = [
            line.field_path for line in self._get_payload_plan() if line.field_path
        ]
        paths += self._get_placeholder_paths()
        for path in paths:
            node = tree
            for field in line_model._resolve_field_path(self.model_name, path):
                node = node.setdefault(field.name, {})
        self._prefetch_tree(records, tree)

    @api.model
    def _prefetch_tree(self, records, tree):
        if not records or not tree:
            return
        names = [name for name in tree if records._fields[name].store]
        if "active" in records._fields:
            names.append("active")  # x2many values are filtered on it
        records.fetch(names)
        for name, subtree in tree.items():
            if subtree and records._fields[name].relational:
                targets = records.mapped(name)
                self._prefetch_tree(targets.with_prefetch(targets._ids), subtree)

    def _get_script_eval_context(self, model, records):
        """Names given to mapping code and scripts. ``env`` is the environment of
        the records: the rights of the user the payload is built for, never
        more (SPEC §9)."""
        env = model.env
        return {
            "env": env,
            "model": model,
            "records": records,
            "datetime": datetime,
            "date": date,
            "timedelta": timedelta,
            "relativedelta": relativedelta,
            "json": safe_eval_module.json,
            "time": safe_eval_module.time,
            "uid": env.uid,
            "user": env.user,
            sandbox.LOADER_NAME: _sandbox_import,
        }

    @api.model
    def _run_script(self, code, context):
        """Run admin code in the sandbox and return what it put in ``result``.

        The code is rewritten (allowed imports), compiled and validated by
        ``safe_eval``'s own checks once per distinct source, then run with
        ``safe_eval``'s restricted builtins — exactly what ``safe_eval`` does,
        without compiling and disassembling it again for every record.
        """
        code_obj, source = _compile_sandboxed(code)
        globals_dict = dict(context, __builtins__=dict(safe_eval_module._BUILTINS))
        try:
            exec(code_obj, globals_dict)  # noqa: S102 - validated by safe_eval checks
        except safe_eval_module._BUBBLEUP_EXCEPTIONS:
            raise
        except Exception as error:  # noqa: BLE001 - same wrapping as safe_eval
            raise ValueError(f"{error!r} while evaluating\n{source!r}") from error
        finally:
            del globals_dict["__builtins__"]
            context.update(globals_dict)
        return context.get("result")

    def _prepare_units(self, records):
        """Yield one dict per request to send: records, body or error, URL.

        Not paginated: one unit per record, body = its object. Paginated: one
        unit per page, body = the array of the page's objects; records whose
        object failed get a unit of their own carrying the error.
        """
        self.ensure_one()
        model = records.browse()
        placeholders = transport.url_placeholders(self.request_url or "")
        # One request per record still builds the objects by chunks, so that the
        # ORM reads each field once per chunk, not once per record.
        size = None if self.is_paginated else BUILD_CHUNK
        for page in self._iter_pages(records, size):
            objects, errors = self._build_objects_isolated(page)
            if self.is_paginated:
                good = page.browse(
                    [r.id for r, err in zip(page, errors, strict=True) if not err]
                )
                for record, error in zip(page, errors, strict=True):
                    if error:
                        yield {"records": record, "error": str(error)}
                if good:
                    body = [
                        o for o, err in zip(objects, errors, strict=True) if not err
                    ]
                    yield self._finish_unit(model, good, body, self.request_url)
                continue
            for record, obj, error in zip(page, objects, errors, strict=True):
                if error:
                    yield {"records": record, "error": str(error)}
                    continue
                url = self.request_url
                if placeholders:
                    url = transport.render_url(
                        url, self._placeholder_values(record, placeholders)
                    )
                yield self._finish_unit(model, record, obj, url)

    def _placeholder_values(self, record, placeholders):
        values = {}
        line_model = self.env["bj.api.sync.config.line"]
        for path in placeholders:
            chain = line_model._resolve_field_path(self.model_name, path)
            current, multi = self._walk_path(record, chain)
            leaf = chain[-1]
            if multi:
                values[path] = ",".join(
                    str(self._convert_plain(leaf, rec[leaf.name])) for rec in current
                )
            else:
                values[path] = (
                    self._convert_plain(leaf, current[leaf.name]) if current else None
                )
        return values

    def _finish_unit(self, model, records, body, url):
        """The unit of one request: the script applied, the body encoded once
        (a body JSON cannot carry, NaN or a non-text key, is this unit's error
        rather than anybody's failed transaction)."""
        unit = {"records": records, "body": body, "url": url}
        if self.python_script:
            context = self._get_script_eval_context(model, records)
            context["request_data"] = body
            try:
                self._run_script(self.python_script, context)
            except Exception as error:  # noqa: BLE001
                unit["error"] = self.env._("Python Script failed: %s", error)
                return unit
            if "result" in context and context["result"] is not None:
                unit["body"] = context["result"]
        try:
            unit["body_text"] = jsonenc.dumps(unit["body"])
        except (ValueError, TypeError, RecursionError) as error:
            unit["error"] = self.env._("The payload cannot be sent as JSON: %s", error)
        return unit

    # ------------------------------------------------------------------
    # Request building
    # ------------------------------------------------------------------

    def _get_auth_headers_none(self):
        return {}

    def _get_auth_headers_basic(self):
        login = self.auth_login or ""
        password = self.sudo().auth_password or ""
        token = base64.b64encode(f"{login}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def _get_auth_headers_bearer(self):
        return {"Authorization": f"Bearer {self.sudo().bearer_token or ''}"}

    def _prepare_headers(self, idempotency_key):
        """Default headers, then custom headers (override), then authentication."""
        self.ensure_one()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"bj_api_sync/{self._module_version()}",
            "Idempotency-Key": idempotency_key,
        }
        lower = {k.lower(): k for k in headers}
        for header in self.sudo().header_ids:
            existing = lower.pop(header.key.strip().lower(), None)
            if existing:
                headers.pop(existing)
            headers[header.key.strip()] = header.value or ""
            lower[header.key.strip().lower()] = header.key.strip()
        auth = getattr(self, f"_get_auth_headers_{self.auth_type}")()
        for key, value in auth.items():
            existing = lower.pop(key.lower(), None)
            if existing:
                headers.pop(existing)
            headers[key] = value
        return headers

    @api.model
    def _module_version(self):
        return _module_version()

    def _get_secrets(self):
        """Secret values of this configuration, to scrub from anything stored."""
        self.ensure_one()
        config = self.sudo()
        secrets = [config.auth_password, config.bearer_token]
        if config.auth_password:
            login = config.auth_login or ""
            secrets.append(
                base64.b64encode(f"{login}:{config.auth_password}".encode()).decode()
            )
        secrets += [h.value for h in config.header_ids if h.is_secret]
        secrets += [p.value for p in config.param_ids if p.is_secret]
        return [s for s in secrets if s]

    def _prepare_request(self, unit, timeout=None):
        """Turn a unit into a transport request (plain data)."""
        self.ensure_one()
        method = self.http_method_ids.name
        key = unit.get("idempotency_key") or str(uuid.uuid4())
        unit["idempotency_key"] = key
        params = [(p.key, p.value or "") for p in self.sudo().param_ids]
        body = None
        if method == "GET":
            data = unit.get("body")
            if data is None and unit.get("body_text"):
                data = json.loads(unit["body_text"])
            if not self.is_paginated and isinstance(data, dict):
                for name, value in data.items():
                    if isinstance(value, bool):
                        params.append((name, "true" if value else "false"))
                    elif isinstance(value, (str, int, float)):
                        params.append((name, str(value)))
        elif unit.get("body_text"):
            body = unit["body_text"].encode()
        else:
            body = jsonenc.encode(unit["body"])
        return transport.OutboundRequest(
            method=method,
            url=unit["url"],
            headers=self._prepare_headers(key),
            body=body,
            params=params or None,
            connect_timeout=self.connect_timeout,
            read_timeout=timeout or self.read_timeout,
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
        )

    def _session_key(self):
        # Sessions carry no configuration (headers, timeouts and retries are set
        # per call), so one per configuration and thread is enough.
        return (self.env.cr.dbname, self.id)

    def _concurrency_limit(self):
        """Requests of this configuration that may be in flight at once."""
        return 1

    def _get_session(self):
        return transport.DEFAULT_POOL.get(self._session_key())

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _check_sendable(self, records=None):
        """Raise a UserError naming what keeps this configuration from sending."""
        self.ensure_one()
        problems = []
        if self.request_type != "out":
            problems.append(self.env._("it is not an outbound (Out) configuration"))
        if not self.request_url:
            problems.append(self.env._("it has no Request URL"))
        if len(self.http_method_ids) != 1:
            problems.append(self.env._("it needs exactly one HTTP method"))
        if not self.line_ids:
            problems.append(self.env._("it has no field mappings"))
        if records is not None and records._name != self.model_name:
            problems.append(
                self.env._(
                    "it maps %(model)s records, not %(given)s",
                    model=self.model_name,
                    given=records._name,
                )
            )
        if problems:
            raise UserError(
                self.env._(
                    "Configuration %(name)r cannot send: %(problems)s.",
                    name=self.name,
                    problems="; ".join(problems),
                )
            )

    def _make_outbound_http_request(self, records, config_id=None, timeout=None):
        """Send ``records`` now, synchronously; return the ``bj.api.log`` rows.

        Keeps only the records matching the filter domain, sends one request per
        record (or per page when paginated) and logs each one. HTTP errors,
        timeouts and refused connections are logged, never raised.

        :param records: record or recordset of the configuration's model
        :param config_id: configuration id (or record) to use instead of ``self``
        :param timeout: read timeout (s) for this call, overriding the config's
        :raises UserError: when the configuration cannot send at all
        """
        config = self
        if config_id:
            config = (
                config_id
                if isinstance(config_id, models.BaseModel)
                else self.browse(config_id)
            )
        config.ensure_one()
        config._check_sendable(records)
        records = config._records_for_build(records, "manual")
        config = config.sudo()
        records = config._filter_records(records)
        log_vals = []
        for unit in config._prepare_units(records):
            log_vals.append(config._send_unit(unit, timeout=timeout))
        return self.env["bj.api.log"].sudo().create(log_vals).sudo(False)

    def _send_unit(self, unit, timeout=None):
        """Send one unit (or record its build error); return log values."""
        self.ensure_one()
        if not unit.get("error"):
            try:
                request = self._prepare_request(unit, timeout=timeout)
            except SyncError as error:
                unit["error"] = str(error)
        if unit.get("error"):
            return self._prepare_log_values(unit, None, None)
        [result] = self._send_prepared([(self, unit, request)])
        return self._prepare_log_values(unit, request, result)

    @api.model
    def _send_prepared(self, jobs):
        """Send prepared requests (concurrently when several); return results.

        :param jobs: list of ``(config, unit, request)``
        :return: one result per job, ``None`` for a request left unsent after a
            retryable failure of the same configuration (see ``send_many``)
        """
        results = transport.send_many(
            [(request, config._session_key()) for config, _unit, request in jobs],
            limits={
                config._session_key(): config._concurrency_limit()
                for config, _unit, _request in jobs
            },
        )
        results = self._after_send(jobs, results)
        for (config, _unit, request), result in zip(jobs, results, strict=True):
            if result and result.outcome != "success":
                _logger.info(
                    "bj_api_sync: %s %s for config %s: %s",
                    request.method,
                    redact_url(result.url or request.url),
                    config.id,
                    result.error,
                )
        return results

    @api.model
    def _after_send(self, jobs, results):
        """Hook to react to results (e.g. renew a token on 401 and send again)."""
        return results

    def _prepare_log_values(self, unit, request, result, secrets=None):
        """Values of the ``bj.api.log`` row for one request, secrets removed.

        :param secrets: this configuration's secrets when the caller has them
        """
        self.ensure_one()
        records = unit["records"]
        if secrets is None:
            secrets = self._get_secrets()
        values = {
            "config_id": self.id,
            "res_model": records._name,
            "res_ids": ",".join(str(i) for i in records.ids),
            "request_method": self.http_method_ids[:1].name,
            "request_url": unit.get("url") or self.request_url,
        }
        if request is None:
            values.update(
                state="error",
                error_message=unit.get("error"),
                attempts=0,
            )
            return self.env["bj.api.log"]._scrub_values(values, secrets)
        values.update(
            request_url=result.url or request.url,
            request_headers=request.headers,
            request_body=request.body.decode() if request.body else False,
            status_code=result.status_code or 0,
            response_body=result.response_text,
            duration_ms=result.elapsed_ms,
            attempts=result.attempts,
            state="success" if result.outcome == "success" else "error",
            error_message=result.error if result.outcome != "success" else False,
            idempotency_key=unit["idempotency_key"],
            outcome=result.outcome,
            retry_after=result.retry_after or 0.0,
        )
        return self.env["bj.api.log"]._scrub_values(values, secrets)

    def _redacted_headers(self, headers):
        return redact_text(
            jsonenc.dumps_pretty(redact_headers(headers)), self._get_secrets()
        )

    def _prepare_preview_values(self, records):
        """What the first request would look like, secrets masked; nothing sent."""
        units = list(self._prepare_units(records)) if records else []
        values = {"config_id": self.id, "record_count": len(records)}
        if not units:
            values["error_message"] = self.env._(
                "No %(model)s record matches the filter domain.", model=self.model_name
            )
            return values
        unit = units[0]
        if unit.get("error"):
            values["error_message"] = unit["error"]
            return values
        request = self._prepare_request(unit)
        secrets = self._get_secrets()
        url = transport.build_url(request.url, request.params)
        values.update(
            request_method=request.method,
            request_url=redact_text(redact_url(url), secrets),
            request_headers=self._redacted_headers(request.headers),
            request_body=redact_text(jsonenc.dumps_pretty(unit["body"]), secrets)
            if request.body is not None
            else False,
        )
        return values
