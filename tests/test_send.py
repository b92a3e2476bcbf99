import base64
import json
import socket
import time

from odoo import Command
from odoo.tests import tagged

from .common import BjApiSyncCase, Reply

SEED_MANUAL_SNIPPET = """\
record = self.env['res.partner'].browse(partner_id)
config = self.env.ref('module.api_config_xml_id')
config._make_outbound_http_request(record, config.id, timeout=60)
"""
SEED_CRON_SNIPPET = """\
# Sync all modified partners every hour
partners = env['res.partner'].search([
    ('write_date', '>=', datetime.now() - timedelta(hours=1))
])
config = env.ref('module.outbound_partner_config')
for partner in partners:
    config._make_outbound_http_request(partner, config.id)
"""
DIVIDE_BY_ZERO_ON_SECOND = "result = 1 / (0 if record.name == 'Partner 0001' else 1)"


@tagged("post_install", "-at_install")
class TestSend(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.partner = cls.env["res.partner"].create(
            {"name": "Bob", "email": "bob@example.com", "ref": "B/42"}
        )

    def test_post_body_and_log(self):
        config = self.make_config(
            lines=[("id", "id", "plain"), ("name", "customer.name", "plain")]
        )
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(len(logs), 1)
        self.assertEqual(len(self.server.received), 1)
        got = self.server.received[0]
        self.assertEqual(got.method, "POST")
        self.assertEqual(
            got.json(), {"id": self.partner.id, "customer": {"name": "Bob"}}
        )
        self.assertEqual(got.headers["Content-Type"], "application/json")
        self.assertEqual(got.headers["Accept"], "application/json")
        self.assertTrue(got.headers["User-Agent"].startswith("bj_api_sync/"))
        log = logs
        self.assertEqual(log.state, "success")
        self.assertEqual(log.status_code, 200)
        self.assertEqual(log.attempts, 1)
        self.assertEqual(log.res_model, "res.partner")
        self.assertEqual(log.res_ids, str(self.partner.id))
        self.assertEqual(log.request_method, "POST")
        self.assertEqual(log.idempotency_key, got.headers["Idempotency-Key"])
        self.assertEqual(json.loads(log.request_body)["customer"]["name"], "Bob")
        self.assertIn('"ok"', log.response_body)
        self.assertGreaterEqual(log.duration_ms, 0)

    def test_seed_snippet_in_server_action(self):
        """The documentation's server-action code works unchanged."""
        config = self.make_config()
        self.give_xml_id(config, "module.api_config_xml_id")
        action = self.env["ir.actions.server"].create(
            {
                "name": "Seed snippet",
                "model_id": self.partner_model.id,
                "state": "code",
                "code": "partner_id = record.id\n" + SEED_MANUAL_SNIPPET,
            }
        )
        action.with_context(active_model="res.partner", active_id=self.partner.id).run()
        self.assertEqual(len(self.server.received), 1)
        self.assertEqual(self.server.received[0].json(), {"name": "Bob"})

    def test_seed_cron_snippet(self):
        """The documentation's scheduled-action code works unchanged."""
        config = self.make_config(filter_domain=f"[('id', '=', {self.partner.id})]")
        self.give_xml_id(config, "module.outbound_partner_config")
        action = self.env["ir.actions.server"].create(
            {
                "name": "Seed cron",
                "model_id": self.env["ir.model"]._get("bj.api.sync.config").id,
                "state": "code",
                "code": SEED_CRON_SNIPPET,
            }
        )
        action.run()
        self.assertEqual(len(self.server.received), 1)
        self.assertEqual(self.server.received[0].json(), {"name": "Bob"})

    def test_server_action_datetime_still_a_module(self):
        action = self.env["ir.actions.server"].create(
            {
                "name": "Old style",
                "model_id": self.partner_model.id,
                "state": "code",
                "code": "action = {'d': str(datetime.date(2024, 1, 2)), "
                "'now': isinstance(datetime.datetime.now(), datetime.datetime)}",
            }
        )
        self.assertEqual(action.run(), {"d": "2024-01-02", "now": True})

    def test_filter_domain_keeps_matching_records(self):
        other = self.env["res.partner"].create({"name": "Carol", "email": False})
        config = self.make_config(filter_domain="[('email', '!=', False)]")
        logs = config._make_outbound_http_request(self.partner | other)
        self.assertEqual(len(logs), 1)
        self.assertEqual(logs.res_ids, str(self.partner.id))

    def test_filter_domain_with_dates(self):
        config = self.make_config(
            filter_domain="[('create_date', '>=', (datetime.now() - "
            "timedelta(days=7)).strftime('%Y-%m-%d'))]"
        )
        self.assertEqual(len(config._make_outbound_http_request(self.partner)), 1)

    def test_pagination_250_records(self):
        partners = self.make_partners(250)
        config = self.make_config(
            lines=[("id", "id", "plain")], is_paginated=True, page_size=100
        )
        logs = config._make_outbound_http_request(partners)
        self.assertEqual(len(logs), 3)
        sizes = [len(r.json()) for r in self.server.received]
        self.assertEqual(sizes, [100, 100, 50])
        sent_ids = [item["id"] for r in self.server.received for item in r.json()]
        self.assertEqual(sent_ids, partners.ids)
        self.assertEqual(len(logs[0].res_ids.split(",")), 100)

    def test_url_placeholders(self):
        config = self.make_config(request_url=self.server.url("/partners/{ref}/x"))
        config._make_outbound_http_request(self.partner)
        self.assertEqual(self.server.received[0].path, "/partners/B%2F42/x")

    def test_put_patch_delete_send_body(self):
        for xmlid in ("put", "patch", "delete"):
            method = self.env.ref(f"bj_api_sync.http_method_{xmlid}")
            config = self.make_config(http_method_ids=[Command.set(method.ids)])
            config._make_outbound_http_request(self.partner)
            got = self.server.received[-1]
            self.assertEqual(got.method, method.name)
            self.assertEqual(got.json(), {"name": "Bob"})

    def test_get_sends_query_string(self):
        config = self.make_config(
            lines=[("name", "name", "plain"), ("id", "id", "plain")],
            http_method_ids=[Command.set(self.method_get.ids)],
            param_ids=[
                Command.create({"key": "api_version", "value": "2"}),
                Command.create({"key": "lang", "value": "en"}),
            ],
        )
        config._make_outbound_http_request(self.partner)
        got = self.server.received[0]
        self.assertEqual(got.method, "GET")
        self.assertEqual(got.body, b"")
        self.assertEqual(
            got.query,
            [
                ("api_version", "2"),
                ("lang", "en"),
                ("name", "Bob"),
                ("id", str(self.partner.id)),
            ],
        )

    def test_query_params_on_post(self):
        config = self.make_config(
            param_ids=[Command.create({"key": "source", "value": "odoo"})]
        )
        config._make_outbound_http_request(self.partner)
        self.assertEqual(self.server.received[0].query, [("source", "odoo")])

    def test_auth_headers(self):
        cases = [
            ({"auth_type": "none"}, None),
            (
                {
                    "auth_type": "basic",
                    "auth_login": "api_user",
                    "auth_password": "pw1",
                },
                "Basic " + base64.b64encode(b"api_user:pw1").decode(),
            ),
            (
                {"auth_type": "bearer", "bearer_token": "sk_live_abc123xyz789"},
                "Bearer sk_live_abc123xyz789",
            ),
        ]
        for values, expected in cases:
            self.server.reset()
            config = self.make_config(**values)
            config._make_outbound_http_request(self.partner)
            self.assertEqual(
                self.server.received[0].headers.get("Authorization"), expected
            )

    def test_header_override_order(self):
        config = self.make_config(
            auth_type="bearer",
            bearer_token="tok-123456",
            header_ids=[
                Command.create({"key": "X-API-Version", "value": "2.0"}),
                Command.create(
                    {"key": "content-type", "value": "application/vnd+json"}
                ),
                Command.create({"key": "Authorization", "value": "ignored"}),
            ],
        )
        config._make_outbound_http_request(self.partner)
        headers = {k.lower(): v for k, v in self.server.received[0].headers.items()}
        self.assertEqual(headers["x-api-version"], "2.0")
        self.assertEqual(headers["content-type"], "application/vnd+json")
        self.assertEqual(headers["authorization"], "Bearer tok-123456")

    def test_quick_retries_same_idempotency_key(self):
        self.server.script(503, 503, 200)
        config = self.make_config(max_retries=3, backoff_factor=0.0)
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(len(logs), 1)
        self.assertEqual(logs.state, "success")
        self.assertEqual(logs.attempts, 3)
        keys = {r.headers["Idempotency-Key"] for r in self.server.received}
        self.assertEqual(len(self.server.received), 3)
        self.assertEqual(keys, {logs.idempotency_key})

    def test_retry_after_is_honoured(self):
        self.server.script(Reply(429, headers={"Retry-After": "1"}), 200)
        config = self.make_config(max_retries=2)
        start = time.monotonic()
        logs = config._make_outbound_http_request(self.partner)
        elapsed = time.monotonic() - start
        self.assertEqual(logs.state, "success")
        self.assertEqual(logs.attempts, 2)
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 10)

    def test_long_retry_after_does_not_wait(self):
        self.server.script(Reply(429, headers={"Retry-After": "120"}), 200)
        config = self.make_config(max_retries=3)
        start = time.monotonic()
        logs = config._make_outbound_http_request(self.partner)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.status_code, 429)
        self.assertEqual(logs.outcome, "retryable")
        self.assertEqual(logs.retry_after, 120)
        self.assertEqual(logs.attempts, 1)
        self.assertEqual(len(self.server.received), 1)

    def test_400_is_not_retried(self):
        self.server.script(Reply(400, body='{"error": "bad email"}'))
        config = self.make_config(max_retries=3)
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(len(self.server.received), 1)
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.outcome, "permanent")
        self.assertEqual(logs.status_code, 400)
        self.assertIn("bad email", logs.response_body)

    def test_refused_connection_is_logged_not_raised(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        config = self.make_config(
            request_url=f"http://127.0.0.1:{port}/x", max_retries=1
        )
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.outcome, "retryable")
        self.assertEqual(logs.attempts, 2)
        self.assertFalse(logs.status_code)
        self.assertIn("refused", logs.error_message.lower())

    def test_read_timeout_honoured(self):
        self.server.script(Reply(200, delay=2.0))
        config = self.make_config(read_timeout=0.5, max_retries=2)
        start = time.monotonic()
        logs = config._make_outbound_http_request(self.partner)
        elapsed = time.monotonic() - start
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.outcome, "retryable")
        self.assertLess(elapsed, 1.8)
        self.assertIn("timed out", logs.error_message.lower())

    def test_timeout_argument_overrides_read_timeout(self):
        self.server.script(Reply(200, delay=1.0))
        config = self.make_config(read_timeout=0.3)
        logs = config._make_outbound_http_request(self.partner, config.id, timeout=5)
        self.assertEqual(logs.state, "success")

    def test_connect_timeout_honoured(self):
        # A listening socket whose backlog is full never completes new handshakes.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _i in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            config = self.make_config(
                request_url=f"http://127.0.0.1:{port}/x", connect_timeout=0.5
            )
            start = time.monotonic()
            logs = config._make_outbound_http_request(self.partner)
            elapsed = time.monotonic() - start
        finally:
            for filler in fillers:
                filler.close()
            listener.close()
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.outcome, "retryable")
        self.assertLess(elapsed, 5)

    def test_dropped_connection_then_success(self):
        self.server.script(Reply(drop=True), 200)
        config = self.make_config(max_retries=2)
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "success")
        self.assertEqual(logs.attempts, 2)

    def test_redirect_not_followed(self):
        self.server.script(Reply(302, headers={"Location": "http://127.0.0.1:1/else"}))
        config = self.make_config()
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.outcome, "permanent")
        self.assertIn("127.0.0.1:1/else", logs.error_message)
        self.assertEqual(len(self.server.received), 1)

    def test_non_json_response_is_fine(self):
        self.server.script(Reply(200, body="plain text ok"), Reply(204, body=b""))
        config = self.make_config()
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.response_body, "plain text ok")
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "success")
        self.assertEqual(logs.status_code, 204)

    def config_failing_on_second(self, **values):
        config = self.make_config(**values)
        self.add_line(
            config,
            api_key="x",
            value_type="python",
            python_code=DIVIDE_BY_ZERO_ON_SECOND,
        )
        return config

    def test_python_error_logs_row_others_still_sent(self):
        partners = self.make_partners(3)
        config = self.config_failing_on_second()
        logs = config._make_outbound_http_request(partners)
        self.assertEqual(len(logs), 3)
        failed = logs.filtered(lambda log: log.state == "error")
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed.res_ids, str(partners[1].id))
        self.assertIn("mapping line 'x' failed", failed.error_message)
        self.assertIn("division by zero", failed.error_message)
        self.assertEqual(len(self.server.received), 2)

    def test_python_error_in_page_keeps_other_records(self):
        partners = self.make_partners(3)
        config = self.config_failing_on_second(is_paginated=True, page_size=10)
        logs = config._make_outbound_http_request(partners)
        self.assertEqual(sorted(logs.mapped("state")), ["error", "success"])
        self.assertEqual(len(self.server.received), 1)
        self.assertEqual(len(self.server.received[0].json()), 2)

    def test_script_runtime_error_is_logged(self):
        config = self.make_config(python_script="result = request_data['missing']")
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertIn("Python Script failed", logs.error_message)
        self.assertIn("missing", logs.error_message)
        self.assertFalse(self.server.received)

    def test_large_body_is_cut_in_log(self):
        big = "x" * (100 * 1024)
        self.server.script(Reply(200, body=big))
        config = self.make_config(
            python_script=f"result = {{'blob': 'y' * {100 * 1024}}}"
        )
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "success")
        self.assertEqual(len(self.server.received[0].body), 100 * 1024 + 11)
        for text in (logs.request_body, logs.response_body):
            self.assertLess(len(text.encode()), 66 * 1024)
            self.assertIn("truncated", text)

    def test_secrets_never_in_logs(self):
        secrets = ["pw-SECRET-basic", "tok-SECRET-bearer", "hdr-SECRET-value"]
        configs = [
            self.make_config(
                auth_type="basic", auth_login="user", auth_password=secrets[0]
            ),
            self.make_config(
                auth_type="bearer",
                bearer_token=secrets[1],
                header_ids=[
                    Command.create({"key": "X-Api-Token", "value": secrets[2]})
                ],
                request_url=self.server.url("/echo"),
            ),
        ]
        basic = base64.b64encode(f"user:{secrets[0]}".encode()).decode()
        # The receiver echoes the token back and fails once, so errors are logged too.
        self.server.script(
            Reply(400, body=f"password was {secrets[0]}"),
            200,
            Reply(500, body=f"bad token {secrets[1]} / {secrets[2]}"),
            200,
        )
        logs = self.Log
        for config in configs:
            logs |= config._make_outbound_http_request(self.partner)
            logs |= config._make_outbound_http_request(self.partner)
        self.assertEqual(len(logs), 4)
        seen = {r.headers.get("Authorization") for r in self.server.received}
        self.assertIn("Basic " + basic, seen)
        text_fields = [
            name
            for name, field in self.Log._fields.items()
            if field.type in ("char", "text")
        ]
        for log in logs:
            for name in text_fields:
                value = log[name] or ""
                for secret in [*secrets, basic]:
                    self.assertNotIn(secret, value, f"{secret} leaked in {name}")
        headers = json.loads(logs[-1].request_headers)
        self.assertEqual(headers["Authorization"], "***")
        self.assertEqual(headers["X-Api-Token"], "***")
        self.assertNotEqual(headers["Idempotency-Key"], "***")

    def test_url_userinfo_redacted(self):
        url = f"http://user:hunter2@127.0.0.1:{self.server.port}/hook"
        config = self.make_config(request_url=url)
        logs = config._make_outbound_http_request(self.partner)
        self.assertNotIn("hunter2", logs.request_url)
        self.assertIn("***", logs.request_url)

    def test_session_is_pooled(self):
        config = self.make_config()
        config._make_outbound_http_request(self.partner)
        config._make_outbound_http_request(self.partner)
        ports = {r.client_port for r in self.server.received}
        self.assertEqual(len(ports), 1, "the keep-alive connection is reused")
