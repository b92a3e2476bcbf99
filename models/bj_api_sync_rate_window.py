import math

from odoo import api, fields, models
from odoo.sql_db import Cursor
from odoo.tools import SQL

#: Windows older than this are deleted by the autovacuum (seconds).
WINDOW_RETENTION = 3600


class BjApiSyncRateWindow(models.Model):
    """Requests an inbound endpoint received, counted per configuration and
    minute (SPEC §11 ``rate_limit``).

    One row per configuration and minute, incremented by every worker and
    server sharing the database in a transaction of its own, so that a request
    counts at once and a long request holds no lock on the counter.
    """

    _name = "bj.api.sync.rate.window"
    _description = "BJ API: inbound requests per minute"
    _log_access = False

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    window_start = fields.Datetime(required=True)
    hits = fields.Integer(required=True, default=0)

    _config_window_unique = models.Constraint(
        "UNIQUE (config_id, window_start)",
        "One counter per configuration and minute.",
    )

    @api.model
    def _hit(self, config_id):
        """Count one request of a configuration in the current minute.

        :return: ``(hits in this minute so far, seconds until the next minute)``
        """
        with self.env.registry.cursor() as cr:
            if isinstance(cr, Cursor):  # a transaction of its own (not a test's)
                # Concurrent hits wait for each other's row lock and then add
                # to the latest count, instead of failing to serialize.
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cr.execute(
                SQL(
                    """
                    INSERT INTO bj_api_sync_rate_window AS w
                        (config_id, window_start, hits)
                    VALUES (%s, date_trunc('minute', now() AT TIME ZONE 'UTC'), 1)
                    ON CONFLICT (config_id, window_start)
                        DO UPDATE SET hits = w.hits + 1
                    RETURNING w.hits, 60 - EXTRACT(
                        EPOCH FROM (now() AT TIME ZONE 'UTC') - w.window_start
                    )
                    """,
                    config_id,
                )
            )
            hits, left = cr.fetchone()
        return hits, max(1, math.ceil(left))

    @api.autovacuum
    def _gc_windows(self):
        """Delete the counters of past minutes."""
        self.env.cr.execute(
            SQL(
                "DELETE FROM bj_api_sync_rate_window "
                "WHERE window_start < (now() AT TIME ZONE 'UTC') - %s * interval '1s'",
                WINDOW_RETENTION,
            )
        )
