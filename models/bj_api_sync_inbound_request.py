from odoo import api, fields, models
from odoo.tools import SQL

#: Answers are replayed for this long (hours), then deleted.
REPLAY_HOURS = 24


class BjApiSyncInboundRequest(models.Model):
    """An inbound request answered with success, kept 24 hours under its
    Idempotency-Key so that a retry gets the same answer and changes nothing
    (SPEC §11).

    Rows are written in the transaction of the request they answer: an answer
    is stored if, and only if, the changes it reports are committed. While a
    request is in flight its key is held by a transaction-level advisory lock
    (see ``bj.api.sync.inbound.mixin._inbound_replay``).
    """

    _name = "bj.api.sync.inbound.request"
    _description = "BJ API: answered inbound request (idempotency)"
    _order = "id desc"

    config_id = fields.Many2one(
        "bj.api.sync.config", required=True, ondelete="cascade", index=True
    )
    idempotency_key = fields.Char(required=True)
    request_hash = fields.Char(
        required=True, help="SHA-256 of the method, path, query and body."
    )
    status_code = fields.Integer(required=True)
    response_body = fields.Text()
    res_ids = fields.Char(string="Record IDs")

    _config_key_unique = models.Constraint(
        "UNIQUE (config_id, idempotency_key)",
        "One answer per configuration and Idempotency-Key.",
    )

    @api.model
    def _find_answer(self, config_id, key):
        """The stored answer to ``key`` less than 24 hours old, or an empty
        recordset."""
        rows = self.env.execute_query(
            SQL(
                """
                SELECT id FROM bj_api_sync_inbound_request
                WHERE config_id = %s AND idempotency_key = %s
                  AND create_date > (now() AT TIME ZONE 'UTC') - %s * interval '1h'
                """,
                config_id,
                key,
                REPLAY_HOURS,
            )
        )
        return self.browse([row[0] for row in rows])

    @api.model
    def _store_answer(self, config_id, key, request_hash, status, body, res_ids):
        """Store (or replace an expired) answer to ``key``."""
        uid = self.env.uid
        self.env.execute_query(
            SQL(
                """
                INSERT INTO bj_api_sync_inbound_request AS r
                    (config_id, idempotency_key, request_hash, status_code,
                     response_body, res_ids, create_uid, write_uid,
                     create_date, write_date)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
                        now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')
                ON CONFLICT (config_id, idempotency_key) DO UPDATE SET
                    request_hash = EXCLUDED.request_hash,
                    status_code = EXCLUDED.status_code,
                    response_body = EXCLUDED.response_body,
                    res_ids = EXCLUDED.res_ids,
                    create_date = EXCLUDED.create_date,
                    write_date = EXCLUDED.write_date
                """,
                config_id,
                key,
                request_hash,
                status,
                body,
                res_ids,
                uid,
                uid,
            )
        )

    @api.autovacuum
    def _gc_answers(self):
        """Delete answers older than the replay period."""
        self.env.cr.execute(
            SQL(
                "DELETE FROM bj_api_sync_inbound_request "
                "WHERE create_date < (now() AT TIME ZONE 'UTC') - %s * interval '1h'",
                REPLAY_HOURS,
            )
        )
