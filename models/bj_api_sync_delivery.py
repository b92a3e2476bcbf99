import logging
import math
import random
from datetime import timedelta

import psycopg2.errors

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.fields import Domain
from odoo.tools import SQL, mute_logger

from ..exceptions import RetryableSyncError, SyncError
from .bj_api_sync_request import Unit

_logger = logging.getLogger(__name__)

#: Retry schedule of queued deliveries (SPEC §6).
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 6 * 3600
RETRY_JITTER = 0.2
RETRY_AFTER_MAX_SECONDS = 24 * 3600
#: Deliveries claimed together by one cron worker, then sent with at most each
#: configuration's ``max_concurrency`` requests in flight, and committed at once.
BATCH_SIZE = 64
#: Seconds of sending a rate-limited configuration may put in one batch.
RATE_HORIZON = 3
#: Batches in a row undone by conflicts with other workers before the cron
#: leaves the rest to its next run.
MAX_CONFLICTS = 5

OPEN_STATES = ("pending", "retrying")
CLOSED_STATES = ("done", "dead", "cancelled")


def retry_delay(attempt, retry_after=None, rng=random):
    """Seconds to wait before attempt ``attempt + 1`` of a queued delivery.

    ``min(6 h, 30 s × 2^(attempt−1)) ± 20 %``, or the server's Retry-After when
    larger (capped at 24 h).
    """
    exponent = min(max(attempt - 1, 0), 32)  # 2**32 × 30 s is far past the cap
    base = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2**exponent)
    delay = base * (1 + rng.uniform(-RETRY_JITTER, RETRY_JITTER))
    if retry_after and math.isfinite(float(retry_after)):
        delay = max(delay, min(float(retry_after), RETRY_AFTER_MAX_SECONDS))
    return delay


class BjApiSyncDelivery(models.Model):
    _name = "bj.api.sync.delivery"
    _description = "BJ API Delivery (outbox)"
    _order = "id desc"
    _rec_name = "idempotency_key"

    config_id = fields.Many2one(
        "bj.api.sync.config",
        string="Configuration",
        required=True,
        index=True,
        ondelete="cascade",
    )
    company_id = fields.Many2one(related="config_id.company_id", store=True)
    res_model = fields.Char(string="Model", required=True)
    res_ids = fields.Char(string="Record IDs")
    res_id = fields.Integer(
        string="Record ID",
        help="Set when the delivery carries one record: deliveries of the same "
        "record and configuration are sent in order.",
    )
    event = fields.Selection(
        [
            ("manual", "Manual"),
            ("create", "Create"),
            ("write", "Update"),
            ("unlink", "Delete"),
            ("cron", "Scheduled"),
        ],
        required=True,
        default="manual",
        index=True,
    )
    payload = fields.Text(
        help="Body snapshot (JSON, form or XML text per the Body Format), built "
        "when the event happened: the exact text sent."
    )
    request_url = fields.Char(string="URL")
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("retrying", "Retrying"),
            ("done", "Done"),
            ("dead", "Dead"),
            ("cancelled", "Cancelled"),
        ],
        required=True,
        default="pending",
        index=True,
    )
    attempt_count = fields.Integer(string="Attempts")
    next_attempt_at = fields.Datetime(
        string="Next Attempt", default=fields.Datetime.now, index=True
    )
    last_status_code = fields.Integer(string="Last Status")
    last_error = fields.Text()
    idempotency_key = fields.Char(required=True, index=True, readonly=True, copy=False)
    log_ids = fields.One2many("bj.api.log", "delivery_id", string="Logs")
    log_count = fields.Integer(compute="_compute_log_count")
    done_at = fields.Datetime(string="Delivered At")

    _due_index = models.Index(
        "(state, next_attempt_at) WHERE state IN ('pending', 'retrying')"
    )
    _order_index = models.Index(
        "(config_id, res_id, id) WHERE state IN ('pending', 'retrying')"
    )

    def _compute_log_count(self):
        counts = dict(
            self.env["bj.api.log"]._read_group(
                [("delivery_id", "in", self.ids)], ["delivery_id"], ["__count"]
            )
        )
        for delivery in self:
            delivery.log_count = counts.get(delivery, 0)

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_retry(self):
        """Send again from the first attempt (dead, cancelled or waiting rows).
        Managers only."""
        self.check_access("write")
        todo = self.filtered(lambda d: d.state != "done")
        if not todo:
            raise UserError(self.env._("Delivered rows cannot be retried."))
        todo.filtered(lambda d: not d.payload)._rebuild_payload()
        todo.write(
            {
                "state": "pending",
                "attempt_count": 0,
                "next_attempt_at": fields.Datetime.now(),
                "last_error": False,
            }
        )
        self._trigger_cron()
        return True

    def action_cancel(self):
        """Stop sending these rows; they stay for the record. Managers only."""
        self.check_access("write")
        todo = self.filtered(lambda d: d.state in (*OPEN_STATES, "dead"))
        if not todo:
            raise UserError(
                self.env._("Only waiting or dead deliveries can be cancelled.")
            )
        todo.write({"state": "cancelled", "next_attempt_at": False})
        return True

    def _rebuild_payload(self):
        """Build again the body of rows whose build failed when queued, with
        the rights of the user asking for it."""
        for delivery in self:
            records = delivery._records().exists()
            if not records:
                continue
            config = delivery.config_id
            try:
                records = config._records_for_build(records, "manual")
            except AccessError as error:
                delivery.last_error = str(error)
                continue
            units = list(config.sudo()._prepare_units(records))
            if len(units) == 1 and not units[0].error:
                delivery.write(
                    {"payload": units[0].body_text, "request_url": units[0].url}
                )
            elif units and units[0].error:
                delivery.last_error = units[0].error

    @api.autovacuum
    def _gc_deliveries(self):
        """Delete finished deliveries, by batches, with the log retention (SPEC
        §5): done rows after the log retention, dead and cancelled rows after
        the error log retention. Waiting rows are never deleted."""
        Log = self.env["bj.api.log"]
        limits = Log._retention_limits()
        domains = []
        if limits["success"]:
            domains.append(
                Domain("state", "=", "done")
                & Domain("write_date", "<", limits["success"])
            )
        if limits["error"]:
            domains.append(
                Domain("state", "in", ("dead", "cancelled"))
                & Domain("write_date", "<", limits["error"])
            )
        return Log._gc_batch(self._name, domains)

    def action_view_logs(self):
        """Open the HTTP exchanges of this delivery."""
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "bj_api_sync.bj_api_log_action"
        )
        action["domain"] = [("delivery_id", "in", self.ids)]
        return action

    # ------------------------------------------------------------------
    # Queue
    # ------------------------------------------------------------------

    @api.model
    def _trigger_cron(self):
        cron = self.env.ref(
            "bj_api_sync.ir_cron_send_deliveries", raise_if_not_found=False
        )
        if cron:
            cron.sudo()._trigger()

    def _due_query(self, select, limit=None):
        """Rows that may go now, in creation order.

        A row may go when it waits (pending/retrying), its time has come, its
        configuration is active (or paused with a probe due), and no older row of
        the same configuration and record waits for a later time. ``behind`` tells
        whether an older row of the same record is itself due (it goes first).
        """
        return SQL(
            """
            SELECT %(select)s
              FROM bj_api_sync_delivery d
              JOIN bj_api_sync_config c ON c.id = d.config_id
             WHERE d.state IN ('pending', 'retrying')
               AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %(now)s)
               AND c.active
               AND (c.sync_state = 'active'
                    OR (c.sync_state = 'paused' AND c.next_probe_at <= %(now)s))
               AND NOT EXISTS (
                    SELECT 1 FROM bj_api_sync_delivery o
                     WHERE o.config_id = d.config_id
                       AND o.res_id = d.res_id
                       AND o.id < d.id
                       AND o.state IN ('pending', 'retrying')
                       AND o.next_attempt_at > %(now)s)
             %(tail)s
            """,
            select=select,
            now=fields.Datetime.now(),
            tail=SQL("ORDER BY d.id LIMIT %s", limit) if limit else SQL(""),
        )

    @api.model
    def _claim_batch(self, limit=BATCH_SIZE):
        """Lock and return the next deliveries to send (at most ``limit``).

        Each configuration contributes its due rows in creation order, up to the
        first row that waits behind an older row of the same record (that one
        goes in a later batch): so a backlog goes out in order, per record and
        across records. A paused configuration contributes one probe. Rows locked
        by another worker are skipped, so two workers never send the same row.
        """
        # The claim reads the tables directly: write pending ORM changes first.
        self.env["bj.api.sync.config"].flush_model()
        self.flush_model()
        rows = self.env.execute_query(
            self._due_query(
                SQL(
                    """d.id, d.config_id, c.sync_state = 'paused',
                    c.rate_limit_per_second,
                    EXISTS (
                        SELECT 1 FROM bj_api_sync_delivery o
                         WHERE o.config_id = d.config_id
                           AND o.res_id = d.res_id
                           AND o.id < d.id
                           AND o.state IN ('pending', 'retrying'))"""
                ),
                limit=limit * 4,
            )
        )
        taken, closed, counts = [], set(), {}
        for delivery_id, config_id, paused, rate, behind in rows:
            if config_id in closed:
                continue
            if behind:
                closed.add(config_id)
                continue
            taken.append(delivery_id)
            counts[config_id] = counts.get(config_id, 0) + 1
            if paused:
                closed.add(config_id)  # one probe at a time
            elif rate and counts[config_id] >= max(1, int(rate * RATE_HORIZON)):
                # A rate-limited configuration takes what it may send in a
                # few seconds: its rows wait in the queue, not in a batch.
                closed.add(config_id)
            if len(taken) >= limit:
                break
        if not taken:
            return self.browse()
        # SKIP LOCKED: rows another worker holds are left to it. A row another
        # worker changed since this transaction began fails the lock
        # (serialization): expected contention, muted here, retried by the loop.
        with mute_logger("odoo.sql_db"):
            locked = self.browse(taken).try_lock_for_update(allow_referencing=True)
        locked.invalidate_recordset()
        return locked.filtered(lambda delivery: delivery.state in OPEN_STATES)

    @api.model
    def _count_due(self):
        """How many rows the delivery cron could send now (for its progress)."""
        self.env["bj.api.sync.config"].flush_model()
        self.flush_model()
        return self.env.execute_query(self._due_query(SQL("count(*)")))[0][0]

    @api.model
    def _cron_send_deliveries(self, limit=None):
        """Delivery cron: send due rows in small concurrent batches, committing
        after each batch so a crash re-sends at most one batch (same keys)."""
        return self._drain(
            limit,
            commit=self.env["ir.cron"]._commit_progress,
            rollback=self.env.cr.rollback,
        )

    @api.model
    def _drain(self, limit, commit, rollback):
        """Send due batches until none is left (or ``limit`` rows were sent).

        ``commit(processed, remaining=…)`` ends each batch (the cron's
        ``_commit_progress``: it returns the time left, 0 to stop); a batch that
        another worker's change made fail at the database is undone with
        ``rollback()`` and the loop goes on, a few times in a row at most.
        """
        remaining = self._count_due()
        commit(remaining=remaining)
        done = conflicts = 0
        while limit is None or done < limit:
            try:
                sent = self._process_batch()
            except (
                psycopg2.errors.SerializationFailure,
                psycopg2.errors.LockNotAvailable,
            ):
                # Another worker changed a row we were about to claim.
                rollback()
                conflicts += 1
                if conflicts > MAX_CONFLICTS:
                    break
                continue
            conflicts = 0
            if not sent:
                break
            done += len(sent)
            remaining = max(remaining - len(sent), 0)
            if not commit(len(sent), remaining=remaining):
                break
        return done

    @api.model
    def _process_batch(self, limit=BATCH_SIZE):
        """Claim and send one batch of due deliveries; return those sent.

        One row that breaks the batch in a way ``_send_batch`` could not keep
        to that row (a database error, say) does not stall the queue: the batch's
        changes are undone, and every claimed row is pushed back with a backoff
        and the error, so the next claim moves on to other rows.
        """
        claimed = self._claim_batch(limit)
        if not claimed:
            return claimed
        try:
            with self.env.cr.savepoint():
                return claimed._send_batch()
        except (
            psycopg2.errors.SerializationFailure,
            psycopg2.errors.LockNotAvailable,
        ):
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the rows
            _logger.warning(
                "bj_api_sync: a batch of %s deliveries failed: %s", len(claimed), error
            )
            claimed.invalidate_recordset()
            for delivery in claimed:
                delivery._mark_broken(error)
            return claimed

    @api.model
    def _process_due(self, limit=100):
        """Send due rows in the current transaction (tests, shell); no commit."""
        sent = self.browse()
        while len(sent) < limit:
            batch = self._process_batch(min(BATCH_SIZE, limit - len(sent)))
            if not batch:
                break
            sent |= batch
        return sent

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _records(self):
        """The records this delivery carries (in this environment)."""
        self.ensure_one()
        return self.env[self.res_model].browse(
            [int(i) for i in (self.res_ids or "").split(",") if i]
        )

    def _write_back_records(self):
        """The records of this delivery with the rights of the user whose
        change queued it (the configuration's Run As user when set), never
        the superuser flag."""
        self.ensure_one()
        user = self.sudo().config_id.run_as_user_id or self.sudo().create_uid
        records = self._records()
        # A record deleted since is reported by the write-back, not looked up
        # here for every delivery.
        return records.with_env(records.env(user=user.id, su=False))

    def _prepare_unit(self):
        self.ensure_one()
        # The stored text is what POST/PUT/PATCH/DELETE send; it is parsed
        # only when needed (GET query strings).
        return Unit(
            self._records(),
            body_text=self.payload,
            url=self.request_url,
            idempotency_key=self.idempotency_key,
        )

    def _send_batch(self):
        """Send these claimed deliveries, concurrently, and record the outcomes.

        The ORM work (building requests, writing results) stays in this thread;
        only the HTTP exchanges run in the transport's worker threads.
        :return: the deliveries actually handled
        """
        jobs = []
        handled = self.browse()
        for delivery in self:
            try:
                job = delivery._prepare_job()
            except psycopg2.Error:
                raise
            except Exception as error:  # noqa: BLE001 - one row, not the batch
                delivery._mark_broken(error)
                handled |= delivery
                continue
            if job is None:
                continue  # another worker is probing this configuration
            handled |= delivery
            if job:
                jobs.append(job)
        results = self.env["bj.api.sync.config"]._send_prepared(
            [
                (delivery.config_id, unit, request)
                for delivery, unit, request, _p in jobs
            ]
        )
        # Rows left unsent (their configuration's receiver just failed) stay as
        # they are: no attempt is counted, the next batch takes them again.
        sent = [
            (job, result) for job, result in zip(jobs, results, strict=True) if result
        ]
        handled -= self.browse(
            [job[0].id for job, result in zip(jobs, results, strict=True) if not result]
        )
        log_values = []
        secrets, writes_back = {}, {}
        for (delivery, unit, request, _probing), result in sent:
            config = delivery.config_id
            if config.id not in secrets:
                secrets[config.id] = config._get_secrets()
            values = config._prepare_log_values(
                unit, request, result, secrets=secrets[config.id]
            )
            values["delivery_id"] = delivery.id
            if config.id not in writes_back:
                writes_back[config.id] = config._writes_back()
            if (
                result.outcome == "success"
                and delivery.event != "unlink"  # nothing left to write to
                and writes_back[config.id]
            ):
                problem = config._write_back(
                    delivery._write_back_records, result.response_text
                )
                if problem:
                    values["write_back_error"] = problem
            log_values.append(values)
        self.env["bj.api.log"].sudo()._insert_batch(log_values)
        self.invalidate_recordset(["log_ids", "log_count"])
        breakers = self.env["bj.api.sync.config"]
        delivered = {}  # (attempt_count, status) -> deliveries, written together
        for ((delivery, _unit, _request, probing), result), values in zip(
            sent, log_values, strict=True
        ):
            config = delivery.config_id
            if result.outcome == "success":
                key = (delivery.attempt_count + 1, result.status_code)
                delivered[key] = delivered.get(key, self.browse()) | delivery
                if probing:
                    config._resume(self.env._("A probe delivery succeeded."))
                continue
            try:
                delivery._mark_failed(
                    result.outcome, values.get("error_message"), result, probing
                )
            except psycopg2.Error:
                raise
            except Exception as error:  # noqa: BLE001 - one row, not the batch
                delivery._mark_broken(error)
            if result.outcome == "retryable" and not probing:
                breakers |= config
        now = fields.Datetime.now()
        for (attempts, status), deliveries in delivered.items():
            deliveries.write(
                {
                    "state": "done",
                    "attempt_count": attempts,
                    "done_at": now,
                    "last_status_code": status,
                    "last_error": False,
                    "next_attempt_at": False,
                }
            )
        for config in breakers:
            config._check_circuit_breaker()
        return handled

    def _prepare_job(self):
        """The ``(delivery, unit, request, probing)`` to send for this claimed
        row; ``None`` when another worker is probing its configuration; False
        when the row was settled without sending (no payload, request refused).
        """
        self.ensure_one()
        config = self.config_id
        probing = config.sync_state == "paused"
        if probing and not config._schedule_next_probe():
            return None
        # An empty text is a body too: a form without fields.
        if self.payload is False:
            self._mark_failed(
                "permanent",
                self.last_error or self.env._("No payload to send."),
                None,
            )
            return False
        unit = self._prepare_unit()
        try:
            request = config._prepare_request(unit)
        except SyncError as error:
            unit.error = str(error)
            values = config._prepare_log_values(unit, None, None)
            values["delivery_id"] = self.id
            self.env["bj.api.log"].sudo().create(values)
            retryable = isinstance(error, RetryableSyncError)
            self._mark_failed(
                "retryable" if retryable else "permanent",
                values["error_message"],
                None,
                probing=probing,
            )
            return False
        return (self, unit, request, probing)

    def _mark_broken(self, error):
        """Record an unexpected failure while handling this row: it goes on
        like a retryable failure (backoff, then dead after max_attempts), so
        it never blocks the rows behind it."""
        self.ensure_one()
        message = self.env._(
            "Internal error while sending: %(type)s: %(error)s",
            type=type(error).__name__,
            error=str(error)[:500],
        )
        try:
            secrets = self.config_id._get_secrets()
        except Exception:  # noqa: BLE001 - the message is cut to the type then
            secrets, message = (), message.split(":")[0]
        message = self.env["bj.api.log"]._scrub_values(
            {"error_message": message}, secrets
        )["error_message"]
        self._mark_failed("retryable", message, None)

    def _mark_failed(self, outcome, error, result, probing=False):
        self.ensure_one()
        # A probe sent while the configuration is paused does not use up attempts.
        attempts = self.attempt_count + (0 if probing else 1)
        values = {
            "attempt_count": attempts,
            "last_error": error,
            "last_status_code": (result and result.status_code) or 0,
        }
        if outcome == "retryable" and probing:
            # Stay first in line: the configuration's probe cooldown spaces the
            # next try, and the backlog keeps its order once resumed.
            values["state"] = "retrying"
        elif outcome == "retryable" and attempts < self.config_id.max_attempts:
            delay = retry_delay(max(attempts, 1), result and result.retry_after)
            values.update(
                state="retrying",
                next_attempt_at=fields.Datetime.now() + timedelta(seconds=delay),
            )
        else:
            values.update(state="dead", next_attempt_at=False)
        self.write(values)
