from odoo import api, fields, models
from odoo.sql_db import Cursor
from odoo.tools import SQL


class BjApiSyncSendSlot(models.Model):
    """When a configuration's next request may start (``rate_limit_per_second``).

    One row per rate-limited configuration, moved forward by every worker and
    server sharing the database, each in a short transaction of its own: taking
    a slot holds the row lock for one statement only (see
    ``tools/ratelimit.py``).
    """

    _name = "bj.api.sync.send.slot"
    _description = "BJ API: outbound request schedule"
    _log_access = False

    # Not a foreign key: a slot is taken in a transaction of its own, which
    # must work for a configuration created by a transaction not yet committed.
    config_id = fields.Integer(required=True, index=True)
    next_at = fields.Datetime(required=True)

    _config_unique = models.Constraint(
        "UNIQUE (config_id)", "One schedule per configuration."
    )

    @api.model
    def _reserver(self, config_id, interval):
        """A ``reserve()`` for :class:`tools.ratelimit.SlotGate`: takes the next
        slot of ``config_id`` and returns the seconds until it starts, as the
        database's clock sees it. Uses the registry only, never this
        environment: it runs in the transport's threads."""
        registry = self.env.registry

        def reserve():
            with registry.cursor() as cr:
                if isinstance(cr, Cursor):  # a transaction of its own
                    # Concurrent takers wait for the row lock and then move
                    # on from the latest value instead of failing to serialize.
                    cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cr.execute(
                    SQL(
                        """
                        INSERT INTO bj_api_sync_send_slot AS s (config_id, next_at)
                        VALUES (
                            %(config)s,
                            (clock_timestamp() AT TIME ZONE 'UTC')
                                + %(step)s * interval '1 second'
                        )
                        ON CONFLICT (config_id) DO UPDATE SET next_at = GREATEST(
                            s.next_at, clock_timestamp() AT TIME ZONE 'UTC'
                        ) + %(step)s * interval '1 second'
                        RETURNING EXTRACT(EPOCH FROM (
                            s.next_at - %(step)s * interval '1 second'
                            - (clock_timestamp() AT TIME ZONE 'UTC')
                        ))
                        """,
                        config=config_id,
                        step=interval,
                    )
                )
                return float(cr.fetchone()[0])

        return reserve

    @api.autovacuum
    def _gc_slots(self):
        """Forget the schedules of configurations gone, or idle for an hour."""
        self.env.cr.execute(
            """
            DELETE FROM bj_api_sync_send_slot s
             WHERE s.next_at < (now() AT TIME ZONE 'UTC') - interval '1 hour'
                OR NOT EXISTS (
                    SELECT 1 FROM bj_api_sync_config c WHERE c.id = s.config_id
                )
            """
        )
