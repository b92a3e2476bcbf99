"""One bad row, value or receiver never stalls the others (items 5-11 of the
trust-boundary issue), against real servers on 127.0.0.1."""

import gzip
import json
import logging
import time
import zlib

from odoo import Command
from odoo.exceptions import UserError, ValidationError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import tagged

from .. import uninstall_hook
from .common import BjApiSyncCase, Reply, UsersMixin
from .test_bad_input import assert_refused_by_database

HOSTS_PARAM = "bj_api_sync.allowed_hosts"


def http_answer(body=b"{}", headers=(), status=b"200 OK"):
    head = [b"HTTP/1.1 " + status, b"Content-Length: %d" % len(body)]
    head += list(headers)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@tagged("post_install", "-at_install")
class TestHostAllowList(BjApiSyncCase):
    """Item 5: the allow-list checks the host requests really connects to."""

    def setUp(self):
        super().setUp()
        self.env["ir.config_parameter"].set_param(HOSTS_PARAM, "allowed.example.com")

    def tricky_url(self):
        return f"http://127.0.0.1:{self.server.port}\\@allowed.example.com/ok"

    def test_backslash_userinfo_refused_at_save(self):
        with self.assertRaises(ValidationError):
            self.make_config(request_url=self.tricky_url())
        with self.assertRaises(ValidationError):
            self.make_config(
                request_url="https://allowed.example.com/ok",
                auth_type="oauth2",
                oauth2_token_url=self.tricky_url(),
            )

    def test_refused_again_just_before_sending(self):
        config = self.make_config(
            request_url="https://allowed.example.com/ok", delivery_mode="immediate"
        )
        # Written behind the constraints' back (an older row, a raw SQL import).
        self.env.cr.execute(
            "UPDATE bj_api_sync_config SET request_url = %s WHERE id = %s",
            (self.tricky_url(), config.id),
        )
        config.invalidate_recordset()
        partner = self.env["res.partner"].create({"name": "SSRF"})
        [log] = config._make_outbound_http_request(partner)
        self.assertEqual(log.state, "error")
        self.assertIn("allowed hosts", log.error_message)
        self.assertFalse(self.server.received)

    def test_placeholder_cannot_smuggle_a_host(self):
        self.env["ir.config_parameter"].set_param(HOSTS_PARAM, "127.0.0.1")
        config = self.make_config(
            request_url=self.server.url("/p/{ref}"), delivery_mode="immediate"
        )
        partner = self.env["res.partner"].create({"name": "X", "ref": "@evil.test/"})
        [log] = config._make_outbound_http_request(partner)
        self.assertEqual(log.state, "success")
        self.assertEqual(self.server.received[0].path, "/p/%40evil.test%2F")

    def test_preview_on_refused_host_is_a_user_error(self):
        config = self.make_config(request_url="https://allowed.example.com/ok")
        self.env.cr.execute(
            "UPDATE bj_api_sync_config SET request_url = %s WHERE id = %s",
            ("https://elsewhere.example.com/ok", config.id),
        )
        config.invalidate_recordset()
        self.env["res.partner"].create({"name": "Preview me"})
        with self.assertRaises(UserError) as caught:
            config.action_preview_payload()
        self.assertIn("elsewhere.example.com", str(caught.exception))


@tagged("post_install", "-at_install")
class TestPoisonRows(BjApiSyncCase):
    """Item 6: a delivery that raises is marked; the batch goes on."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token_server = cls.start_server()
        cls.partners = cls.make_partners(3)

    def test_absurd_token_lifetime_is_clamped(self):
        self.token_server.default = Reply(
            200, body=json.dumps({"access_token": "tok-1", "expires_in": 1e20})
        )
        config = self.make_config(
            auth_type="oauth2",
            oauth2_token_url=self.token_server.url("/token"),
            oauth2_client_id="c",
            oauth2_client_secret="s3cret-value",
        )
        config._enqueue(self.partners, "manual")
        sent = self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(set(sent.mapped("state")), {"done"})
        self.assertEqual(len(self.server.received), 3)
        self.assertGreater(config.oauth2_token_expires_at.year, 2025)

    def test_one_broken_configuration_does_not_stop_the_healthy_one(self):
        poison = self.make_config(name="Poison", sign_requests=True)
        healthy = self.make_config(name="Healthy")
        poison._enqueue(self.partners, "manual")
        healthy._enqueue(self.partners, "manual")
        # A secret that is not base64 makes signing raise for every row.
        self.env.cr.execute(
            "UPDATE bj_api_sync_config SET signing_secret = 'whsec_%%%%' WHERE id = %s",
            (poison.id,),
        )
        poison.invalidate_recordset()
        Delivery = self.env["bj.api.sync.delivery"]
        Delivery._process_due()
        self.assertEqual(set(healthy.delivery_ids.mapped("state")), {"done"})
        self.assertEqual(len(self.server.received), 3)
        for row in poison.delivery_ids:
            self.assertEqual(row.state, "retrying")
            self.assertIn("Internal error while sending", row.last_error)
            self.assertGreater(row.next_attempt_at, row.create_date)
        # Next runs find nothing due: the broken rows wait for their backoff.
        self.assertFalse(Delivery._process_due())

    def test_huge_grace_clamped_at_send(self):
        config = self.make_config(sign_requests=True)
        config.action_generate_signing_secret()
        config.action_generate_signing_secret()
        self.env.cr.execute(
            "ALTER TABLE bj_api_sync_config "
            "DROP CONSTRAINT bj_api_sync_config_signing_grace_range; "
            "UPDATE bj_api_sync_config SET signing_grace_hours = %s WHERE id = %s",
            (2**31 - 1, config.id),
        )
        config.invalidate_recordset()
        config._enqueue(self.partners[:1], "manual")
        [row] = self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "done")
        signature = self.server.received[0].headers["webhook-signature"]
        self.assertEqual(len(signature.split(" ")), 2)

    def test_unparsable_stored_payload_is_marked(self):
        config = self.make_config(http_method_ids=[Command.set(self.method_get.ids)])
        config._enqueue(self.partners[:2], "manual")
        # A GET parses its stored payload for the query string: not JSON here.
        config.delivery_ids.write({"payload": "{not json"})
        sent = self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(len(sent), 2)
        self.assertEqual(set(sent.mapped("state")), {"retrying"})
        self.assertFalse(self.server.received)


@tagged("post_install", "-at_install")
class TestSlowAndHostileReceivers(BjApiSyncCase):
    """Items 7 and 8: a dripping sender and a decompression bomb."""

    def send_one(self, **values):
        config = self.make_config(delivery_mode="immediate", **values)
        partner = self.env["res.partner"].create({"name": "Slow"})
        start = time.monotonic()
        [log] = config._make_outbound_http_request(partner)
        return log, time.monotonic() - start

    def test_read_timeout_bounds_a_dripping_response(self):
        self.server.script(Reply(raw=http_answer(b"x" * 200), drip=0.2))
        log, elapsed = self.send_one(read_timeout=2)
        self.assertEqual(log.state, "error")
        self.assertIn("Read timed out", log.error_message)
        self.assertLess(elapsed, 4.5)

    def test_gzip_bomb_is_cut(self):
        inner = gzip.compress(b"\0" * (256 * 1024 * 1024), compresslevel=9)
        bomb = gzip.compress(inner, compresslevel=9)
        self.assertLess(len(bomb), 300 * 1024)
        self.server.script(
            Reply(
                raw=http_answer(
                    bomb,
                    headers=[
                        b"Content-Encoding: gzip, gzip",
                        b"Content-Type: application/json",
                    ],
                )
            )
        )
        start = time.monotonic()
        log, _elapsed = self.send_one()
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual(log.state, "success")
        self.assertLessEqual(len(log.response_body.encode()), 70 * 1024)

    def test_deflate_response_still_decoded(self):
        payload = json.dumps({"ok": "deflated"}).encode()
        self.server.script(
            Reply(
                raw=http_answer(
                    zlib.compress(payload), headers=[b"Content-Encoding: deflate"]
                )
            )
        )
        log, _elapsed = self.send_one()
        self.assertEqual(json.loads(log.response_body), {"ok": "deflated"})


@tagged("post_install", "-at_install")
class TestValuesAtSave(UsersMixin, BjApiSyncCase):
    """Items 9 and 11: bad values are refused at save, naming the field."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()

    def assert_refused(self, message, **values):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(**values)
        self.assertIn(message, str(caught.exception))

    def test_line_breaks_in_header_auth_and_params(self):
        self.assert_refused(
            "X-Token",
            header_ids=[Command.create({"key": "X-Token", "value": "a\r\nX-Evil: 1"})],
        )
        self.assert_refused("Bearer Token", auth_type="bearer", bearer_token="t\nx")
        self.assert_refused(
            "Password", auth_type="basic", auth_login="u", auth_password="p\r\n"
        )
        self.assert_refused("API Key", auth_type="api_key", api_key_value="k\rv")
        self.assert_refused(
            "api_token",
            param_ids=[Command.create({"key": "api_token", "value": "a\nb"})],
        )
        self.assert_refused(
            "X-Name", header_ids=[Command.create({"key": "X-Name", "value": "5 €"})]
        )
        # Latin-1 and URL-encodable text is fine.
        self.make_config(
            header_ids=[Command.create({"key": "X-Name", "value": "Société"})],
            param_ids=[Command.create({"key": "city", "value": "Zürich 東京"})],
        )

    def test_absurd_numbers(self):
        nan, inf = float("nan"), float("inf")
        config = self.make_config()
        for fragment, values in (
            ("Connection Timeout", {"connect_timeout": nan}),
            ("Read Timeout", {"read_timeout": inf}),
            ("Read Timeout", {"read_timeout": 0}),
            ("Page Size", {"page_size": 10**9}),
            ("Backoff Factor", {"backoff_factor": nan}),
            ("Max Attempts", {"max_attempts": 10**6}),
            ("Rotation Grace", {"signing_grace_hours": 10**9}),
        ):
            with self.subTest(values=values):
                assert_refused_by_database(
                    self, fragment, lambda v=values: config.write(v)
                )

    def test_huge_code_refused_quickly(self):
        start = time.monotonic()
        with self.assertRaises(ValidationError) as caught:
            self.make_config(python_script="x = 1\n" * (2 * 1024 * 1024))
        self.assertLess(time.monotonic() - start, 5)
        self.assertIn("Python Script", str(caught.exception))
        self.assertIn("allowed", str(caught.exception))

    def test_secret_param_hidden_from_users_and_neutralized(self):
        config = self.make_config(
            param_ids=[
                Command.create({"key": "api_token", "value": "param-secret-1"}),
                Command.create({"key": "page", "value": "2"}),
            ]
        )
        params = config.with_user(self.bj_user).param_ids
        self.assertEqual(params.mapped("display_value"), ["***", "2"])
        with self.assertRaises(Exception):  # noqa: B017 - AccessError, field groups
            params.read(["value"])
        self.assertIn("param-secret-1", config._get_secrets())
        for query in get_neutralization_queries(["bj_api_sync"]):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertEqual(config.param_ids.mapped("value"), [False, "2"])

    def test_unlink_with_waiting_deliveries_refused(self):
        config = self.make_config()
        config._enqueue(self.make_partners(1), "manual")
        with self.assertRaises(UserError) as caught:
            config.unlink()
        self.assertIn("Archive it instead", str(caught.exception))
        config.delivery_ids.action_cancel()
        config.unlink()
        self.assertFalse(config.exists())


@tagged("post_install", "-at_install")
class TestUnencodablePayloads(BjApiSyncCase):
    """Item 10: a payload JSON cannot carry never breaks the user's save."""

    def make_code_config(self, code):
        config = self.make_config(
            lines=[("name", "name", "plain")],
        )
        self.env["bj.api.sync.config.line"].create(
            {
                "config_id": config.id,
                "api_key": "bad",
                "value_type": "python",
                "python_code": code,
            }
        )
        self.env["bj.api.sync.automate"].create(
            {"config_id": config.id, "on_create": True}
        ).action_create_automations()
        return config

    def test_tuple_key_and_nan(self):
        for code, message in (
            ("result = {(1, 2): 1}", "cannot be sent as JSON"),
            ("result = float('nan')", "NaN"),
        ):
            with self.subTest(code=code):
                config = self.make_code_config(code)
                partner = self.env["res.partner"].create({"name": "Encodable?"})
                self.env.cr.precommit.run()  # what the commit would run
                self.assertTrue(partner.exists())
                [row] = config.delivery_ids
                self.assertEqual(row.state, "dead")
                self.assertIn(message, row.last_error)
                config.automation_ids.unlink()

    def test_immediate_nan_is_an_error_log(self):
        config = self.make_config(lines=[("name", "name", "plain")])
        self.env["bj.api.sync.config.line"].create(
            {
                "config_id": config.id,
                "api_key": "n",
                "value_type": "python",
                "python_code": "result = float('inf')",
            }
        )
        [log] = config._make_outbound_http_request(self.make_partners(1))
        self.assertEqual(log.state, "error")
        self.assertIn("cannot be sent as JSON", log.error_message)
        self.assertFalse(self.server.received)


@tagged("post_install", "-at_install")
class TestUninstallHook(BjApiSyncCase):
    """Item 11: uninstalling leaves no cron, rule or menu entry behind."""

    def test_hook_removes_triggers(self):
        config = self.make_config(sync_interval_number=2, binding_model=True)
        self.env["bj.api.sync.automate"].create(
            {"config_id": config.id, "on_create": True, "on_unlink": True}
        ).action_create_automations()
        mixed = self.env["base.automation"].create(
            {
                "name": "mixed",
                "model_id": self.partner_model.id,
                "trigger": "on_create",
                "action_server_ids": [
                    Command.create(
                        {
                            "name": "log",
                            "model_id": self.partner_model.id,
                            "state": "code",
                            "code": "pass",
                        }
                    ),
                    Command.create(
                        dict(
                            config._prepare_trigger_action_values("ours"),
                            usage="base_automation",
                        )
                    ),
                ],
            }
        )
        cron, binding = config.cron_id, config.binding_action_id
        automations = config.automation_ids - mixed
        self.assertEqual(len(automations), 2)
        uninstall_hook(self.env)
        self.assertFalse(cron.exists())
        self.assertFalse(binding.exists())
        self.assertFalse(automations.exists())
        self.assertTrue(mixed.exists())
        self.assertEqual(mixed.action_server_ids.mapped("state"), ["code"])
        self.assertFalse(
            self.env["ir.actions.server"].search([("state", "=", "bj_api_sync")])
        )


@tagged("post_install", "-at_install")
class TestSecretsInErrors(BjApiSyncCase):
    """Item 9: a secret never reaches an error text, raw or escaped."""

    def test_line_break_in_a_stored_token(self):
        config = self.make_config(auth_type="bearer", bearer_token="placeholder")
        # An older row, saved before values were checked.
        token = "tok-\r\nX-Evil: secret-tail-42"
        self.env.cr.execute(
            "UPDATE bj_api_sync_config SET bearer_token = %s WHERE id = %s",
            (token, config.id),
        )
        config.invalidate_recordset()
        config._enqueue(self.make_partners(1), "manual")
        lines = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = lambda record: lines.append(record.getMessage())
        logger = logging.getLogger("odoo.addons.bj_api_sync")
        logger.addHandler(handler)
        try:
            [row] = self.env["bj.api.sync.delivery"]._process_due()
        finally:
            logger.removeHandler(handler)
        texts = [row.last_error or "", *row.log_ids.mapped("error_message")]
        texts += row.log_ids.mapped("request_headers") + lines
        self.assertTrue(row.last_error)
        for text in texts:
            for form in (token, repr(token)[1:-1], json.dumps(token)[1:-1]):
                self.assertNotIn(form, text or "")
            self.assertNotIn("secret-tail-42", text or "")
        self.assertFalse(self.server.received)
