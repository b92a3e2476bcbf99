import contextlib
import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import psycopg2.errors

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.fields import Domain
from odoo.tools import SQL, mute_logger

from ..exceptions import RetryableSyncError, SyncError
from ..tools import transport
from .bj_api_sync_import import answer_objects
from .bj_api_sync_request import Unit

_logger = logging.getLogger(__name__)

#: Retry schedule of queued deliveries (SPEC §6).
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 6 * 3600
RETRY_JITTER = 0.2
RETRY_AFTER_MAX_SECONDS = 24 * 3600
#: Deliveries claimed together at most. A cron worker claims again as soon as
#: fewer than half of that are still on their way, so its senders never wait
#: for a whole batch to end.
BATCH_SIZE = 128
#: Deliveries one cron worker holds at most (claimed, result not yet stored).
MAX_HELD = 2 * BATCH_SIZE
#: Seconds after which a worker claims again even with enough deliveries on
#: their way: a slow receiver's backlog never keeps other configurations waiting.
CLAIM_INTERVAL = 1.0
#: Seconds of sending a rate-limited configuration may hold at once.
RATE_HORIZON = 3
#: Seconds a worker waits, once a result is in, for the next ones (while more
#: requests are on their way) before storing them together: storing and
#: committing a few results at once costs far less than one at a time, and a
#: result is still committed within milliseconds of its answer.
GATHER_SECONDS = 0.005
#: Seconds a claimed delivery is kept from other workers while its worker sends
#: it. The worker renews the lease while it lives; after a crash the deliveries
#: it had claimed go again (same Idempotency-Key) once their lease has run out.
LEASE_SECONDS = 60
LEASE_RENEW_SECONDS = 15
#: Seconds between two checks of the per-record queue flags in a long run.
REPAIR_SECONDS = 30
#: When the per-record flags were last checked, per database (this process).
_REPAIRED = {}
#: Claims in a row undone by conflicts with other workers before the cron
#: leaves the rest to its next run.
MAX_CONFLICTS = 5

OPEN_STATES = ("pending", "retrying")


def _first_waiting(condition):
    """SQL text: the oldest waiting row of the record of row ``r`` that meets
    ``condition`` (on ``o``), NULL when none; for the queries of the per-record
    queues. A scalar subquery with LIMIT stays one probe of ``_order_index``
    per row: written as [NOT] EXISTS, the planner turns it into a join, and
    when the statistics say that nothing waits (a bulk change queued thousands
    of rows in the current transaction, a backlog grew since the last ANALYZE)
    that join scans every waiting row for each row, which took minutes for
    10,000 rows."""
    return f"""(SELECT o.id FROM bj_api_sync_delivery o
                 WHERE o.config_id = r.config_id
                   AND o.res_model = r.res_model
                   AND o.res_id = r.res_id
                   AND {condition}
                   AND o.state IN ('pending', 'retrying')
                 ORDER BY o.config_id, o.res_model, o.res_id, o.id
                 LIMIT 1)"""


#: The row ``r`` waits behind (NULL when it is first in line).
OLDER_WAITING = _first_waiting("o.id < r.id")
#: The row that goes next once ``r`` is settled (``r`` may still look waiting
#: to the statement settling it).
NEXT_WAITING = _first_waiting("o.id <> r.id")
CLOSED_STATES = ("done", "dead", "cancelled", "superseded")
#: What a concurrent change of the same rows raises at the database.
CONFLICTS = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.LockNotAvailable,
)


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


@dataclass
class Flight:
    """One claimed delivery on its way, as plain data: what recording its
    result needs survives the commits that empty the ORM cache."""

    delivery_id: int
    config_id: int
    attempt_count: int
    event: str
    probing: bool
    unit: Unit
    request: transport.OutboundRequest


@dataclass
class Sender:
    """What the flights of one configuration share (read once per claim)."""

    key: tuple
    limit: int
    secrets: list
    #: ``(data path, keys)`` of the write-back, None without one
    write_back: tuple | None
    company_id: int | None
    max_attempts: int

    def worth_writing_back(self, response_text):
        """Whether a 2xx answer gives the write-back something to do (or to
        report: an answer it cannot read)."""
        if not self.write_back:
            return False
        try:
            return answer_objects(response_text, *self.write_back) is not None
        except ValueError:
            return True


class CronProgress:
    """The cron's ``_commit_progress`` for a run that commits very often (each
    stored result): every call commits, the progress is written at most once
    a second."""

    def __init__(self, env, interval=1.0):
        self.env = env
        self.interval = interval
        self.processed = 0
        self.remaining = None
        self.reported = None
        self.deadline = math.inf

    def __call__(self, processed=0, remaining=None):
        """Commit; return the cron's time left (0: stop)."""
        self.processed += processed
        self.remaining = remaining
        now = time.monotonic()
        if self.reported is None or now - self.reported >= self.interval:
            return self.report()
        # The cron's own transaction, between two reports of its progress.
        self.env.cr.commit()  # pylint: disable=invalid-commit
        return max(self.deadline - now, 0)

    def report(self):
        """Write the progress not written yet, and commit."""
        left = self.env["ir.cron"]._commit_progress(
            self.processed, remaining=self.remaining
        )
        self.processed = 0
        self.reported = time.monotonic()
        self.deadline = self.reported + left
        return left


class DeliveryRun:
    """One run of the delivery cron (or of ``_process_due``): claims due
    deliveries, hands their requests to a :class:`transport.Dispatcher` and
    stores each result as soon as it is in.

    With ``commit`` (the cron), claims are committed before anything is sent
    (the rows are leased) and every stored result is committed at once: a crash
    sends again only the requests that were in flight. Without it everything
    happens in the current transaction (tests, shell). A record's next delivery
    becomes claimable when the result of the previous one is stored: deliveries
    of one record go one after the other, those of other records at the
    configuration's full concurrency.
    """

    def __init__(self, model, limit=None, commit=None, rollback=None, claims=None):
        self.model = model
        self.limit = limit
        self.commit_hook = commit
        self.rollback_hook = rollback
        self.claims_left = claims
        self.dispatcher = transport.Dispatcher()
        self.held = {}  # delivery id -> Flight
        self.senders = {}  # config id -> Sender
        self.handled = []
        self.remaining = 0
        self.stopping = False
        self.conflicts = 0
        self.found = True  # the last claim found something
        self.progress = True  # results stored since the last claim
        self.last_claim = 0.0
        self.renewed = time.monotonic()  # every held lease is renewed together
        self.skipped_configs = set()  # another worker probes them

    # -- the loop -------------------------------------------------------------------

    def run(self):
        """Send until nothing is due (or ``limit`` deliveries were handled, or
        the cron's time is up); return the deliveries handled."""
        if self.commit_hook:
            self.model._check_statistics()
            self.repair()
            self.remaining = self.model._count_due()
            self.commit(0)
        while True:
            if self.wants_claim():
                self.claim()
            if not self.held:
                if (
                    self.stopping
                    or not self.found
                    or self.claims_left == 0
                    or (self.limit is not None and len(self.handled) >= self.limit)
                ):
                    break
                continue
            results = self.dispatcher.take(
                timeout=CLAIM_INTERVAL, gather=GATHER_SECONDS
            )
            if results:
                self.store(results)
            self.keep_leases()
        return self.model.browse(self.handled)

    def commit(self, processed):
        self.remaining = max(self.remaining - processed, 0)
        if self.commit_hook and not self.commit_hook(
            processed, remaining=self.remaining
        ):
            self.stopping = True  # the cron's time is up: finish what flies

    def wants_claim(self):
        if self.stopping or self.claims_left == 0:
            return False
        room = MAX_HELD - len(self.held)
        if self.limit is not None:
            room = min(room, self.limit - len(self.handled) - len(self.held))
        if room <= 0:
            return False
        if len(self.held) < BATCH_SIZE // 2 and (self.found or self.progress):
            return True
        return time.monotonic() - self.last_claim >= CLAIM_INTERVAL

    def claim(self):
        """Claim, lease and prepare the next due deliveries, commit, then hand
        their requests over."""
        self.last_claim = time.monotonic()
        self.progress = False
        room = MAX_HELD - len(self.held)
        if self.limit is not None:
            room = min(room, self.limit - len(self.handled) - len(self.held))
        held = Counter(flight.config_id for flight in self.held.values())
        try:
            claimed = self.model._claim_batch(
                min(BATCH_SIZE, room),
                held=held,
                skip=self.skipped_configs,
                lease=True,
            )
            flights, settled = self.prepare(claimed)
        except CONFLICTS:
            # Another worker changed a row we were about to claim.
            if not self.rollback_hook:
                raise
            self.rollback_hook()
            self.conflicts += 1
            if self.conflicts > MAX_CONFLICTS:
                self.stopping = True
            return
        self.conflicts = 0
        self.found = bool(claimed)
        if self.claims_left:
            self.claims_left -= 1
        if not claimed:
            if self.rollback_hook:
                self.rollback_hook()  # nothing written: end the read, see new rows
            return
        self.handled += settled.ids
        self.commit(len(settled))
        for flight in flights:
            sender = self.senders[flight.config_id]
            self.held[flight.delivery_id] = flight
            self.dispatcher.submit(
                flight.delivery_id, flight.request, sender.key, sender.limit
            )

    def prepare(self, claimed):
        """Lease and prepare ``claimed``; a row that breaks the preparation of
        the others at the database is pushed back with the error, with all of
        them, so the next claim moves on to other rows."""
        Delivery = self.model
        if not claimed:
            return [], Delivery
        try:
            with Delivery.env.cr.savepoint():
                return claimed._prepare_flights(self.senders, self.skipped_configs)
        except CONFLICTS:
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the rows
            _logger.warning(
                "bj_api_sync: preparing %s deliveries failed: %s", len(claimed), error
            )
            claimed.invalidate_recordset()
            for delivery in claimed:
                delivery._mark_broken(error)
            return [], claimed

    def store(self, results):
        """Store the results just in, then commit."""
        self.progress = True
        pairs = [(self.held.pop(token), result) for token, result in results]
        sent = [(flight, result) for flight, result in pairs if result is not None]
        unsent = self.model.browse(
            [flight.delivery_id for flight, result in pairs if result is None]
        )
        try:
            with self.atomic():
                handled = self.model._store_results(sent, self.senders)
        except CONFLICTS:
            # Someone changed one of these rows meanwhile (a manager cancelled
            # it, say): store the others one by one; that one keeps its change.
            handled = self.model.browse()
            for pair in sent:
                try:
                    with self.model.env.cr.savepoint():
                        handled |= self.model._store_results([pair], self.senders)
                except CONFLICTS:
                    continue
        except Exception as error:  # noqa: BLE001 - recorded on the rows
            _logger.warning(
                "bj_api_sync: storing %s delivery results failed: %s",
                len(sent),
                error,
            )
            handled = self.model.browse([flight.delivery_id for flight, _r in sent])
            handled.invalidate_recordset()
            for delivery in handled:
                delivery._mark_broken(error)
        # Rows left unsent (their receiver just failed) lose their lease and
        # nothing else: no attempt is counted, a later claim takes them again.
        if not self.guarded(unsent._release):
            for delivery in unsent:
                self.guarded(delivery._release)
        self.handled += handled.ids
        self.commit(len(handled))

    def guarded(self, step):
        """Run ``step`` (see ``atomic``); False when a concurrent change of
        the same rows undid it (the other change stays)."""
        try:
            with self.atomic():
                step()
        except CONFLICTS:
            return False
        return True

    def repair(self):
        """Free the rows a race left waiting behind nothing, every
        ``REPAIR_SECONDS`` at most (per database, in this process)."""
        dbname = self.model.env.cr.dbname
        now = time.monotonic()
        if now - _REPAIRED.get(dbname, -math.inf) < REPAIR_SECONDS:
            return False
        _REPAIRED[dbname] = now
        self.model._check_statistics()
        self.model._repair_queue()
        return True

    @contextlib.contextmanager
    def atomic(self):
        """A step undone alone when it fails: a savepoint, or the transaction
        itself when the run commits as it goes (then nothing else is pending,
        and a savepoint would cost two more round trips per stored result)."""
        if not self.rollback_hook:
            with self.model.env.cr.savepoint():
                yield
            return
        try:
            yield
        except Exception:
            self.rollback_hook()
            raise

    def keep_leases(self):
        """Renew the leases of what this worker holds; now and then check the
        per-record queue flags (see ``_repair_queue``)."""
        now = time.monotonic()
        if self.held and now - self.renewed >= LEASE_RENEW_SECONDS:
            # A row a manager just changed fails the renewal: tried again on
            # the next turn, in a transaction that sees the change.
            if self.guarded(self.model.browse(list(self.held))._lease):
                self.renewed = now
                self.commit(0)
        if self.commit_hook and self.repair():
            self.commit(0)


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
            ("superseded", "Superseded"),
        ],
        required=True,
        default="pending",
        index=True,
        help="Superseded: a newer update of the same record was queued while "
        "this one waited; it carries the latest state, this one is kept for the "
        "record and never sent (Compact Backlog).",
    )
    attempt_count = fields.Integer(string="Attempts")
    next_attempt_at = fields.Datetime(
        string="Next Attempt", default=fields.Datetime.now, index=True
    )
    leased_until = fields.Datetime(
        string="Claimed Until",
        readonly=True,
        copy=False,
        help="Set while a delivery cron worker sends this row: other workers "
        "leave it alone until then (the worker renews it while it lives). "
        "After a crash the row goes again, with the same Idempotency-Key.",
    )
    queued_behind = fields.Boolean(
        default=False,
        readonly=True,
        copy=False,
        help="An older delivery of the same record and configuration still "
        "waits: this one goes after it.",
    )
    superseded_by_id = fields.Many2one(
        "bj.api.sync.delivery",
        readonly=True,
        copy=False,
        index="btree_not_null",
        ondelete="set null",
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
    # A record's queue: its waiting rows, oldest first.
    _order_index = models.Index(
        "(config_id, res_model, res_id, id) WHERE state IN ('pending', 'retrying')"
    )
    # What the claim walks: the first waiting row of each record, oldest first.
    # Its condition on queued_behind keeps the planner from reading a record's
    # queue through it (that is what _order_index is for).
    _head_index = models.Index(
        "(id) WHERE state IN ('pending', 'retrying') AND queued_behind IS NOT TRUE"
    )
    _behind_index = models.Index(
        "(id) WHERE state IN ('pending', 'retrying') AND queued_behind"
    )
    # Compaction never reaches across a delete.
    _unlink_index = models.Index(
        "(config_id, res_model, res_id, id) WHERE event = 'unlink'"
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
    # CRUD: each record's queue
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        deliveries = super().create(vals_list)
        deliveries._queue_behind_older()
        return deliveries

    def write(self, vals):
        reopened = self.browse()
        if vals.get("state") in OPEN_STATES:
            self.fetch(["state"])
            reopened = self.filtered(lambda d: d.state not in OPEN_STATES)
        result = super().write(vals)
        if "state" in vals:
            if vals["state"] not in OPEN_STATES:
                self._promote_next()
            elif reopened:
                reopened._requeue()
        return result

    def _queue_behind_older(self):
        """Flag the waiting rows of ``self`` that have an older waiting row of
        the same record and configuration: the claim leaves them alone until
        that one is settled."""
        if not self:
            return
        self.flush_recordset(["state", "config_id", "res_model", "res_id"])
        # One probe of _order_index per row (see OLDER_WAITING).
        rows = self.env.execute_query(
            SQL(
                """
                UPDATE bj_api_sync_delivery r
                   SET queued_behind = true
                 WHERE r.id IN %(ids)s
                   AND r.state IN ('pending', 'retrying')
                   AND r.queued_behind IS NOT TRUE
                   AND %(older)s IS NOT NULL
             RETURNING r.id
                """,
                ids=tuple(self.ids),
                older=SQL(OLDER_WAITING),
            )
        )
        if rows:
            self.browse(row[0] for row in rows).invalidate_recordset(["queued_behind"])

    def _promote_next(self):
        """These rows were settled: the next waiting row of each of their
        records (if any) becomes claimable."""
        if not self:
            return
        self.flush_model(["state"])
        rows = self.env.execute_query(
            SQL(
                """
                UPDATE bj_api_sync_delivery d
                   SET queued_behind = false
                 WHERE d.id = ANY(ARRAY(
                        SELECT %(next)s FROM bj_api_sync_delivery r
                         WHERE r.id IN %(ids)s))
                   AND d.queued_behind
             RETURNING d.id
                """,
                ids=tuple(self.ids),
                next=SQL(NEXT_WAITING),
            )
        )
        if rows:
            self.browse(row[0] for row in rows).invalidate_recordset(["queued_behind"])

    def _requeue(self):
        """These rows wait again (Retry): the queues of their records are
        worked out again, the oldest row first."""
        self.flush_model(["state"])
        self.env.execute_query(
            SQL(
                """
                WITH keys AS MATERIALIZED (
                    SELECT DISTINCT config_id, res_model, res_id
                      FROM bj_api_sync_delivery
                     WHERE id IN %(ids)s),
                queue AS MATERIALIZED (
                    SELECT r.id, %(older)s IS NOT NULL AS behind
                      FROM keys k,
                           -- OFFSET 0: planned per key, one index range each
                           LATERAL (SELECT w.id, w.config_id, w.res_model, w.res_id
                                      FROM bj_api_sync_delivery w
                                     WHERE w.config_id = k.config_id
                                       AND w.res_model = k.res_model
                                       AND w.res_id = k.res_id
                                       AND w.state IN ('pending', 'retrying')
                                    OFFSET 0) r)
                UPDATE bj_api_sync_delivery d
                   SET queued_behind = queue.behind
                  FROM queue
                 WHERE d.id = queue.id
                   AND d.queued_behind IS DISTINCT FROM queue.behind
                """,
                ids=tuple(self.ids),
                older=SQL(OLDER_WAITING),
            )
        )
        self.invalidate_model(["queued_behind"])

    @api.model
    def _check_statistics(self):
        """ANALYZE the outbox table when PostgreSQL's idea of how many rows
        wait is far off the truth.

        A queue swings from nothing to thousands of waiting rows (a bulk
        change) and back within a minute, before autovacuum looks again: with
        statistics that say nothing waits, the planner reads a record's queue
        or the first rows in line through the wrong index, and every claim
        walks the whole table. Checked at the start of each delivery run and
        every ``REPAIR_SECONDS`` during a long one; costs a count of the
        waiting rows.
        """
        self.flush_model()
        where = SQL("state IN ('pending', 'retrying')")
        [(plan,)] = self.env.execute_query(
            SQL(
                "EXPLAIN (FORMAT JSON) SELECT id FROM bj_api_sync_delivery WHERE %s",
                where,
            )
        )
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimated = plan[0]["Plan"]["Plan Rows"]
        [(waiting,)] = self.env.execute_query(
            SQL("SELECT count(*) FROM bj_api_sync_delivery WHERE %s", where)
        )
        if abs(waiting - estimated) > max(500, min(waiting, estimated)):
            # The columns the queue's queries filter on, from a small sample
            # (see init): a few tens of milliseconds.
            self.env.execute_query(
                SQL("ANALYZE bj_api_sync_delivery (state, queued_behind)")
            )
            return True
        return False

    def init(self):
        # A small statistics sample is plenty for these few values, and keeps
        # the ANALYZE of _check_statistics cheap.
        self.env.execute_query(
            SQL(
                """ALTER TABLE bj_api_sync_delivery
                     ALTER COLUMN state SET STATISTICS 10,
                     ALTER COLUMN queued_behind SET STATISTICS 10"""
            )
        )
        # Rows queued before the per-record flags existed get theirs.
        self._repair_queue(full=True)

    @api.model
    def _repair_queue(self, full=False):
        """Set the per-record queue flags right where a race left them wrong.

        A row queued while another transaction settled the only older row of
        its record may stay flagged as waiting behind nothing: it is freed
        here (the delivery cron calls this every ``REPAIR_SECONDS``). With
        ``full``, rows lacking the flag (written without the ORM, or before the
        flag existed) get it too. The claim never sends a row before an older
        waiting row of its record either way: the flags keep rows from waiting
        for nothing and the claim cheap.
        """
        self.flush_model()
        # Rows written without the ORM may have no flag: not behind, for the
        # claim (which still checks for older rows).
        self.env.execute_query(
            SQL(
                """UPDATE bj_api_sync_delivery SET queued_behind = false
                    WHERE state IN ('pending', 'retrying')
                      AND queued_behind IS NULL"""
            )
        )
        older = SQL(OLDER_WAITING)
        self.env.execute_query(
            SQL(
                """
                UPDATE bj_api_sync_delivery d
                   SET queued_behind = false
                 WHERE d.id IN (
                        SELECT r.id FROM bj_api_sync_delivery r
                         WHERE r.state IN ('pending', 'retrying')
                           AND r.queued_behind
                           AND %s IS NULL)
                """,
                older,
            )
        )
        if full:
            self.env.execute_query(
                SQL(
                    """
                    UPDATE bj_api_sync_delivery d
                       SET queued_behind = true
                     WHERE d.id IN (
                            SELECT r.id FROM bj_api_sync_delivery r
                             WHERE r.state IN ('pending', 'retrying')
                               AND r.queued_behind IS NOT TRUE
                               AND %s IS NOT NULL)
                    """,
                    older,
                )
            )
        self.invalidate_model(["queued_behind"])

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_retry(self):
        """Send again from the first attempt (dead, cancelled or waiting rows).
        Managers only. Superseded rows are not sent again: a newer delivery
        of their record carries its latest state."""
        self.check_access("write")
        todo = self.filtered(lambda d: d.state not in ("done", "superseded"))
        if not todo:
            raise UserError(
                self.env._("Delivered or superseded rows cannot be retried.")
            )
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
        §5): done and superseded rows after the log retention, dead and
        cancelled rows after the error log retention. Waiting rows are never
        deleted."""
        Log = self.env["bj.api.log"]
        limits = Log._retention_limits()
        domains = []
        if limits["success"]:
            domains.append(
                Domain("state", "in", ("done", "superseded"))
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
    def _trigger_cron(self, at=None):
        cron = self.env.ref(
            "bj_api_sync.ir_cron_send_deliveries", raise_if_not_found=False
        )
        if cron:
            cron.sudo()._trigger(at)

    def _supersede_older(self):
        """Compaction (``coalesce_backlog``): each of these new update rows
        supersedes the older update rows of its record and configuration that
        still wait, so the receiver gets the latest state once instead of every
        state in between.

        Rows being sent (leased) or locked by another transaction are left
        alone, and so is everything older than a delete of the record. A
        concurrent change of one of the rows just skips the compaction: those
        rows are sent, in order, as they would be without it.
        """
        new = self.filtered(
            lambda d: d.event == "write" and d.state == "pending" and d.res_id
        )
        if not new:
            return self.browse()
        self.flush_model()
        pairs = self.env.execute_query(
            SQL(
                """
                SELECT o.id, n.id
                  FROM bj_api_sync_delivery n,
                       -- OFFSET 0: planned per new row, one range of
                       -- _order_index and one probe of _unlink_index each
                       -- (see OLDER_WAITING)
                       LATERAL (
                        SELECT w.id FROM bj_api_sync_delivery w
                         WHERE w.config_id = n.config_id
                           AND w.res_model = n.res_model
                           AND w.res_id = n.res_id
                           AND w.id < n.id
                           AND w.state IN ('pending', 'retrying')
                           AND w.event = 'write'
                           AND (w.leased_until IS NULL OR w.leased_until <= %(now)s)
                           AND (SELECT u.id FROM bj_api_sync_delivery u
                                 WHERE u.event = 'unlink'
                                   AND u.config_id = n.config_id
                                   AND u.res_model = n.res_model
                                   AND u.res_id = n.res_id
                                   AND u.id > w.id
                                   AND u.id < n.id
                                 LIMIT 1) IS NULL
                        OFFSET 0) o
                 WHERE n.id IN %(ids)s
                """,
                ids=tuple(new.ids),
                now=fields.Datetime.now(),
            )
        )
        if not pairs:
            return self.browse()
        newest = {}
        for old_id, new_id in pairs:
            newest[old_id] = max(newest.get(old_id, 0), new_id)
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                locked = self.browse(sorted(newest)).try_lock_for_update(
                    allow_referencing=True
                )
        except CONFLICTS:
            return self.browse()
        by_new = {}
        for old in locked:
            by_new.setdefault(newest[old.id], []).append(old.id)
        superseded = self.browse()
        for new_id, old_ids in by_new.items():
            rows = self.browse(old_ids)
            rows.write(
                {
                    "state": "superseded",
                    "superseded_by_id": new_id,
                    "next_attempt_at": False,
                    "leased_until": False,
                }
            )
            superseded |= rows
        return superseded

    def _due_sql(self, now):
        """Conditions of a waiting row whose time has come and that no worker
        holds, of a configuration that sends (active, or paused with a probe
        due)."""
        return SQL(
            """d.state IN ('pending', 'retrying')
               AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %(now)s)
               AND (d.leased_until IS NULL OR d.leased_until <= %(now)s)
               AND c.active
               AND (c.sync_state = 'active'
                    OR (c.sync_state = 'paused' AND c.next_probe_at <= %(now)s))""",
            now=now,
        )

    @api.model
    def _claim_batch(self, limit=BATCH_SIZE, held=None, skip=(), lease=False):
        """Lock and return the next deliveries to send (at most ``limit``).

        Only the first waiting row of each record goes (per-record order: a row
        waits for the older rows of its configuration and record), oldest first
        across records, without any record holding back another. A paused
        configuration contributes one probe; a rate-limited one what it may send
        in ``RATE_HORIZON`` seconds. Rows locked by another worker are skipped,
        so two workers never send the same row.

        :param held: ``{config id: deliveries}`` this worker already holds
        :param skip: configuration ids to leave alone
        :param lease: lease the rows too (see ``_lease``), in the same statement
        """
        # The claim reads the tables directly: write pending ORM changes first.
        self.env["bj.api.sync.config"].flush_model()
        self.flush_model()
        now = fields.Datetime.now()
        configs = {
            config_id: (paused, rate)
            for config_id, paused, rate in self.env.execute_query(
                SQL(
                    """SELECT id, sync_state = 'paused', rate_limit_per_second
                         FROM bj_api_sync_config
                        WHERE active
                          AND (sync_state = 'active'
                               OR (sync_state = 'paused' AND next_probe_at <= %s))
                          AND NOT (id = ANY(%s::int[]))""",
                    now,
                    list(skip),
                )
            )
        }
        taken, counts, after = [], Counter(held or {}), 0
        while configs and len(taken) < limit:
            window = self._claim_window(now, list(configs), after, limit * 4)
            for delivery_id, config_id, claimable in window:
                if not claimable:
                    continue
                paused, rate = configs[config_id]
                if paused:
                    cap = 1  # one probe at a time
                elif rate:
                    # A rate-limited configuration takes what it may send in a
                    # few seconds: its rows wait in the queue, not in a worker.
                    cap = max(1, int(rate * RATE_HORIZON))
                else:
                    cap = None
                if cap is not None and counts[config_id] >= cap:
                    continue
                taken.append(delivery_id)
                counts[config_id] += 1
                if len(taken) >= limit:
                    break
            if len(window) < limit * 4:
                break
            after = window[-1][0]
        if not taken:
            return self.browse()
        # SKIP LOCKED: rows another worker holds are left to it. A row another
        # worker changed since this transaction began fails the lock
        # (serialization): expected contention, muted here, retried by the loop.
        with mute_logger("odoo.sql_db"):
            if lease:
                locked = self._lock_and_lease(taken, now)
            else:
                locked = self.browse(taken).try_lock_for_update(allow_referencing=True)
        locked.invalidate_recordset()
        return locked.filtered(lambda delivery: delivery.state in OPEN_STATES)

    @api.model
    def _claim_window(self, now, config_ids, after, size):
        """The next ``size`` first-in-line rows after id ``after``, oldest
        first, as ``(id, config id, claimable)``: claimable when due, of one
        of ``config_ids`` and with no older waiting row of its record.

        The window is taken from the index of first-in-line rows alone, so the
        cost of a claim does not grow with the backlog."""
        return self.env.execute_query(
            SQL(
                """
                SELECT r.id, r.config_id,
                       (r.next_attempt_at IS NULL OR r.next_attempt_at <= %(now)s)
                       AND (r.leased_until IS NULL OR r.leased_until <= %(now)s)
                       AND r.config_id = ANY(%(configs)s::int[])
                       AND %(older)s IS NULL
                  FROM (SELECT d.id, d.config_id, d.res_model, d.res_id,
                               d.next_attempt_at, d.leased_until
                          FROM bj_api_sync_delivery d
                         WHERE d.state IN ('pending', 'retrying')
                           AND d.queued_behind IS NOT TRUE
                           AND d.id > %(after)s
                         ORDER BY d.id
                         LIMIT %(size)s) r
                 ORDER BY r.id
                """,
                now=now,
                configs=config_ids,
                after=after,
                size=size,
                older=SQL(OLDER_WAITING),
            )
        )

    @api.model
    def _lock_and_lease(self, ids, now):
        """Lock the rows of ``ids`` nobody else holds and lease them (see
        ``_lease``), in one statement; return them."""
        rows = self.env.execute_query(
            SQL(
                """
                UPDATE bj_api_sync_delivery
                   SET leased_until = %(until)s
                 WHERE id IN (SELECT id FROM bj_api_sync_delivery
                               WHERE id IN %(ids)s
                                 FOR NO KEY UPDATE SKIP LOCKED)
             RETURNING id
                """,
                until=now + timedelta(seconds=LEASE_SECONDS),
                ids=tuple(ids),
            )
        )
        return self.browse(sorted(row[0] for row in rows))

    @api.model
    def _count_due(self):
        """How many rows the delivery cron could send now (for its progress):
        the due rows first in line for their record (those behind them go as
        the run goes on)."""
        self.env["bj.api.sync.config"].flush_model()
        self.flush_model()
        return self.env.execute_query(
            SQL(
                """
                SELECT count(*)
                  FROM bj_api_sync_delivery d
                  JOIN bj_api_sync_config c ON c.id = d.config_id
                 WHERE d.queued_behind IS NOT TRUE
                   AND %s
                """,
                self._due_sql(fields.Datetime.now()),
            )
        )[0][0]

    def _lease(self):
        """Keep these rows from other workers for ``LEASE_SECONDS``."""
        now = fields.Datetime.now()
        self.write({"leased_until": now + timedelta(seconds=LEASE_SECONDS)})

    def _release(self):
        """Hand these rows back to the queue as they are (nothing was sent)."""
        if self:
            self.write({"leased_until": False})

    @api.model
    def _cron_send_deliveries(self, limit=None):
        """Delivery cron: send due rows, committing each claim before sending
        and each result as soon as it is in, so that a crash sends again only
        what was in flight (same keys)."""
        progress = CronProgress(self.env)
        sent = self._drain(limit, commit=progress, rollback=self.env.cr.rollback)
        self._wake_at_lease_end()
        progress.report()
        return sent

    @api.model
    def _wake_at_lease_end(self):
        """Rows leased by a worker that died go again when their lease ends:
        have the cron run then."""
        self.flush_model()
        [(end,)] = self.env.execute_query(
            SQL(
                """SELECT min(leased_until) FROM bj_api_sync_delivery
                    WHERE state IN ('pending', 'retrying')
                      AND leased_until > %s""",
                fields.Datetime.now(),
            )
        )
        if end:
            self._trigger_cron(end + timedelta(seconds=1))

    @api.model
    def _drain(self, limit, commit, rollback):
        """Send due deliveries until none is left (or ``limit`` were handled);
        return how many were handled.

        ``commit(processed, remaining=…)`` makes each claim and each stored
        result durable (the cron's ``_commit_progress``: it returns the time
        left, 0 to stop); a claim that another worker's change made fail at the
        database is undone with ``rollback()`` and the loop goes on, a few
        times in a row at most.
        """
        return len(DeliveryRun(self, limit, commit=commit, rollback=rollback).run())

    @api.model
    def _process_batch(self, limit=BATCH_SIZE):
        """Claim due deliveries once and send them all, in the current
        transaction; return those handled (tests, shell)."""
        return DeliveryRun(self, limit, claims=1).run()

    @api.model
    def _process_due(self, limit=100):
        """Send due rows in the current transaction (tests, shell); no commit."""
        return DeliveryRun(self, limit).run()

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

    def _prepare_flights(self, senders, skipped_configs):
        """The :class:`Flight` of each of these claimed rows that is to be sent.

        Rows that cannot be sent are settled here (no payload, request refused);
        rows of a configuration another worker is probing are handed back and
        the configuration is added to ``skipped_configs``. ``senders`` gets the
        :class:`Sender` of each configuration.

        :return: ``(flights, settled rows)``
        """
        flights = []
        settled = released = self.browse()
        for delivery in self:
            try:
                job = delivery._prepare_job()
            except psycopg2.Error:
                raise
            except Exception as error:  # noqa: BLE001 - one row, not the batch
                delivery._mark_broken(error)
                settled |= delivery
                continue
            if job is None:
                released |= delivery  # another worker is probing this config
                skipped_configs.add(delivery.config_id.id)
                continue
            if not job:
                settled |= delivery
                continue
            _delivery, unit, request, probing = job
            flights.append(
                Flight(
                    delivery.id,
                    delivery.config_id.id,
                    delivery.attempt_count,
                    delivery.event,
                    probing,
                    unit,
                    request,
                )
            )
        released._release()
        for config in self.config_id.filtered(lambda c: c.id not in skipped_configs):
            senders[config.id] = config._prepare_sender()
        return flights, settled

    @api.model
    def _store_results(self, sent, senders):
        """Store what came back for ``sent`` (``[(Flight, result)]``): log
        rows, states, write-backs, circuit breakers; return the rows handled.
        Reads as little as it can: the ORM cache was emptied by the last
        commit."""
        if not sent:
            return self.browse()
        Config = self.env["bj.api.sync.config"]
        # A 401 may have renewed an OAuth2 token: scrub the new one too.
        jobs = [
            (Config.browse(flight.config_id), flight.unit, flight.request)
            for flight, _result in sent
        ]
        results = Config._finish_sent(jobs, [result for _flight, result in sent])
        sent = list(zip((flight for flight, _r in sent), results, strict=True))
        for config_id in {f.config_id for f, r in sent if r.status_code == 401}:
            senders[config_id] = Config.browse(config_id)._prepare_sender()
        log_values = []
        for flight, result in sent:
            sender = senders[flight.config_id]
            config = Config.browse(flight.config_id)
            values = config._prepare_log_values(
                flight.unit, flight.request, result, secrets=sender.secrets
            )
            values["delivery_id"] = flight.delivery_id
            if (
                result.outcome == "success"
                and flight.event != "unlink"  # nothing left to write to
                and sender.worth_writing_back(result.response_text)
            ):
                problem = config._write_back(
                    self.browse(flight.delivery_id)._write_back_records,
                    result.response_text,
                )
                if problem:
                    values["write_back_error"] = problem
            log_values.append(values)
        delivered = [
            (flight.delivery_id, flight.attempt_count + 1, result.status_code)
            for flight, result in sent
            if result.outcome == "success"
        ]
        # One round trip: the delivered rows done (and the next row of their
        # records claimable), then the log rows.
        self.flush_model()
        self.env["bj.api.log"].sudo()._insert_batch(
            log_values,
            companies={
                config_id: sender.company_id for config_id, sender in senders.items()
            },
            first=self._settle_sql(delivered),
        )
        if delivered:
            self.browse([row[0] for row in delivered]).invalidate_recordset()
            self.invalidate_model(["queued_behind"])
        breakers = set()
        for (flight, result), values in zip(sent, log_values, strict=True):
            if result.outcome == "success":
                if flight.probing:
                    Config.browse(flight.config_id)._resume(
                        self.env._("A probe delivery succeeded.")
                    )
                continue
            delivery = self.browse(flight.delivery_id)
            try:
                delivery._mark_failed(
                    result.outcome,
                    values.get("error_message"),
                    result,
                    flight.probing,
                    attempt_count=flight.attempt_count,
                    max_attempts=senders[flight.config_id].max_attempts,
                )
            except psycopg2.Error:
                raise
            except Exception as error:  # noqa: BLE001 - one row, not the batch
                delivery._mark_broken(error)
            if result.outcome == "retryable" and not flight.probing:
                breakers.add(flight.config_id)
        for config_id in breakers:
            Config.browse(config_id)._check_circuit_breaker()
        return self.browse([flight.delivery_id for flight, _result in sent])

    @api.model
    def _settle_sql(self, delivered):
        """The statement that marks delivered rows done and makes the next row
        of each of their records claimable (None when nothing was delivered).

        Written in SQL, like the log rows (see ``bj.api.log._insert_batch``):
        the delivery cron settles rows at the rate of the receiver, nothing
        stored is computed from them; the caller drops what the ORM cache
        holds of them.

        :param delivered: ``[(delivery id, attempt count, HTTP status)]``
        """
        if not delivered:
            return None
        ids, attempts, statuses = (
            list(column) for column in zip(*delivered, strict=True)
        )
        now = fields.Datetime.now()
        return SQL(
            """
            WITH settled AS (
                UPDATE bj_api_sync_delivery d
                   SET state = 'done',
                       attempt_count = v.attempts,
                       done_at = %(now)s,
                       last_status_code = v.status,
                       last_error = NULL,
                       next_attempt_at = NULL,
                       leased_until = NULL,
                       write_date = %(now)s,
                       write_uid = %(uid)s
                  FROM unnest(%(ids)s::int[], %(attempts)s::int[],
                              %(statuses)s::int[]) AS v(id, attempts, status)
                 WHERE d.id = v.id
             RETURNING d.id, d.config_id, d.res_model, d.res_id)
            UPDATE bj_api_sync_delivery n
               SET queued_behind = false
             WHERE n.id = ANY(ARRAY(SELECT %(next)s FROM settled r))
               AND n.queued_behind
            """,
            now=now,
            uid=self.env.uid,
            ids=ids,
            attempts=attempts,
            statuses=statuses,
            next=SQL(NEXT_WAITING),
        )

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

    def _mark_failed(
        self,
        outcome,
        error,
        result,
        probing=False,
        attempt_count=None,
        max_attempts=None,
    ):
        """Store a failed attempt: retrying after a backoff, or dead.

        :param attempt_count: the row's attempts before this one, and
        :param max_attempts: its configuration's, when the caller knows them
        """
        self.ensure_one()
        if attempt_count is None:
            attempt_count = self.attempt_count
        if max_attempts is None:
            max_attempts = self.config_id.max_attempts
        # A probe sent while the configuration is paused does not use up attempts.
        attempts = attempt_count + (0 if probing else 1)
        values = {
            "attempt_count": attempts,
            "last_error": error,
            "last_status_code": (result and result.status_code) or 0,
            "leased_until": False,
        }
        if outcome == "retryable" and probing:
            # Stay first in line: the configuration's probe cooldown spaces the
            # next try, and the backlog keeps its order once resumed.
            values["state"] = "retrying"
        elif outcome == "retryable" and attempts < max_attempts:
            delay = retry_delay(max(attempts, 1), result and result.retry_after)
            values.update(
                state="retrying",
                next_attempt_at=fields.Datetime.now() + timedelta(seconds=delay),
            )
        else:
            values.update(state="dead", next_attempt_at=False)
        self.write(values)
