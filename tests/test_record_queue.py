"""Per-record queues of the outbox (SPEC §6): a delivery waits only for the
older deliveries of its own record and configuration; compaction of waiting
updates; leases of claimed rows."""

import ast
import json
from datetime import timedelta

from lxml import etree

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import BjApiSyncCase, Reply

OUTBOX_LOGGER = "odoo.addons.bj_api_sync.models.bj_api_sync_outbox"


class QueueCase(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]
        cls.hot = cls.env["res.partner"].create({"name": "Hot", "ref": "HOT"})

    def queue_update(self, config, partner, name):
        """One transaction that renames ``partner`` and queues its update."""
        partner.name = name
        rows = config._create_deliveries(partner, "write")
        # What COMMIT does: the next call stands for a new transaction.
        self.env.cr.postcommit.data.clear()
        return rows

    def names_sent(self, partner=None):
        bodies = [received.json() for received in self.server.received]
        if partner is None:
            return [body["name"] for body in bodies]
        return [body["name"] for body in bodies if body["id"] == partner.id]

    def make_due(self, deliveries):
        deliveries.write(
            {"next_attempt_at": fields.Datetime.now() - timedelta(seconds=1)}
        )


@tagged("post_install", "-at_install")
class TestPerRecordOrder(QueueCase):
    def test_hot_record_does_not_hold_back_the_others(self):
        """A record with many queued deliveries sends one at a time, in order;
        the deliveries of the other records queued after them go meanwhile, at
        the configuration's concurrency."""
        self.server.default = Reply(200, delay=0.1)
        config = self.make_config(
            lines=[("id", "id", "plain"), ("name", "name", "plain")],
            max_concurrency=4,
        )
        hot_rows = self.Delivery
        for version in range(6):
            self.hot.name = f"Hot v{version}"
            hot_rows |= config._enqueue(self.hot, "manual")
        others = config._enqueue(self.make_partners(6), "manual")
        self.assertEqual(hot_rows[1:].mapped("queued_behind"), [True] * 5)
        self.assertFalse(any(others.mapped("queued_behind")))
        first = self.Delivery._process_batch()
        self.assertEqual(first, hot_rows[0] | others, "one row of the hot record")
        self.assertEqual(self.server.max_in_flight, 4)
        self.assertEqual(set(hot_rows[1:].mapped("state")), {"pending"})
        self.assertFalse(hot_rows[1].queued_behind, "next in line")
        self.assertTrue(hot_rows[2].queued_behind)
        self.Delivery._process_due()
        self.assertEqual(set((hot_rows | others).mapped("state")), {"done"})
        self.assertEqual(
            self.names_sent(self.hot), [f"Hot v{version}" for version in range(6)]
        )

    def test_retrying_row_in_front_blocks_its_record_only(self):
        config = self.make_config(lines=[("id", "id", "plain")])
        self.server.script(503)
        first = config._enqueue(self.hot, "manual")
        self.Delivery._process_due()
        self.assertEqual(first.state, "retrying")
        behind = config._enqueue(self.hot, "manual") | config._enqueue(
            self.hot, "manual"
        )
        others = config._enqueue(self.make_partners(3), "manual")
        self.assertEqual(self.Delivery._count_due(), 3)
        self.assertEqual(self.Delivery._process_due(), others)
        self.assertEqual(set(behind.mapped("state")), {"pending"})
        self.make_due(first)
        self.assertEqual(self.Delivery._process_due(), first | behind)
        self.assertEqual(
            [r.headers["Idempotency-Key"] for r in self.server.received[-3:]],
            (first | behind).mapped("idempotency_key"),
        )

    def test_paused_configuration_holds_back_no_other(self):
        healthy = self.make_config(name="Healthy")
        paused = self.make_config(name="Paused")
        with self.assertLogs(OUTBOX_LOGGER, "WARNING"):
            paused.action_pause()
        waiting = paused._enqueue(self.make_partners(3), "manual")
        going = healthy._enqueue(self.make_partners(3), "manual")
        self.assertEqual(self.Delivery._process_due(), going)
        self.assertEqual(set(waiting.mapped("state")), {"pending"})
        # The probe time comes: one probe only, the oldest row.
        paused.next_probe_at = fields.Datetime.now() - timedelta(seconds=1)
        self.assertEqual(self.Delivery._process_batch(), waiting[0])
        self.assertEqual(paused.sync_state, "active", "the probe resumed it")
        self.assertEqual(self.Delivery._process_due(), waiting[1:])

    def test_retry_of_an_older_row_puts_it_first_again(self):
        config = self.make_config(lines=[("name", "name", "plain")])
        self.server.script(400)
        self.hot.name = "old"
        dead = config._enqueue(self.hot, "manual")
        self.Delivery._process_due()
        self.assertEqual(dead.state, "dead")
        self.hot.name = "new"
        newer = config._enqueue(self.hot, "manual")
        self.assertFalse(newer.queued_behind, "a dead row holds nothing back")
        dead.action_retry()
        self.assertTrue(newer.queued_behind, "behind the row sent again")
        self.assertEqual(self.Delivery._process_batch(), dead)
        self.Delivery._process_due()
        self.assertEqual(self.names_sent(), ["old", "old", "new"])

    def test_repair_sets_wrong_flags_right(self):
        config = self.make_config()
        first, second = (config._enqueue(self.hot, "manual") for _i in range(2))
        other = config._enqueue(self.make_partners(1), "manual")
        self.env.flush_all()
        # What a race leaves: flags written by transactions that did not see
        # each other's rows.
        self.env.cr.execute(
            "UPDATE bj_api_sync_delivery SET queued_behind = NOT queued_behind "
            "WHERE id IN %s",
            [tuple((first | second | other).ids)],
        )
        self.env.invalidate_all()
        self.Delivery._repair_queue()
        self.assertEqual(
            (first | second | other).mapped("queued_behind"),
            [False, False, False],
            "freed: nothing older waits",
        )
        self.Delivery._repair_queue(full=True)
        self.assertEqual(
            (first | second | other).mapped("queued_behind"), [False, True, False]
        )

    def test_limit_ends_the_run_with_rows_still_due(self):
        config = self.make_config()
        rows = config._enqueue(self.make_partners(5), "manual")
        self.assertEqual(self.Delivery._process_due(limit=3), rows[:3])
        self.assertEqual(rows[3:].mapped("state"), ["pending", "pending"])
        self.assertEqual(self.Delivery._process_due(limit=3), rows[3:])

    def test_claim_never_sends_a_row_before_an_older_one(self):
        """A row whose flag says nothing is in front (a race) still waits for
        the older row of its record."""
        config = self.make_config()
        first, second = (config._enqueue(self.hot, "manual") for _i in range(2))
        second.queued_behind = False
        self.assertEqual(self.Delivery._process_batch(), first)
        self.assertEqual(second.state, "pending")


@tagged("post_install", "-at_install")
class TestCompaction(QueueCase):
    def config(self, **values):
        return self.make_config(
            lines=[("id", "id", "plain"), ("name", "name", "plain")], **values
        )

    def test_update_supersedes_waiting_updates(self):
        config = self.config()
        self.assertTrue(config.coalesce_backlog, "on by default")
        rows = self.Delivery
        for name in ("v1", "v2", "v3"):
            rows |= self.queue_update(config, self.hot, name)
        self.assertEqual(rows.mapped("state"), ["superseded", "superseded", "pending"])
        self.assertEqual(rows[0].superseded_by_id, rows[1])
        self.assertEqual(rows[1].superseded_by_id, rows[2])
        self.assertFalse(any(rows[:2].mapped("next_attempt_at")))
        self.assertFalse(rows[2].queued_behind)
        self.assertEqual(self.Delivery._process_due(), rows[2])
        self.assertEqual(self.names_sent(), ["v3"])
        # Kept for the audit, never sent, found with the list's filter.
        self.assertEqual(rows[:2].mapped("state"), ["superseded", "superseded"])
        self.assertFalse(rows[:2].log_ids)
        search = self.env.ref("bj_api_sync.bj_api_sync_delivery_view_search")
        arch = etree.fromstring(search.arch)
        [node] = arch.xpath("//filter[@name='filter_superseded']")
        domain = [("config_id", "=", config.id), *ast.literal_eval(node.get("domain"))]
        self.assertEqual(self.Delivery.search(domain), rows[:2])
        with self.assertRaises(UserError) as caught:
            rows[0].action_retry()
        self.assertIn("superseded", str(caught.exception))

    def test_automation_updates_in_several_transactions(self):
        """The path of automation rules: updates buffered in each transaction,
        built at pre-commit; each later one supersedes the waiting one."""
        config = self.config(filter_domain="[('ref', '=', 'HOT')]")
        wizard = self.env["bj.api.sync.automate"].create(
            {"config_id": config.id, "on_create_or_write": True}
        )
        wizard.action_create_automations()
        self.env.cr.execute(
            "UPDATE res_partner SET create_date = create_date - interval '1 hour' "
            "WHERE id = %s",
            [self.hot.id],
        )
        self.hot.invalidate_recordset(["create_date"])
        for name in ("a", "b", "c"):
            self.hot.name = name
            self.env.cr.flush()  # pre-commit: the delivery is built
            self.env.cr.postcommit.data.clear()
        rows = self.Delivery.search([("config_id", "=", config.id)], order="id")
        self.assertEqual(rows.mapped("event"), ["write"] * 3)
        self.assertEqual(rows.mapped("state"), ["superseded", "superseded", "pending"])
        self.assertEqual(json.loads(rows[2].payload)["name"], "c")

    def test_create_is_never_superseded(self):
        config = self.config()
        partner = self.env["res.partner"].create({"name": "born"})
        created = config._create_deliveries(partner, "create")
        self.env.cr.postcommit.data.clear()
        updates = self.queue_update(config, partner, "grown") | self.queue_update(
            config, partner, "old"
        )
        self.assertEqual(created.state, "pending")
        self.assertEqual(updates.mapped("state"), ["superseded", "pending"])
        self.assertTrue(updates[1].queued_behind, "behind the creation")
        self.Delivery._process_due()
        self.assertEqual(self.names_sent(), ["born", "old"])

    def test_never_across_a_delete(self):
        config = self.config()
        before = self.queue_update(config, self.hot, "before")
        deleted = config._enqueue(self.hot, "unlink")
        self.env.cr.postcommit.data.clear()
        after = self.queue_update(config, self.hot, "after")
        later = self.queue_update(config, self.hot, "later")
        self.assertEqual(before.state, "pending", "older than the delete: kept")
        self.assertEqual(deleted.state, "pending")
        self.assertEqual(after.state, "superseded")
        self.assertEqual(later.state, "pending")
        self.Delivery._process_due()
        self.assertEqual(self.names_sent(), ["before", "before", "later"])

    def test_changed_fields_payloads_are_never_compacted(self):
        config = self.config(payload_scope="changed")
        rows = self.Delivery
        for name in ("c1", "c2", "c3"):
            rows |= self.queue_update(config, self.hot, name)
        self.assertEqual(rows.mapped("state"), ["pending"] * 3)
        self.Delivery._process_due()
        self.assertEqual(len(self.server.received), 3)

    def test_off_keeps_every_update(self):
        config = self.config(coalesce_backlog=False)
        rows = self.Delivery
        for name in ("k1", "k2", "k3"):
            rows |= self.queue_update(config, self.hot, name)
        self.assertEqual(rows.mapped("state"), ["pending"] * 3)
        self.Delivery._process_due()
        self.assertEqual(self.names_sent(), ["k1", "k2", "k3"])

    def test_row_being_sent_is_not_superseded(self):
        config = self.config()
        flying = self.queue_update(config, self.hot, "flying")
        claimed = self.Delivery._claim_batch()
        self.assertEqual(claimed, flying)
        claimed._lease()
        waiting = self.queue_update(config, self.hot, "waiting")
        newest = self.queue_update(config, self.hot, "newest")
        self.assertEqual(flying.state, "pending", "in flight: left alone")
        self.assertEqual(waiting.state, "superseded")
        self.assertEqual(newest.state, "pending")
        self.assertTrue(newest.queued_behind, "behind the row in flight")

    def test_retrying_update_is_superseded_and_the_new_one_goes_now(self):
        config = self.config()
        self.server.script(503)
        failing = self.queue_update(config, self.hot, "failing")
        self.Delivery._process_due()
        self.assertEqual(failing.state, "retrying")
        fresh = self.queue_update(config, self.hot, "fresh")
        self.assertEqual(failing.state, "superseded")
        self.assertEqual(self.Delivery._process_due(), fresh)
        self.assertEqual(self.names_sent(), ["failing", "fresh"])

    def test_other_configurations_and_records_are_not_touched(self):
        config, other_config = self.config(), self.config(name="Other")
        partner = self.make_partners(1)
        mine = self.queue_update(config, self.hot, "mine")
        theirs = self.queue_update(other_config, self.hot, "theirs")
        other_record = self.queue_update(config, partner, "other record")
        self.queue_update(config, self.hot, "mine again")
        self.assertEqual(mine.state, "superseded")
        self.assertEqual(theirs.state, "pending")
        self.assertEqual(other_record.state, "pending")


@tagged("post_install", "-at_install")
class TestLeases(QueueCase):
    def test_claimed_rows_stay_out_of_other_claims_until_their_lease_ends(self):
        """What a worker killed between send and commit leaves behind: leased
        rows, sent again (same keys) once the lease has run out."""
        config = self.make_config()
        rows = config._enqueue(self.make_partners(3), "manual")
        claimed = self.Delivery._claim_batch()
        claimed._lease()
        self.assertEqual(claimed, rows)
        self.assertTrue(all(rows.mapped("leased_until")))
        self.assertFalse(self.Delivery._process_due(), "another worker's rows")
        self.assertEqual(self.Delivery._count_due(), 0)
        rows.write({"leased_until": fields.Datetime.now() - timedelta(seconds=1)})
        self.assertEqual(self.Delivery._process_due(), rows)
        self.assertEqual(
            sorted(r.headers["Idempotency-Key"] for r in self.server.received),
            sorted(rows.mapped("idempotency_key")),
        )
        self.assertFalse(any(rows.mapped("leased_until")))

    def test_cron_wakes_up_when_a_lease_ends(self):
        config = self.make_config()
        row = config._enqueue(self.hot, "manual")
        row._lease()
        cron = self.env.ref("bj_api_sync.ir_cron_send_deliveries")
        Trigger = self.env["ir.cron.trigger"]
        before = Trigger.search([("cron_id", "=", cron.id)])
        self.Delivery._wake_at_lease_end()
        trigger = Trigger.search([("cron_id", "=", cron.id)]) - before
        self.assertEqual(len(trigger), 1)
        self.assertAlmostEqual(
            trigger.call_at,
            row.leased_until + timedelta(seconds=1),
            delta=timedelta(seconds=1),
        )

    def test_unsent_rows_are_handed_back(self):
        """After a retryable failure the rows waiting behind in the same lane
        are not sent: their lease is dropped, no attempt counted."""
        config = self.make_config(max_concurrency=1)
        self.server.script(503)
        rows = config._enqueue(self.make_partners(3), "manual")
        self.assertEqual(self.Delivery._process_batch(), rows[0])
        self.assertEqual(rows.mapped("state"), ["retrying", "pending", "pending"])
        self.assertEqual(rows[1:].mapped("attempt_count"), [0, 0])
        self.assertFalse(any(rows[1:].mapped("leased_until")))
        self.assertEqual(self.Delivery._process_due(), rows[1:])


@tagged("post_install", "-at_install")
class TestQueueStatistics(QueueCase):
    def test_statistics_refreshed_when_the_backlog_swings(self):
        """A bulk change queues hundreds of rows at once: the delivery run
        refreshes the planner's statistics before walking the queue."""
        config = self.make_config()
        self.Delivery._check_statistics()  # whatever was there before
        config._enqueue(self.make_partners(700), "manual")
        self.assertTrue(self.Delivery._check_statistics(), "analyzed")
        self.assertFalse(self.Delivery._check_statistics(), "up to date now")
