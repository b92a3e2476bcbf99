import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL, sql
from odoo.tools.constants import GC_UNLINK_LIMIT

from ..tools.redact import BODY_LIMIT, redact_headers, redact_text, redact_url, truncate

_logger = logging.getLogger(__name__)


class BjApiLog(models.Model):
    _name = "bj.api.log"
    _description = "BJ API Log"
    _order = "create_date desc, id desc"

    name = fields.Char(
        string="Summary",
        compute="_compute_name",
        store=True,
        readonly=False,
        help="One line about the exchange: method and URL unless given at "
        "creation (BJET's scripts log their own 'Synced X' rows).",
    )
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
    # Averaged, not summed, when logs are grouped (list groups, pivot).
    duration_ms = fields.Integer(string="Duration (ms)", aggregator="avg")
    attempts = fields.Integer(
        help="HTTP attempts made for this request, quick retries included."
    )
    state = fields.Selection(
        [("success", "Success"), ("error", "Error"), ("skipped", "Skipped")],
        required=True,
        default="success",
        index=True,
        help="Skipped: nothing was sent (rows written by scripts, as BJET's).",
    )
    status = fields.Selection(
        related="state",
        string="Status (BJET)",
        readonly=False,
        help="The state under the name BJET's scripts use (SPEC §13).",
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

    @api.depends("request_method", "request_url")
    def _compute_name(self):
        for log in self:
            log.name = self._summary(log.request_method, log.request_url)

    @staticmethod
    def _summary(method, url):
        """The default summary line: ``"POST https://…"`` (False when empty)."""
        return " ".join(part for part in (method, url) if part) or False

    def _auto_init(self):
        # Fill the summary of existing rows in SQL: computing it row by row in
        # Python would hold up the update of a database with a large log table.
        cr = self.env.cr
        if sql.table_exists(cr, self._table) and not sql.column_exists(
            cr, self._table, "name"
        ):
            sql.create_column(cr, self._table, "name", "varchar")
            cr.execute(
                SQL(
                    "UPDATE %s SET name = NULLIF(concat_ws(' ', "
                    "NULLIF(request_method, ''), NULLIF(request_url, '')), '')",
                    SQL.identifier(self._table),
                )
            )
        return super()._auto_init()

    @api.model_create_multi
    def create(self, vals_list):
        """Take BJET's ``status`` as the ``state`` (one INSERT, no write after)."""
        for vals in vals_list:
            if "status" in vals:
                status = vals.pop("status")
                vals.setdefault("state", status)
        return super().create(vals_list)

    def get(self, key, default=None):
        """Answer like the result dictionary of BJET's module (SPEC §13), so
        that ``result = config._make_outbound_http_request(…)`` followed by
        ``result.get('success')`` runs unchanged.

        * ``success``: at least one request succeeded and none failed;
        * ``status_code``: the HTTP status of the last row (None without one);
        * ``data``: the last row's response body, JSON-decoded when it is JSON;
        * ``error``: the message of the last failed row (None when none failed,
          a sentence when nothing was sent);
        * any other key: ``default`` (fields are read as attributes:
          ``result.status_code``).

        The last row is the one created last (highest id).
        """
        rows = self.sorted("id")
        last = rows[-1:]
        if key == "success":
            states = set(rows.mapped("state"))
            return "success" in states and "error" not in states
        if key == "status_code":
            return last.status_code or None
        if key == "data":
            body = last.response_body
            if not body:
                return None
            try:
                return json.loads(body)
            except ValueError:
                return body
        if key == "error":
            failed = rows.filtered(lambda log: log.state == "error")[-1:]
            if failed:
                return failed.error_message or self.env._(
                    "HTTP %(status)s", status=failed.status_code
                )
            if "success" not in rows.mapped("state"):
                return self.env._("No request was sent.")
            return None
        return default

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
    def _insert_batch(self, vals_list, companies=None, first=None):
        """Write many log rows with one INSERT; return them.

        Logs are append-only rows that nothing computes from, written by the
        delivery cron at high rate: the generic ``create`` costs more than the
        HTTP exchange it records. Values must already be scrubbed.

        :param companies: ``{config id: company id or None}`` when the caller
            knows them (else read from the configurations)
        :param first: an SQL statement sent in the same round trip, before
            the INSERT (the delivery cron settles its rows so: updated first,
            the rows the logs point to are not locked twice); nothing is
            returned then
        """
        if not vals_list:
            if first is not None:
                self.env.execute_query(first)
            return self.browse()
        # Columns not given get NULL, not the field default; nor is the
        # summary computed here.
        vals_list = [
            {
                "direction": "out",
                "name": self._summary(
                    vals.get("request_method"), vals.get("request_url")
                ),
                **vals,
            }
            for vals in vals_list
        ]
        columns = sorted({key for vals in vals_list for key in vals})
        unknown = [
            c for c in columns if c not in self._fields or not self._fields[c].store
        ]
        if unknown or "company_id" in columns:
            if first is not None:
                self.env.execute_query(first)
            return self.sudo().create(vals_list)
        config_ids = {vals.get("config_id") for vals in vals_list} - {None, False}
        if companies is None or not config_ids <= companies.keys():
            companies = {
                config.id: config.company_id.id or None
                for config in self.env["bj.api.sync.config"].sudo().browse(config_ids)
            }
        # The time of writing (a log row's moment), which costs no query.
        now = fields.Datetime.now()
        uid = self.env.uid
        audit = ["company_id", "create_uid", "create_date", "write_uid", "write_date"]
        fields_ = [self._fields[c] for c in columns]
        # One placeholder per value (psycopg2 adapts scalars in C, tuples in
        # Python: this is the cron's hot path).
        values = []
        for vals in vals_list:
            values += [
                f.convert_to_column_insert(vals.get(f.name), self) for f in fields_
            ]
            values += [companies.get(vals.get("config_id")), uid, now, uid, now]
        row = "(" + ", ".join(["%s"] * (len(fields_) + len(audit))) + ")"
        insert = SQL(
            "INSERT INTO bj_api_log (%s) VALUES %s",
            SQL(", ").join(SQL.identifier(c) for c in columns + audit),
            SQL(", ".join([row] * len(vals_list)), *values),
        )
        if first is not None:
            self.env.cr.execute(SQL("%s; %s", first, insert))
            return self.browse()
        ids = self.env.execute_query(SQL("%s RETURNING id", insert))
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
        # Skipped rows (nothing sent) follow the success retention.
        states = {"success": ("success", "skipped"), "error": ("error",)}
        domains = [
            Domain("state", "in", states[state]) & Domain("create_date", "<", limit)
            for state, limit in self._retention_limits().items()
            if limit
        ]
        return self._gc_batch("bj.api.log", domains)
