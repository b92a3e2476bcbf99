import json
import random
import time
from datetime import timedelta
from unittest.mock import patch

import psycopg2.errors

from odoo import Command, fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from ..models.bj_api_sync_delivery import retry_delay
from .common import BjApiSyncCase, Reply

OUTBOX_LOGGER = "odoo.addons.bj_api_sync.models.bj_api_sync_outbox"


@tagged("post_install", "-at_install")
class TestOutbox(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]
        cls.cron = cls.env.ref("bj_api_sync.ir_cron_send_deliveries")
        cls.partner = cls.env["res.partner"].create({"name": "Queued", "ref": "Q-1"})

    def commit_hooks(self):
        """Run what a commit would run before COMMIT (pre-commit hooks)."""
        self.env.cr.flush()

    def deliveries(self, config):
        return self.Delivery.search([("config_id", "=", config.id)], order="id")

    def make_due(self, deliveries):
        deliveries.write(
            {"next_attempt_at": fields.Datetime.now() - timedelta(seconds=1)}
        )

    # -- enqueue ----------------------------------------------------------

    def test_enqueue_creates_pending_rows_and_wakes_cron(self):
        config = self.make_config(
            lines=[("name", "name", "plain"), ("ref", "ref", "plain")]
        )
        triggers_before = self.env["ir.cron.trigger"].search_count(
            [("cron_id", "=", self.cron.id)]
        )
        rows = config._enqueue(self.partner, "manual")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows.state, "pending")
        self.assertEqual(rows.event, "manual")
        self.assertEqual(rows.res_id, self.partner.id)
        self.assertEqual(json.loads(rows.payload), {"name": "Queued", "ref": "Q-1"})
        self.assertTrue(rows.idempotency_key)
        self.assertFalse(self.server.received, "nothing is sent before commit")
        triggers = self.env["ir.cron.trigger"].search_count(
            [("cron_id", "=", self.cron.id)]
        )
        self.assertEqual(triggers, triggers_before + 1)
        # A second enqueue in the same transaction does not add another wake-up.
        config._enqueue(self.partner, "manual")
        self.assertEqual(
            self.env["ir.cron.trigger"].search_count([("cron_id", "=", self.cron.id)]),
            triggers_before + 1,
        )

    def test_send_due_delivery(self):
        config = self.make_config()
        row = config._enqueue(self.partner, "manual")
        sent = self.Delivery._process_due()
        self.assertEqual(sent, row)
        self.assertEqual(row.state, "done")
        self.assertEqual(row.attempt_count, 1)
        self.assertTrue(row.done_at)
        self.assertEqual(row.last_status_code, 200)
        self.assertEqual(len(row.log_ids), 1)
        self.assertEqual(row.log_ids.idempotency_key, row.idempotency_key)
        self.assertEqual(
            self.server.received[0].headers["Idempotency-Key"], row.idempotency_key
        )
        self.assertFalse(self.Delivery._process_due(), "nothing left")

    def test_queued_get_sends_payload_as_query(self):
        config = self.make_config(
            lines=[("name", "name", "plain"), ("ref", "ref", "plain")],
            http_method_ids=[Command.set(self.method_get.ids)],
        )
        row = config._enqueue(self.partner, "manual")
        self.Delivery._process_due()
        self.assertEqual(row.state, "done")
        got = self.server.received[0]
        self.assertEqual(got.method, "GET")
        self.assertEqual(got.query, [("name", "Queued"), ("ref", "Q-1")])

    def test_rollback_leaves_nothing(self):
        config = self.make_config()
        before = self.Delivery.search_count([])
        with self.assertRaises(RuntimeError), self.env.cr.savepoint():
            config._enqueue(self.partner, "manual")
            self.assertEqual(self.Delivery.search_count([]), before + 1)
            raise RuntimeError("rollback")
        self.assertEqual(self.Delivery.search_count([]), before)
        self.assertFalse(self.Delivery._process_due())
        self.assertFalse(self.server.received)

    def test_domain_is_applied_at_enqueue(self):
        config = self.make_config(filter_domain="[('ref', '=', 'OTHER')]")
        self.assertFalse(config._enqueue(self.partner, "manual"))

    def test_build_error_is_kept_as_dead_row(self):
        config = self.make_config(python_script="result = 1 / 0")
        row = config._enqueue(self.partner, "manual")
        self.assertEqual(row.state, "dead")
        self.assertIn("Python Script failed", row.last_error)
        # Fix the script, retry: the payload is rebuilt and sent.
        config.python_script = False
        row.action_retry()
        self.Delivery._process_due()
        self.assertEqual(row.state, "done")
        self.assertEqual(self.server.received[0].json(), {"name": "Queued"})

    def test_paginated_enqueue_makes_page_rows(self):
        partners = self.make_partners(5)
        config = self.make_config(is_paginated=True, page_size=2)
        rows = config._enqueue(partners, "manual")
        self.assertEqual(len(rows), 3)
        self.assertEqual([len(json.loads(r.payload)) for r in rows], [2, 2, 1])
        self.Delivery._process_due()
        self.assertEqual(set(rows.mapped("state")), {"done"})

    # -- retries ----------------------------------------------------------

    def test_retry_delay_schedule_and_jitter_bounds(self):
        rng = random.Random(7)
        for attempt, base in (
            (1, 30),
            (2, 60),
            (3, 120),
            (9, 7680),
            (11, 6 * 3600),
            (30, 6 * 3600),
        ):
            delays = [retry_delay(attempt, rng=rng) for _i in range(200)]
            self.assertGreaterEqual(min(delays), base * 0.8)
            self.assertLessEqual(max(delays), base * 1.2)
            self.assertGreater(
                max(delays) - min(delays), base * 0.2, "jitter is applied"
            )
        self.assertEqual(retry_delay(1, retry_after=300, rng=rng), 300)
        self.assertEqual(retry_delay(1, retry_after=10**9, rng=rng), 24 * 3600)

    def test_retryable_failure_schedules_retry(self):
        self.server.script(503)
        config = self.make_config()
        row = config._enqueue(self.partner, "manual")
        start = fields.Datetime.now()
        self.Delivery._process_due()
        self.assertEqual(row.state, "retrying")
        self.assertEqual(row.attempt_count, 1)
        self.assertEqual(row.last_status_code, 503)
        wait = (row.next_attempt_at - start).total_seconds()
        self.assertGreaterEqual(wait, 23)
        self.assertLessEqual(wait, 38)
        self.assertFalse(self.Delivery._process_due(), "not due yet")
        self.make_due(row)
        self.Delivery._process_due()
        self.assertEqual(row.state, "done")
        self.assertEqual(row.attempt_count, 2)
        keys = {r.headers["Idempotency-Key"] for r in self.server.received}
        self.assertEqual(keys, {row.idempotency_key})
        self.assertEqual(len(row.log_ids), 2)

    def test_retry_after_sets_next_attempt(self):
        self.server.script(Reply(429, headers={"Retry-After": "600"}))
        config = self.make_config()
        row = config._enqueue(self.partner, "manual")
        start = fields.Datetime.now()
        self.Delivery._process_due()
        self.assertEqual(row.state, "retrying")
        wait = (row.next_attempt_at - start).total_seconds()
        self.assertGreaterEqual(wait, 599)
        self.assertLessEqual(wait, 602)

    def test_max_attempts_then_dead(self):
        self.server.default = Reply(500)
        config = self.make_config(max_attempts=3)
        row = config._enqueue(self.partner, "manual")
        for _i in range(3):
            self.make_due(row)
            self.Delivery._process_due()
        self.assertEqual(row.state, "dead")
        self.assertEqual(row.attempt_count, 3)
        self.assertFalse(row.next_attempt_at)

    def test_permanent_failure_dead_then_retry(self):
        self.server.script(400)
        config = self.make_config()
        row = config._enqueue(self.partner, "manual")
        self.Delivery._process_due()
        self.assertEqual(row.state, "dead")
        self.assertEqual(row.attempt_count, 1)
        self.assertEqual(len(self.server.received), 1)
        row.action_retry()
        self.assertEqual(row.state, "pending")
        self.assertEqual(row.attempt_count, 0)
        self.Delivery._process_due()
        self.assertEqual(row.state, "done")
        self.assertEqual(
            {r.headers["Idempotency-Key"] for r in self.server.received},
            {row.idempotency_key},
        )

    def test_cancel_and_list_actions(self):
        config = self.make_config()
        rows = config._enqueue(self.make_partners(3), "manual")
        rows[:2].action_cancel()
        self.assertEqual(rows.mapped("state"), ["cancelled", "cancelled", "pending"])
        self.Delivery._process_due()
        self.assertEqual(len(self.server.received), 1)
        rows.action_retry()  # the list action, on several rows
        self.assertEqual(set(rows[:2].mapped("state")), {"pending"})
        self.Delivery._process_due()
        self.assertEqual(set(rows.mapped("state")), {"done"})
        with self.assertRaises(UserError) as caught:
            rows.action_cancel()
        self.assertIn("Only waiting or dead deliveries", str(caught.exception))
        list_action = self.env.ref("bj_api_sync.bj_api_sync_delivery_action_retry")
        self.assertEqual(list_action.binding_model_id.model, "bj.api.sync.delivery")

    def test_concurrent_batch_respects_limit_and_order(self):
        self.server.default = Reply(200, delay=0.4)
        config = self.make_config(max_concurrency=4)
        partners = self.make_partners(8)
        rows = config._enqueue(partners, "manual")
        again = config._enqueue(partners[0], "manual")
        start = time.monotonic()
        first_batch = self.Delivery._process_batch()
        elapsed = time.monotonic() - start
        self.assertEqual(first_batch, rows, "the second row of a record waits")
        self.assertEqual(
            self.server.max_in_flight, 4, "max_concurrency requests at once"
        )
        self.assertGreater(elapsed, 0.75, "8 requests in 4 lanes take two rounds")
        self.assertLess(elapsed, 1.6)
        self.assertEqual(set(first_batch.mapped("state")), {"done"})
        rest = self.Delivery._process_due()
        self.assertEqual(rest, again)
        keys = [r.headers["Idempotency-Key"] for r in self.server.received]
        self.assertEqual(len(set(keys)), 9)
        self.assertEqual(keys[-1], again.idempotency_key)

    def test_each_record_queues_apart(self):
        """Per-record order, not per-configuration order: the second row of a
        record waits for the first, the rows of other records do not."""
        config = self.make_config(max_concurrency=1)
        p1, p2, p3 = self.make_partners(3)
        rows = self.Delivery
        for partner, name in (
            (p1, "1a"),
            (p2, "2a"),
            (p1, "1b"),
            (p2, "2b"),
            (p3, "3a"),
        ):
            partner.name = name
            rows |= config._enqueue(partner, "manual")
        first = self.Delivery._process_batch()
        self.assertEqual(first, rows[0] | rows[1] | rows[4], "1b and 2b wait")
        self.assertEqual(rows[2:4].mapped("state"), ["pending", "pending"])
        self.Delivery._process_due()
        names = [r.json()["name"] for r in self.server.received]
        self.assertEqual(names, ["1a", "2a", "3a", "1b", "2b"])

    def test_row_behind_a_later_retry_does_not_block_others(self):
        config = self.make_config()
        p1, p2 = self.make_partners(2)
        self.server.script(503)
        first = config._enqueue(p1, "manual")
        self.Delivery._process_due()
        self.assertEqual(first.state, "retrying")
        behind = config._enqueue(p1, "manual")
        other = config._enqueue(p2, "manual")
        self.assertEqual(self.Delivery._count_due(), 1)
        self.assertEqual(self.Delivery._process_due(), other)
        self.assertEqual(behind.state, "pending")

    def test_per_record_order(self):
        config = self.make_config()
        self.server.script(503)
        first = config._enqueue(self.partner, "manual")
        self.Delivery._process_due()
        self.assertEqual(first.state, "retrying")
        self.partner.name = "Queued v2"
        second = config._enqueue(self.partner, "manual")
        other = config._enqueue(self.make_partners(1), "manual")
        sent = self.Delivery._process_due()
        self.assertEqual(sent, other, "the newer row of the same record waits")
        self.assertEqual(second.state, "pending")
        self.make_due(first)
        sent = self.Delivery._process_due()
        self.assertEqual(sent, first | second)
        names = [r.json()["name"] for r in self.server.received]
        self.assertEqual(names, ["Queued", "Partner 0000", "Queued", "Queued v2"])

    # -- create / write / delete events ------------------------------------

    def automate(self, config, *triggers):
        wizard = self.env["bj.api.sync.automate"].create(
            {
                "config_id": config.id,
                "on_create": "on_create" in triggers,
                "on_create_or_write": "on_create_or_write" in triggers,
                "on_unlink": "on_unlink" in triggers,
            }
        )
        wizard.action_create_automations()
        return config.automation_ids

    def test_automate_button_creates_rules(self):
        config = self.make_config(filter_domain="[('ref', '=', 'AUTO')]")
        automations = self.automate(config, "on_create", "on_unlink")
        self.assertEqual(
            sorted(automations.mapped("trigger")), ["on_create", "on_unlink"]
        )
        self.assertEqual(config.automation_count, 2)
        action = automations.action_server_ids
        self.assertEqual(set(action.mapped("state")), {"bj_api_sync"})
        self.assertEqual(action.bj_api_sync_config_id, config)
        # Running it twice does not duplicate rules.
        self.automate(config, "on_create")
        self.assertEqual(config.automation_count, 2)

    def test_create_then_writes_give_one_delivery_with_final_values(self):
        config = self.make_config(
            filter_domain="[('ref', '=', 'AUTO')]",
            lines=[("name", "name", "plain"), ("email", "email", "plain")],
        )
        self.automate(config, "on_create_or_write")
        partner = self.env["res.partner"].create({"name": "v1", "ref": "AUTO"})
        partner.name = "v2"
        partner.write({"name": "v3", "email": "final@example.com"})
        partner.email = "final2@example.com"
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows.event, "create")
        self.assertEqual(
            json.loads(rows.payload), {"name": "v3", "email": "final2@example.com"}
        )
        # A later transaction's update is a write event.
        self.env.cr.postcommit.data.clear()  # what COMMIT would do
        # ...and a later transaction has a later timestamp than the creation.
        self.env.cr.execute(
            "UPDATE res_partner SET create_date = create_date - interval '1 minute' "
            "WHERE id = %s",
            (partner.id,),
        )
        partner.invalidate_recordset(["create_date"])
        partner.name = "v4"
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(rows.mapped("event"), ["create", "write"])

    def test_automation_trigger_fields_are_respected(self):
        config = self.make_config(filter_domain="[('ref', '=', 'AUTO')]")
        automation = self.automate(config, "on_create_or_write")
        email_field = self.env["ir.model.fields"]._get("res.partner", "email")
        automation.trigger_field_ids = [Command.set(email_field.ids)]
        partner = self.env["res.partner"].create({"name": "t1", "ref": "AUTO"})
        self.commit_hooks()
        self.assertEqual(len(self.deliveries(config)), 1, "a creation always counts")
        self.env.cr.postcommit.data.clear()
        partner.name = "t2"  # not a trigger field
        self.commit_hooks()
        self.assertEqual(len(self.deliveries(config)), 1)
        partner.email = "t@example.com"
        self.commit_hooks()
        self.assertEqual(len(self.deliveries(config)), 2)

    def test_automation_with_other_actions_runs_per_record(self):
        config = self.make_config(filter_domain="[('ref', '=', 'AUTO')]")
        automation = self.automate(config, "on_create")
        automation.action_server_ids = [
            Command.create(
                {
                    "name": "Tag it",
                    "model_id": self.partner_model.id,
                    "state": "code",
                    "code": "record.write({'comment': 'tagged'})",
                    "usage": "base_automation",
                }
            )
        ]
        partner = self.env["res.partner"].create({"name": "m", "ref": "AUTO"})
        self.commit_hooks()
        self.assertEqual(str(partner.comment), "<p>tagged</p>")
        rows = self.deliveries(config)
        self.assertEqual(rows.mapped("event"), ["create"])

    def test_savepoint_flush_still_coalesces(self):
        config = self.make_config(filter_domain="[('ref', '=', 'AUTO')]")
        self.automate(config, "on_create_or_write")
        partner = self.env["res.partner"].create({"name": "s1", "ref": "AUTO"})
        with self.env.cr.savepoint():  # flushes and runs the pre-commit hook
            partner.name = "s2"
        partner.name = "s3"
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 1)
        self.assertEqual(json.loads(rows.payload), {"name": "s3"})

    def test_delete_sends_last_values(self):
        config = self.make_config(
            filter_domain="[('ref', '=', 'AUTO')]",
            lines=[("id", "id", "plain"), ("name", "name", "plain")],
        )
        self.automate(config, "on_create", "on_unlink")
        partner = self.env["res.partner"].create({"name": "Gone", "ref": "AUTO"})
        partner_id = partner.id
        partner.name = "Gone for good"
        partner.unlink()
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(rows.mapped("event"), ["unlink"])
        self.assertEqual(
            json.loads(rows.payload), {"id": partner_id, "name": "Gone for good"}
        )
        self.Delivery._process_due()
        self.assertEqual(rows.state, "done")
        self.assertEqual(self.server.received[0].json()["id"], partner_id)

    def test_immediate_mode_sends_in_trigger(self):
        config = self.make_config(
            filter_domain="[('ref', '=', 'AUTO')]", delivery_mode="immediate"
        )
        self.automate(config, "on_create")
        self.env["res.partner"].create({"name": "Now", "ref": "AUTO"})
        self.assertEqual(len(self.server.received), 1)
        self.assertFalse(self.deliveries(config))

    def test_immediate_rule_sends_a_change_once(self):
        """Odoo runs an on-update rule again for the stored computed fields
        recomputed at flush: the same request goes once; a real change of a
        mapped field in the same transaction still goes; Send Now is never
        held back."""
        config = self.make_config(
            lines=[("name", "name", "plain"), ("ref", "ref", "plain")],
            filter_domain="[('ref', '=like', 'ONCE%')]",
            delivery_mode="immediate",
        )
        self.automate(config, "on_create_or_write")
        partner = self.env["res.partner"].create({"name": "Once", "ref": "ONCE"})
        partner.write({"email": "once@example.com"})  # no mapped field
        self.env.flush_all()
        bodies = [received.json() for received in self.server.received]
        self.assertEqual(bodies, [{"name": "Once", "ref": "ONCE"}])
        partner.name = "Twice"
        self.env.flush_all()
        bodies = [received.json() for received in self.server.received]
        self.assertEqual(bodies[-1], {"name": "Twice", "ref": "ONCE"})
        self.assertEqual(len(bodies), 2)
        config._make_outbound_http_request(partner)
        self.assertEqual(len(self.server.received), 3, "an explicit send always goes")

    def test_send_now_queued(self):
        config = self.make_config(filter_domain="[('ref', '=', 'Q-1')]")
        action = config.action_send_now()
        self.assertIn("1 deliveries queued", action["params"]["message"])
        self.assertFalse(self.server.received)
        self.assertEqual(len(self.deliveries(config)), 1)
        self.assertEqual(config.delivery_count, 1)
        self.assertIn("1 pending", config.delivery_stats)

    # -- server action, scheduled sync, action menu ------------------------

    def test_server_action_with_and_without_records(self):
        config = self.make_config(filter_domain="[('ref', 'in', ('SA', 'Q-1'))]")
        action = self.env["ir.actions.server"].create(
            {
                "name": "Sync",
                "model_id": self.partner_model.id,
                "state": "bj_api_sync",
                "bj_api_sync_config_id": config.id,
            }
        )
        sa = self.make_partners(3, ref="SA")
        action.with_context(active_model="res.partner", active_ids=sa[:1].ids).run()
        rows = self.deliveries(config)
        self.assertEqual(rows.mapped("res_id"), sa[:1].ids)
        self.assertEqual(rows.event, "manual")
        # Without records: only as a scheduled action, run by the cron runner.
        with self.assertRaises(UserError):
            action.with_context(active_model=False, active_ids=False).run()
        cron = self.env["ir.cron"].create(
            {
                "name": "Sync all",
                "ir_actions_server_id": action.id,
                "interval_number": 1,
                "interval_type": "days",
                "user_id": self.env.ref("base.user_admin").id,
            }
        )
        self.run_as_cron(cron)
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 5, "1 + every matching record (3 SA + Q-1)")
        self.assertEqual(set(rows[1:].mapped("event")), {"cron"})

    def test_server_action_model_mismatch_refused(self):
        config = self.make_config()
        with self.assertRaises(ValidationError) as caught:
            self.env["ir.actions.server"].create(
                {
                    "name": "Wrong",
                    "model_id": self.env["ir.model"]._get("res.users").id,
                    "state": "bj_api_sync",
                    "bj_api_sync_config_id": config.id,
                }
            )
        self.assertIn("maps res.partner", str(caught.exception))

    def test_scheduled_sync_watermark(self):
        partners = self.make_partners(3, ref="CRON")
        config = self.make_config(
            filter_domain="[('ref', '=', 'CRON')]",
            sync_interval_number=2,
            sync_interval_type="hours",
            sync_mode="changed",
        )
        cron = config.cron_id
        self.assertTrue(cron.active)
        self.assertEqual(cron.interval_number, 2)
        self.assertEqual(cron.state, "bj_api_sync")
        self.assertEqual(cron.model_id, self.partner_model)
        self.run_as_cron(cron)
        self.assertEqual(len(self.deliveries(config)), 3)
        self.assertTrue(config.last_sync_at)
        # Only records written after the watermark go next time.
        config.last_sync_at = fields.Datetime.now() - timedelta(minutes=5)
        self.env.cr.execute(
            "UPDATE res_partner SET write_date = %s WHERE id IN %s",
            (fields.Datetime.now() - timedelta(hours=1), tuple(partners[1:].ids)),
        )
        self.env.invalidate_all()
        self.run_as_cron(cron)
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 4)
        self.assertEqual(rows[-1].res_id, partners[0].id)
        # Turning the interval off deactivates the scheduled action.
        config.sync_interval_number = 0
        self.assertFalse(cron.active)

    def test_scheduled_sync_watermark_not_advanced_on_failure(self):
        self.make_partners(2, ref="CRONX")
        config = self.make_config(
            filter_domain="[('ref', '=', 'CRONX')]",
            sync_interval_number=1,
            delivery_mode="immediate",
        )
        self.server.script(500)
        self.run_as_cron(config.cron_id)
        self.assertFalse(config.last_sync_at)
        self.run_as_cron(config.cron_id)
        self.assertTrue(config.last_sync_at)

    def test_action_menu_binding(self):
        config = self.make_config(name="CRM", binding_model=True)
        action = config.binding_action_id
        self.assertEqual(action.name, "Send to CRM")
        self.assertEqual(action.binding_model_id, self.partner_model)
        action.with_context(
            active_model="res.partner", active_ids=self.partner.ids
        ).run()
        self.assertEqual(self.deliveries(config).res_id, self.partner.id)
        config.binding_model = False
        self.assertFalse(action.binding_model_id)

    # -- circuit breaker -----------------------------------------------------

    def test_circuit_breaker_pauses_probes_and_resumes(self):
        self.server.default = Reply(503)
        config = self.make_config(
            circuit_threshold=3, max_attempts=50, max_concurrency=1
        )
        partners = self.make_partners(4)
        rows = config._enqueue(partners, "manual")
        with self.assertLogs(OUTBOX_LOGGER, "WARNING") as logged:
            self.Delivery._process_due()
        self.assertIn(
            "paused: 3 consecutive delivery attempts failed", logged.output[0]
        )
        self.assertEqual(config.sync_state, "paused")
        self.assertEqual(len(self.server.received), 3, "the 4th row waits")
        message = config.message_ids.filtered(lambda m: "paused" in (m.subject or ""))
        self.assertTrue(message, "admins are notified")
        self.assertTrue(message.partner_ids)
        # Paused: nothing goes even when rows are due...
        self.make_due(rows)
        self.assertFalse(self.Delivery._process_due())
        # ...until the probe time comes: one probe, failing, doubles the cooldown.
        config.next_probe_at = fields.Datetime.now() - timedelta(seconds=1)
        attempts_before = rows[0].attempt_count
        sent = self.Delivery._process_due()
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent.attempt_count, attempts_before, "probes use no attempt")
        self.assertEqual(config.sync_state, "paused")
        self.assertEqual(config.probe_interval, 120)
        # The receiver is back: the next probe succeeds and resumes everything in order.
        self.server.default = Reply(200)
        self.server.received.clear()
        config.next_probe_at = fields.Datetime.now() - timedelta(seconds=1)
        self.Delivery._process_due()
        self.assertEqual(config.sync_state, "active")
        self.assertEqual(set(rows.mapped("state")), {"done"})
        names = [r.json()["name"] for r in self.server.received]
        self.assertEqual(names, sorted(names))
        self.assertTrue(
            config.message_ids.filtered(lambda m: "resumed" in (m.subject or ""))
        )

    def test_manual_pause_and_resume(self):
        config = self.make_config()
        with self.assertLogs(OUTBOX_LOGGER, "WARNING"):
            config.action_pause()
        self.assertEqual(config.sync_state, "paused")
        rows = config._enqueue(self.partner, "manual")
        self.assertFalse(self.Delivery._process_due())
        config.action_resume()
        self.assertEqual(config.sync_state, "active")
        self.Delivery._process_due()
        self.assertEqual(rows.state, "done")


@tagged("post_install", "-at_install")
class TestDrainLoop(BjApiSyncCase):
    """The delivery cron's loop: a claim undone by a conflict with another
    worker is rolled back and the loop goes on; claims and results are
    committed as they happen (savepoints stand for the cron's commits, which a
    test may not make)."""

    def fake_cron(self):
        """``(commit, rollback, commits)`` standing for the cron's."""
        savepoints = [self.env.cr.savepoint()]
        commits = []

        def commit(processed=0, remaining=None):
            commits.append((processed, remaining))
            savepoints.append(self.env.cr.savepoint())
            return 60.0

        def rollback():
            savepoints[-1].rollback()

        return commit, rollback, commits

    def test_conflict_rolled_back_and_loop_goes_on(self):
        config = self.make_config()
        config._enqueue(self.make_partners(3), "manual")
        Delivery = self.env["bj.api.sync.delivery"]
        model_class = type(Delivery)
        original = model_class._claim_batch
        calls = []

        def flaky(self, limit=64, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                # What a concurrent update of a claimed row does at the database.
                self.env.cr.execute("SELECT 1")
                raise psycopg2.errors.SerializationFailure("concurrent update")
            return original(self, min(limit, 2), **kwargs)

        commit, rollback, commits = self.fake_cron()
        rollbacks = []

        def counted_rollback():
            rollbacks.append(len(self.server.received))
            rollback()

        with patch.object(model_class, "_claim_batch", flaky):
            sent = Delivery._drain(None, commit=commit, rollback=counted_rollback)
        self.assertEqual(sent, 3)
        self.assertEqual(rollbacks[0], 0, "the conflicting claim undone at once")
        self.assertGreater(len(calls), 2, "and claimed again")
        self.assertEqual(commits[0], (0, 3), "the run starts with the count due")
        self.assertEqual(sum(processed for processed, _r in commits), 3)
        self.assertEqual(commits[-1][1], 0)
        self.assertEqual(set(config.delivery_ids.mapped("state")), {"done"})
        self.assertEqual(len(self.server.received), 3)

    def test_persistent_conflicts_stop_the_run(self):
        Delivery = self.env["bj.api.sync.delivery"]
        config = self.make_config()
        config._enqueue(self.make_partners(1), "manual")
        rollbacks = []

        def always_conflicting(self, limit=64, **kwargs):
            raise psycopg2.errors.LockNotAvailable("locked")

        with patch.object(type(Delivery), "_claim_batch", always_conflicting):
            sent = Delivery._drain(
                None,
                commit=lambda *a, **k: 60.0,
                rollback=lambda: rollbacks.append(1),
            )
        self.assertEqual(sent, 0)
        self.assertEqual(len(rollbacks), 6)
        self.assertEqual(config.delivery_ids.state, "pending")

    def test_claims_and_results_are_committed_as_they_happen(self):
        """The claim is committed (rows leased) before any request goes, and
        each result right after it came: a crash sends again only the
        requests in flight."""
        self.server.default = Reply(200, delay=0.2)
        config = self.make_config(max_concurrency=1)
        rows = config._enqueue(self.make_partners(3), "manual")
        Delivery = self.env["bj.api.sync.delivery"]
        commit, rollback, commits = self.fake_cron()
        seen = []

        def watching_commit(processed=0, remaining=None):
            self.env.flush_all()
            rows.invalidate_recordset()
            seen.append(
                (
                    len(self.server.received),
                    rows.filtered(lambda r: r.state == "done").ids,
                    rows.filtered("leased_until").ids,
                )
            )
            return commit(processed, remaining)

        sent = Delivery._drain(None, commit=watching_commit, rollback=rollback)
        self.assertEqual(sent, 3)
        # The run's start, then the claim: leased, nothing sent yet.
        self.assertEqual(seen[1], (0, [], rows.ids))
        for received, done, _leased in seen[2:]:
            # The next request may already be on its way (max_concurrency 1).
            self.assertIn(received - len(done), (0, 1), "each result stored at once")
        self.assertEqual([len(done) for _r, done, _l in seen[2:]], [1, 2, 3])
        self.assertFalse(rows.filtered("leased_until"))
