import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL
from odoo.tools.constants import GC_UNLINK_LIMIT

from ..tools.redact import BODY_LIMIT, redact_headers, redact_text, redact_url, truncate

_logger = logging.getLogger(__name__)


class BjApiLog(models.Model):
    _name = "bj.api.log"
    _description = "BJ API Log"
    _order = "create_date desc, id desc"
    _rec_name = "request_url"

    config_id = fields.Many2one(
        "bj.api.sync.config", string="Configuration", index=True, ondelete="cascade"
    )
    direction = fields.Selection(
        [("out", "Out"), ("in", "In")],
        required=True,
        default="out",
        index=True,
        help="Out: a request this database sent. In: a request an inbound "
        "endpoint received.",
    )
    import_created = fields.Integer(
        string="Created", help="Import: records this page created."
    )
    import_updated = fields.Integer(
        string="Updated", help="Import: records this page updated."
    )
    import_failed = fields.Integer(
        string="Failed", help="Import: objects of this page not written."
    )
    write_back_error = fields.Text(
        help="Why the response could not be written back into the records sent "
        "(the request itself succeeded)."
    )
    delivery_id = fields.Many2one(
        "bj.api.sync.delivery",
        index="btree_not_null",
        ondelete="set null",
    )
    company_id = fields.Many2one(related="config_id.company_id", store=True)
    res_model = fields.Char(string="Model", index=True)
    res_ids = fields.Char(string="Record IDs")
    request_method = fields.Char(string="Method")
    request_url = fields.Char(string="URL")
    request_headers = fields.Text()
    request_body = fields.Text()
    status_code = fields.Integer(string="Status", index=True)
    response_body = fields.Text()
    duration_ms = fields.Integer(string="Duration (ms)")
    attempts = fields.Integer(
        help="HTTP attempts made for this request, quick retries included."
    )
    state = fields.Selection(
        [("success", "Success"), ("error", "Error")],
        required=True,
        default="success",
        index=True,
    )
    outcome = fields.Selection(
        [
            ("success", "Success"),
            ("retryable", "Retryable failure"),
            ("permanent", "Permanent failure"),
        ],
        help="How the transport classified the exchange.",
    )
    retry_after = fields.Float(help="Seconds the server asked to wait (Retry-After).")
    error_message = fields.Text(string="Error")
    idempotency_key = fields.Char(index=True)
    remote_addr = fields.Char(
        string="Remote Address", help="Address of the caller (inbound requests)."
    )
    ignored_keys = fields.Char(
        help="Keys of the incoming JSON that no mapping line reads: ignored, "
        "never written (inbound requests)."
    )

    @api.model
    def _scrub_values(self, values, secrets=()):
        """Redact secrets and cut large bodies before anything is stored."""
        values = dict(values)
        headers = values.get("request_headers")
        if isinstance(headers, dict):
            # One "name": "value" per line, built with the C encoder (the
            # indenting pure-Python one leaves reference cycles behind).
            values["request_headers"] = (
                "{\n"
                + ",\n".join(
                    f"  {json.dumps(k, ensure_ascii=False)}: "
                    f"{json.dumps(v, ensure_ascii=False)}"
                    for k, v in redact_headers(headers).items()
                )
                + "\n}"
            )
        if values.get("request_url"):
            values["request_url"] = redact_url(values["request_url"])
        for name in (
            "request_url",
            "request_headers",
            "request_body",
            "response_body",
            "error_message",
        ):
            text = values.get(name)
            if not text:
                continue
            text = redact_text(text, list(secrets))
            if name in ("request_body", "response_body"):
                text = truncate(text, BODY_LIMIT)
            values[name] = text
        return values

    @api.model
    def _insert_batch(self, vals_list):
        """Write many log rows with one INSERT; return them.

        Logs are append-only rows that nothing computes from, written by the
        delivery cron at high rate: the generic ``create`` costs more than the
        HTTP exchange it records. Values must already be scrubbed.
        """
        if not vals_list:
            return self.browse()
        # Columns not given get NULL, not the field default.
        vals_list = [{"direction": "out", **vals} for vals in vals_list]
        columns = sorted({key for vals in vals_list for key in vals})
        unknown = [
            c for c in columns if c not in self._fields or not self._fields[c].store
        ]
        if unknown or "company_id" in columns:
            return self.sudo().create(vals_list)
        config_ids = {vals.get("config_id") for vals in vals_list} - {None, False}
        companies = {
            config.id: config.company_id.id or None
            for config in self.env["bj.api.sync.config"].sudo().browse(config_ids)
        }
        now = self.env.cr.now()
        uid = self.env.uid
        audit = ["company_id", "create_uid", "create_date", "write_uid", "write_date"]
        fields_ = [self._fields[c] for c in columns]
        # One tuple parameter per row: psycopg2 renders it as (v1, v2, ...).
        rows = [
            (
                *(f.convert_to_column_insert(vals.get(f.name), self) for f in fields_),
                companies.get(vals.get("config_id")),
                uid,
                now,
                uid,
                now,
            )
            for vals in vals_list
        ]
        ids = self.env.execute_query(
            SQL(
                "INSERT INTO bj_api_log (%s) VALUES %s RETURNING id",
                SQL(", ").join(SQL.identifier(c) for c in columns + audit),
                SQL(", ".join(["%s"] * len(rows)), *rows),
            )
        )
        return self.browse([row[0] for row in ids])

    @api.model
    def _retention_limits(self):
        """``{"success": datetime or None, "error": datetime or None}``: rows
        older than these go (``bj_api_sync.log_retention_days``, default 30,
        and ``bj_api_sync.error_log_retention_days``, default 90; 0 keeps)."""
        params = self.env["ir.config_parameter"].sudo()
        now = fields.Datetime.now()
        limits = {}
        for state, key, default in (
            ("success", "bj_api_sync.log_retention_days", 30),
            ("error", "bj_api_sync.error_log_retention_days", 90),
        ):
            try:
                days = int(params.get_param(key, default))
            except ValueError:
                _logger.warning("bj_api_sync: %s is not a number of days", key)
                days = default
            limits[state] = now - timedelta(days=days) if days > 0 else None
        return limits

    @api.model
    def _gc_batch(self, model, domains):
        """Delete one batch (``GC_UNLINK_LIMIT``) of the rows of ``model``
        matching any of ``domains``; return ``(done, remaining)`` as core's
        autovacuum methods do (it calls again while something remains)."""
        domain = Domain.OR(domains) if domains else Domain.FALSE
        rows = self.env[model].sudo().search(domain, limit=GC_UNLINK_LIMIT)
        rows.unlink()
        return len(rows), len(rows) == GC_UNLINK_LIMIT

    @api.autovacuum
    def _gc_logs(self):
        """Delete old logs, by batches: success rows after the log retention,
        error rows after the error log retention."""
        domains = [
            Domain("state", "=", state) & Domain("create_date", "<", limit)
            for state, limit in self._retention_limits().items()
            if limit
        ]
        return self._gc_batch("bj.api.log", domains)
