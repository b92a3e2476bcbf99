import json
from datetime import timedelta
from unittest.mock import patch

from odoo import Command, fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, new_test_user, tagged

from ..models import bj_api_log
from .common import BjApiSyncCase


@tagged("post_install", "-at_install")
class TestActions(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.partners = cls.env["res.partner"].create(
            [
                {"name": "Act One", "ref": "ACT-TEST", "email": "one@example.com"},
                {"name": "Act Two", "ref": "ACT-TEST", "email": "two@example.com"},
            ]
        )

    def make_action_config(self, **values):
        values.setdefault("delivery_mode", "immediate")
        return self.make_config(
            filter_domain="[('ref', '=', 'ACT-TEST')]",
            lines=[("name", "name", "plain"), ("email", "email", "plain")],
            **values,
        )

    def test_send_now_sends_matching_records(self):
        config = self.make_action_config()
        action = config.action_send_now()
        self.assertEqual(action["params"]["type"], "success")
        self.assertIn("2 succeeded", action["params"]["message"])
        names = sorted(r.json()["name"] for r in self.server.received)
        self.assertEqual(names, ["Act One", "Act Two"])
        self.assertEqual(config.log_count, 2)

    def test_send_now_reports_failures(self):
        self.server.script(500, 500)
        config = self.make_action_config()
        action = config.action_send_now()
        self.assertEqual(action["params"]["type"], "warning")
        self.assertIn("2 failed", action["params"]["message"])

    def test_send_now_without_matching_records(self):
        config = self.make_config(filter_domain="[('ref', '=', 'NOTHING-MATCHES')]")
        with self.assertRaises(UserError) as caught:
            config.action_send_now()
        self.assertIn("No res.partner record matches", str(caught.exception))

    def test_preview_sends_nothing_and_masks_secrets(self):
        config = self.make_action_config(
            auth_type="bearer",
            bearer_token="preview-secret-token",
            is_paginated=True,
            page_size=5,
        )
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertFalse(self.server.received)
        self.assertEqual(preview.record_count, 2)
        self.assertEqual(preview.request_method, "POST")
        self.assertEqual(preview.request_url, config.request_url)
        body = json.loads(preview.request_body)
        self.assertEqual(sorted(item["name"] for item in body), ["Act One", "Act Two"])
        headers = json.loads(preview.request_headers)
        self.assertEqual(headers["Authorization"], "***")
        self.assertNotIn("preview-secret-token", preview.request_headers)

    def test_preview_with_placeholders_and_get(self):
        config = self.make_action_config(
            request_url=self.server.url("/p/{email}"),
            http_method_ids=[Command.set(self.method_get.ids)],
        )
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertIn("/p/one%40example.com?name=Act+One", preview.request_url)
        self.assertFalse(preview.request_body)

    def test_preview_shows_payload_error(self):
        config = self.make_action_config(python_script="result = 1 / 0")
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertIn("Python Script failed", preview.error_message)

    def test_logs_smart_button(self):
        config = self.make_action_config()
        config._make_outbound_http_request(self.partners)
        action = config.action_view_logs()
        logs = self.Log.search(action["domain"])
        self.assertEqual(len(logs), 2)
        self.assertEqual(logs.config_id, config)

    def test_autovacuum_retention(self):
        config = self.make_action_config()
        self.server.script(200, 500)
        logs = config._make_outbound_http_request(self.partners)
        success = logs.filtered(lambda log: log.state == "success")
        error = logs - success
        now = fields.Datetime.now()

        def age(log, days):
            self.env.cr.execute(
                "UPDATE bj_api_log SET create_date = %s WHERE id = %s",
                (now - timedelta(days=days), log.id),
            )
            log.invalidate_recordset(["create_date"])

        age(success, 31)
        age(error, 31)
        self.Log._gc_logs()
        self.assertFalse(success.exists(), "success logs go after 30 days")
        self.assertTrue(error.exists(), "error logs stay 90 days")
        age(error, 91)
        self.Log._gc_logs()
        self.assertFalse(error.exists())

    def test_autovacuum_deletes_by_batches(self):
        config = self.make_action_config()
        old = fields.Datetime.now() - timedelta(days=40)
        self.Log.create(
            [{"config_id": config.id, "state": "success"} for _i in range(5)]
        )
        self.env.cr.execute(
            "UPDATE bj_api_log SET create_date = %s WHERE config_id = %s",
            (old, config.id),
        )
        self.env.invalidate_all()
        with patch.object(bj_api_log, "GC_UNLINK_LIMIT", 2):
            self.assertEqual(self.Log._gc_logs(), (2, True))
            self.assertEqual(self.Log._gc_logs(), (2, True))
            self.assertEqual(self.Log._gc_logs(), (1, False))
        self.assertFalse(self.Log.search([("config_id", "=", config.id)]))

    def test_autovacuum_finished_deliveries(self):
        config = self.make_config()
        config._enqueue(self.partners, "manual")
        done, waiting = config.delivery_ids.sorted("id")
        dead = config._create_deliveries(self.partners[:1], "manual")
        done.state = "done"
        dead.state = "dead"
        Delivery = self.env["bj.api.sync.delivery"]

        def age(rows, days):
            self.env.flush_all()
            self.env.cr.execute(
                "UPDATE bj_api_sync_delivery SET write_date = %s WHERE id IN %s",
                (fields.Datetime.now() - timedelta(days=days), tuple(rows.ids)),
            )
            rows.invalidate_recordset()

        age(done | waiting | dead, 31)
        self.assertEqual(Delivery._gc_deliveries(), (1, False))
        self.assertFalse(done.exists(), "done rows follow the success retention")
        self.assertTrue(dead.exists(), "dead rows follow the error retention")
        age(dead | waiting, 400)
        Delivery._gc_deliveries()
        self.assertFalse(dead.exists())
        self.assertTrue(waiting.exists(), "waiting rows are never deleted")

    def test_autovacuum_uses_parameters(self):
        self.env["ir.config_parameter"].set_param("bj_api_sync.log_retention_days", "2")
        config = self.make_action_config()
        logs = config._make_outbound_http_request(self.partners[0])
        self.env.cr.execute(
            "UPDATE bj_api_log SET create_date = %s WHERE id = %s",
            (fields.Datetime.now() - timedelta(days=3), logs.id),
        )
        self.Log._gc_logs()
        self.assertFalse(logs.exists())

    def test_form_and_copy(self):
        with Form(self.Config) as form:
            form.name = "Form config"
            form.model_id = self.partner_model
            form.request_url = self.server.url()
            form.http_method_ids.add(self.method_post)
            with form.line_ids.new() as line:
                line.field_path = "name"
                line.api_key = "name"
        config = form.save()
        self.assertEqual(config.http_method, "POST")
        config.sudo().bearer_token = "copy-me-not"
        copy = config.copy()
        self.assertEqual(copy.name, "Form config (copy)")
        self.assertEqual(len(copy.line_ids), 1)
        self.assertFalse(copy.sudo().bearer_token)


@tagged("post_install", "-at_install")
class TestAccess(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.config = cls.make_config(auth_type="bearer", bearer_token="access-secret")
        cls.bj_user = new_test_user(
            cls.env,
            login="bj_user",
            groups="base.group_user,bj_api_sync.group_bj_api_user",
        )
        cls.bj_manager = new_test_user(
            cls.env,
            login="bj_manager",
            groups="base.group_user,bj_api_sync.group_bj_api_manager",
        )
        cls.internal = new_test_user(
            cls.env, login="bj_internal", groups="base.group_user"
        )

    def test_user_reads_but_not_secrets(self):
        config = self.config.with_user(self.bj_user)
        self.assertEqual(config.name, "Test config")
        with self.assertRaises(AccessError):
            config.bearer_token  # noqa: B018
        with self.assertRaises(AccessError):
            config.write({"name": "changed"})
        self.assertNotIn("bearer_token", config.fields_get(attributes=["type"]).keys())

    def test_internal_user_reads_nothing(self):
        with self.assertRaises(AccessError):
            self.config.with_user(self.internal).read(["name"])
        with self.assertRaises(AccessError):
            self.Log.with_user(self.internal).search([])

    def test_manager_reads_and_writes(self):
        config = self.config.with_user(self.bj_manager)
        self.assertEqual(config.bearer_token, "access-secret")
        config.write({"bearer_token": "new-secret", "name": "Renamed"})
        self.assertEqual(config.name, "Renamed")

    def test_settings_admin_is_manager(self):
        admin = self.env.ref("base.user_admin")
        self.assertTrue(admin.has_group("bj_api_sync.group_bj_api_manager"))

    def test_user_can_send_and_logs_hide_secret(self):
        """Sending as a plain BJ user works and uses the secret it cannot read."""
        logs = self.config.with_user(self.bj_user)._make_outbound_http_request(
            self.env.user.partner_id
        )
        self.assertEqual(logs.state, "success")
        self.assertEqual(
            self.server.received[0].headers["Authorization"], "Bearer access-secret"
        )
        self.assertNotIn("access-secret", logs.with_user(self.bj_user).request_headers)

    def test_secrets_not_tracked(self):
        self.config.write(
            {"bearer_token": "tracked-secret?", "request_url": self.server.url("/new")}
        )
        self.env.flush_all()
        self.env.cr.precommit.run()
        messages = self.config.message_ids
        tracked = messages.sudo().tracking_value_ids
        self.assertTrue(tracked, "URL change is tracked")
        for value in tracked:
            self.assertNotIn("tracked-secret", value.old_value_char or "")
            self.assertNotIn("tracked-secret", value.new_value_char or "")
        self.assertNotIn("bearer_token", tracked.field_id.mapped("name"))
