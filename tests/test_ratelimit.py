"""rate_limit_per_second (SPEC §14): requests of a configuration start at most
that many times a second, immediate and queued, quick retries included;
deliveries wait for their turn instead of failing."""

import psycopg2

from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import BjApiSyncCase, Reply


def worst_second(times):
    """The most requests whose arrival falls in one sliding second."""
    times = sorted(times)
    return max(
        (sum(1 for t in times if start <= t < start + 1.0) for start in times),
        default=0,
    )


@tagged("post_install", "-at_install")
class TestRateLimit(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]
        cls.partners = cls.make_partners(12, ref="RL")

    def arrivals(self):
        return [received.at for received in self.server.received]

    def test_immediate_sends_are_spaced(self):
        config = self.make_config(rate_limit_per_second=10)
        logs = config._make_outbound_http_request(self.partners)
        self.assertEqual(logs.mapped("state"), ["success"] * 12)
        times = sorted(self.arrivals())
        self.assertEqual(len(times), 12)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # 1.05 / 10 s apart; a sender may be up to 40 ms late for its slot
        self.assertGreaterEqual(min(gaps), 0.06, gaps)
        self.assertLessEqual(worst_second(times), 10)
        self.assertGreaterEqual(times[-1] - times[0], 11 * 0.1)
        # the wait is not counted in the exchanges' duration
        self.assertLess(max(logs.mapped("duration_ms")), 100)

    def test_queued_lanes_share_the_rate(self):
        config = self.make_config(
            rate_limit_per_second=20, delivery_mode="queued", max_concurrency=4
        )
        rows = config._enqueue(self.partners, "manual")
        self.assertEqual(len(rows), 12)
        sent = self.Delivery._process_due()
        self.assertEqual(len(sent), 12)
        self.assertEqual(set(rows.mapped("state")), {"done"}, "none failed")
        times = self.arrivals()
        self.assertEqual(len(times), 12)
        self.assertLessEqual(worst_second(times), 20)
        self.assertGreaterEqual(max(times) - min(times), 11 * 0.05 * 0.9)

    def test_quick_retries_wait_their_turn(self):
        config = self.make_config(
            rate_limit_per_second=10, max_retries=2, backoff_factor=0.0
        )
        self.server.script(503, 503, Reply(200))
        logs = config._make_outbound_http_request(self.partners[0])
        self.assertEqual((logs.state, logs.attempts), ("success", 3))
        times = sorted(self.arrivals())
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        self.assertGreaterEqual(min(gaps), 0.06, gaps)

    def test_429_still_backs_off(self):
        config = self.make_config(rate_limit_per_second=50, delivery_mode="queued")
        row = config._enqueue(self.partners[0], "manual")
        self.server.script(Reply(429, headers={"Retry-After": "120"}))
        self.Delivery._process_due()
        self.assertEqual(row.state, "retrying")
        self.assertEqual(row.last_status_code, 429)
        self.assertTrue(row.next_attempt_at)

    def test_batch_takes_a_few_seconds_of_sending(self):
        config = self.make_config(rate_limit_per_second=1, delivery_mode="queued")
        config._enqueue(self.partners, "manual")
        claimed = self.Delivery._claim_batch()
        self.assertEqual(len(claimed), 3, "1/s for a horizon of 3 s")
        config.rate_limit_per_second = 0
        self.env.invalidate_all()
        self.assertEqual(len(self.Delivery._claim_batch()), 12)

    def test_no_limit_no_schedule(self):
        config = self.make_config()
        config._make_outbound_http_request(self.partners[:2])
        self.assertFalse(
            self.env["bj.api.sync.send.slot"].search([("config_id", "=", config.id)])
        )

    def test_negative_rate_refused(self):
        config = self.make_config()
        with (
            self.assertRaises(psycopg2.errors.CheckViolation),
            mute_logger("odoo.sql_db"),
            self.env.cr.savepoint(),
        ):
            config.rate_limit_per_second = -1
            config.flush_recordset()
