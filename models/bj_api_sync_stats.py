"""Health figures of a configuration for the Overview dashboard.

``bj.api.sync.stats.mixin`` is inherited by ``bj.api.sync.config`` only. Its
fields are computed, never stored, for all the configurations shown at once:

* over the last 24 hours of ``bj.api.log``: requests, errors, success rate and
  median latency (one grouped query), and the last error ever logged (one
  query);
* from ``bj.api.sync.delivery``: the queue depth (pending + retrying) and the
  dead deliveries waiting for a retry or a cancel (one ``_read_group``).

Every figure counts only the rows the current user may read: the log queries
are built by ``_search`` (access rights and record rules of the user), the
delivery counts by ``_read_group``.

``health_state`` sums it up: ``paused`` when the circuit breaker (or a user)
paused the configuration, else ``failing`` when more than 20 % of its requests
of the last 24 hours failed (Out and In alike) or, for an Out configuration,
when dead deliveries wait; else ``active``. In configurations that log errors
only (``log_level = errors``) have no success rate (their successes are not
logged): they never fail on it, and their errors and last error are shown.
"""

from datetime import timedelta

from odoo import api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL

#: Window of the request figures.
STATS_WINDOW = timedelta(hours=24)
#: Share of failed requests (in the window) above which a configuration fails.
FAILING_ERROR_RATE = 0.2
#: Colour index of the kanban card per state (Odoo's colour picker palette).
HEALTH_COLORS = {"active": 10, "paused": 2, "failing": 1}
#: Characters of the last error shown on a card.
LAST_ERROR_CHARS = 200


class BjApiSyncStatsMixin(models.AbstractModel):
    _name = "bj.api.sync.stats.mixin"
    _description = "BJ API: dashboard figures of a configuration"

    health_state = fields.Selection(
        [("active", "Active"), ("paused", "Paused"), ("failing", "Failing")],
        string="Health",
        compute="_compute_stats",
        search="_search_health_state",
        help="Paused: deliveries wait (circuit breaker or Pause button). "
        "Failing: more than 20 % of the requests of the last 24 hours failed, "
        "or dead deliveries wait for a retry or a cancel. Active: otherwise.",
    )
    health_color = fields.Integer(compute="_compute_stats")
    stats_request_count = fields.Integer(
        string="Requests (24 h)",
        compute="_compute_stats",
        help="Requests logged in the last 24 hours (rows written by scripts "
        "without a request excluded).",
    )
    stats_error_count = fields.Integer(string="Errors (24 h)", compute="_compute_stats")
    stats_success_rate = fields.Float(
        string="Success Rate (24 h, %)",
        digits=(16, 1),
        compute="_compute_stats",
        help="Successful requests of the last 24 hours, in percent. Not "
        "computed for In configurations that log errors only.",
    )
    stats_has_rate = fields.Boolean(compute="_compute_stats")
    stats_latency_ms = fields.Integer(
        string="Median Latency (ms)",
        compute="_compute_stats",
        help="Median duration of the requests of the last 24 hours.",
    )
    stats_queue_depth = fields.Integer(
        string="Queue",
        compute="_compute_stats",
        help="Deliveries waiting to be sent: pending and retrying.",
    )
    stats_dead_count = fields.Integer(
        string="Dead Deliveries",
        compute="_compute_stats",
        help="Deliveries that gave up, waiting for a retry or a cancel.",
    )
    stats_last_error = fields.Char(string="Last Error", compute="_compute_stats")
    stats_last_error_at = fields.Datetime(
        string="Last Error On", compute="_compute_stats"
    )

    # ------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------

    @api.depends_context("uid", "allowed_company_ids")
    def _compute_stats(self):
        origin_ids = {config: config._origin.id for config in self}
        ids = sorted({config_id for config_id in origin_ids.values() if config_id})
        request_stats = self._stats_requests(ids)
        errors = self._stats_last_errors(ids)
        queues = self._stats_queues(ids)
        for config in self:
            config_id = origin_ids[config]
            total, failed, latency = request_stats.get(config_id, (0, 0, None))
            queue, dead = queues.get(config_id, (0, 0))
            last_error, last_error_at = errors.get(config_id, (False, False))
            has_rate = bool(total) and not (
                config.request_type == "in" and config.log_level == "errors"
            )
            if config.sync_state == "paused":
                state = "paused"
            elif (has_rate and failed / total > FAILING_ERROR_RATE) or (
                config.request_type == "out" and dead
            ):
                state = "failing"
            else:
                state = "active"
            config.health_state = state
            config.health_color = HEALTH_COLORS[state]
            config.stats_request_count = total
            config.stats_error_count = failed
            config.stats_has_rate = has_rate
            config.stats_success_rate = (
                100.0 * (total - failed) / total if has_rate else 0.0
            )
            config.stats_latency_ms = round(latency) if latency is not None else 0
            config.stats_queue_depth = queue
            config.stats_dead_count = dead
            config.stats_last_error = last_error
            config.stats_last_error_at = last_error_at

    def _search_health_state(self, operator, value):
        if operator != "in":
            return NotImplemented
        domain = Domain.FALSE
        if "paused" in value:
            domain |= Domain("sync_state", "=", "paused")
        wanted = set(value) & {"active", "failing"}
        if wanted:
            # Not paused: the figures decide, computed for those visible.
            running = self.with_context(active_test=False).search(
                [("sync_state", "=", "active")]
            )
            ids = running.filtered(lambda c: c.health_state in wanted).ids
            domain |= Domain("id", "in", ids)
        return domain

    # ------------------------------------------------------------------
    # Queries
    # ------------------------------------------------------------------

    @api.model
    def _stats_requests(self, ids):
        """``{config id: (requests, errors, median ms)}`` over the window, for
        the logs the current user may read."""
        if not ids:
            return {}
        Log = self.env["bj.api.log"]
        query = Log._search(
            [
                ("config_id", "in", ids),
                ("create_date", ">=", fields.Datetime.now() - STATS_WINDOW),
                ("state", "in", ("success", "error")),
            ]
        )
        if query.is_empty():
            return {}
        config_id = Log._field_to_sql(query.table, "config_id", query)
        query.groupby = config_id
        rows = self.env.execute_query(
            query.select(
                config_id,
                SQL("COUNT(*)"),
                SQL(
                    "COUNT(*) FILTER (WHERE %s = 'error')",
                    Log._field_to_sql(query.table, "state", query),
                ),
                SQL(
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY %s)",
                    Log._field_to_sql(query.table, "duration_ms", query),
                ),
            )
        )
        return {
            config_id: (total, failed, p50) for config_id, total, failed, p50 in rows
        }

    @api.model
    def _stats_last_errors(self, ids):
        """``{config id: (message, date)}`` of the last error log of each
        configuration that the current user may read."""
        if not ids:
            return {}
        Log = self.env["bj.api.log"]
        query = Log._search([("config_id", "in", ids), ("state", "=", "error")])
        if query.is_empty():
            return {}
        column = {
            name: Log._field_to_sql(query.table, name, query)
            for name in (
                "id",
                "config_id",
                "create_date",
                "error_message",
                "status_code",
            )
        }
        # One ordered probe per configuration rather than a sort of every error.
        rows = self.env.execute_query(
            SQL(
                "SELECT bj_stats_config.id, bj_stats_last.* "
                "FROM unnest(%(ids)s::int[]) AS bj_stats_config(id) "
                "CROSS JOIN LATERAL (SELECT %(date)s, %(message)s, %(status)s "
                "FROM %(tables)s WHERE %(where)s AND %(config)s = bj_stats_config.id "
                "ORDER BY %(date)s DESC, %(id)s DESC LIMIT 1) AS bj_stats_last",
                ids=list(ids),
                date=column["create_date"],
                message=column["error_message"],
                status=column["status_code"],
                config=column["config_id"],
                id=column["id"],
                tables=query.from_clause,
                where=query.where_clause,
            )
        )
        errors = {}
        for config_id, date, message, status in rows:
            text = (message or "").strip().splitlines()[:1]
            text = text[0] if text else self.env._("HTTP %s", status or "?")
            if len(text) > LAST_ERROR_CHARS:
                text = text[: LAST_ERROR_CHARS - 1] + "…"
            errors[config_id] = (text, date)
        return errors

    @api.model
    def _stats_queues(self, ids):
        """``{config id: (pending + retrying, dead)}`` among the deliveries
        the current user may read."""
        if not ids:
            return {}
        groups = self.env["bj.api.sync.delivery"]._read_group(
            [
                ("config_id", "in", ids),
                ("state", "in", ("pending", "retrying", "dead")),
            ],
            ["config_id", "state"],
            ["__count"],
        )
        queues = {}
        for config, state, count in groups:
            queue, dead = queues.get(config.id, (0, 0))
            if state == "dead":
                dead += count
            else:
                queue += count
            queues[config.id] = (queue, dead)
        return queues
