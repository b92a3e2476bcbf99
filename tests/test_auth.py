import base64
import json
import logging
import time
from datetime import timedelta
from urllib.parse import parse_qs

# Test-only dependency, installed by .ci/run: the reference check must not skip.
import standardwebhooks

from odoo import Command, fields
from odoo.exceptions import AccessError, ValidationError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import new_test_user, tagged

from ..tools import signing
from .common import BjApiSyncCase, Reply

SECRET_FIELDS = (
    "auth_password",
    "bearer_token",
    "api_key_value",
    "oauth2_client_secret",
    "oauth2_access_token",
    "signing_secret",
    "signing_secret_previous",
)


def token_reply(token, expires_in=3600):
    body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
    return Reply(200, body=json.dumps(body))


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@tagged("post_install", "-at_install")
class TestAuth(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token_server = cls.start_server()
        cls.partner = cls.env["res.partner"].create({"name": "Auth", "ref": "AUTH"})

    def setUp(self):
        super().setUp()
        self.token_server.reset()

    def make_oauth_config(self, **values):
        oauth = {
            "auth_type": "oauth2",
            "oauth2_token_url": self.token_server.url("/token"),
            "oauth2_client_id": "client-1",
            "oauth2_client_secret": "oauth-SECRET-client",
            "oauth2_scope": "contacts.write",
        }
        return self.make_config(**dict(oauth, **values))

    # -- API key -------------------------------------------------------------

    def test_api_key_header(self):
        config = self.make_config(auth_type="api_key", api_key_value="key-SECRET-1")
        config._make_outbound_http_request(self.partner)
        self.assertEqual(self.server.received[0].headers["X-API-Key"], "key-SECRET-1")
        config.api_key_header = "X-Custom-Auth"
        config._make_outbound_http_request(self.partner)
        self.assertEqual(
            self.server.received[1].headers["X-Custom-Auth"], "key-SECRET-1"
        )

    def test_api_key_header_name_checked(self):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(auth_type="api_key", api_key_header="Bad Header")
        self.assertIn(
            "API Key Header 'Bad Header' is not a valid header", str(caught.exception)
        )

    # -- OAuth2 ----------------------------------------------------------------

    def test_oauth2_token_fetched_once_for_many_requests(self):
        self.token_server.script(token_reply("tok-SECRET-A"))
        config = self.make_oauth_config()
        partners = self.make_partners(5)
        logs = config._make_outbound_http_request(partners)
        self.assertEqual(set(logs.mapped("state")), {"success"})
        self.assertEqual(len(self.token_server.received), 1)
        token_request = self.token_server.received[0]
        self.assertEqual(token_request.method, "POST")
        form = parse_qs(token_request.body.decode())
        self.assertEqual(form["grant_type"], ["client_credentials"])
        self.assertEqual(form["scope"], ["contacts.write"])
        expected = base64.b64encode(b"client-1:oauth-SECRET-client").decode()
        self.assertEqual(token_request.headers["Authorization"], f"Basic {expected}")
        auths = {r.headers["Authorization"] for r in self.server.received}
        self.assertEqual(auths, {"Bearer tok-SECRET-A"})
        self.assertTrue(config.oauth2_token_expires_at > fields.Datetime.now())
        # The token request itself is logged, secrets redacted.
        token_log = self.Log.search(
            [("config_id", "=", config.id), ("request_url", "like", "/token")]
        )
        self.assertEqual(len(token_log), 1)
        self.assertEqual(token_log.state, "success")
        for value in (
            token_log.request_headers,
            token_log.request_body,
            token_log.response_body,
        ):
            self.assertNotIn("oauth-SECRET-client", value)
            self.assertNotIn("tok-SECRET-A", value)
            self.assertNotIn(expected, value)

    def test_oauth2_client_secret_in_body(self):
        self.token_server.script(token_reply("tok-body"))
        config = self.make_oauth_config(oauth2_client_auth="body")
        config._make_outbound_http_request(self.partner)
        form = parse_qs(self.token_server.received[0].body.decode())
        self.assertEqual(form["client_id"], ["client-1"])
        self.assertEqual(form["client_secret"], ["oauth-SECRET-client"])
        self.assertNotIn("Authorization", self.token_server.received[0].headers)

    def test_oauth2_expired_token_is_renewed(self):
        self.token_server.script(token_reply("tok-1"), token_reply("tok-2"))
        config = self.make_oauth_config()
        config._make_outbound_http_request(self.partner)
        config.sudo().oauth2_token_expires_at = fields.Datetime.now() + timedelta(
            seconds=30
        )
        config._make_outbound_http_request(self.partner)
        self.assertEqual(len(self.token_server.received), 2)
        self.assertEqual(
            [r.headers["Authorization"] for r in self.server.received],
            ["Bearer tok-1", "Bearer tok-2"],
        )

    def test_oauth2_401_renews_once_and_retries(self):
        self.token_server.script(token_reply("tok-old"), token_reply("tok-new"))
        self.server.script(401, 200)
        config = self.make_oauth_config()
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "success")
        self.assertEqual(logs.attempts, 2)
        self.assertEqual(len(self.token_server.received), 2)
        self.assertEqual(
            [r.headers["Authorization"] for r in self.server.received],
            ["Bearer tok-old", "Bearer tok-new"],
        )
        # Only once: a second 401 is the answer.
        self.server.script(401, 401)
        self.token_server.script(token_reply("tok-newer"))
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertEqual(logs.status_code, 401)
        self.assertEqual(len(self.token_server.received), 3)

    def test_oauth2_failing_token_endpoint(self):
        self.token_server.default = Reply(503, body="token service down")
        config = self.make_oauth_config()
        logs = config._make_outbound_http_request(self.partner)
        send_log = logs.filtered(lambda log: log.res_model == "res.partner")
        self.assertEqual(send_log.state, "error")
        self.assertIn("OAuth2 token request", send_log.error_message)
        self.assertIn("HTTP 503", send_log.error_message)
        self.assertFalse(self.server.received)
        token_log = self.Log.search(
            [("config_id", "=", config.id), ("request_url", "like", "/token")]
        )
        self.assertEqual(token_log.state, "error")
        # Queued: the delivery is retryable, not dead.
        row = config._enqueue(self.partner, "manual")
        self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "retrying")
        self.assertIn("OAuth2 token request", row.last_error)

    def test_oauth2_token_url_required(self):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(auth_type="oauth2")
        self.assertIn(
            "Token URL of 'Test config': The URL is empty", str(caught.exception)
        )

    # -- signing -----------------------------------------------------------------

    def test_standard_webhooks_signature(self):
        config = self.make_config(sign_requests=True)
        config.action_generate_signing_secret()
        secret = config.sudo().signing_secret
        self.assertTrue(secret.startswith("whsec_"))
        logs = config._make_outbound_http_request(self.partner)
        got = self.server.received[0]
        self.assertEqual(got.headers["webhook-id"], logs.idempotency_key)
        self.assertLess(abs(int(got.headers["webhook-timestamp"]) - time.time()), 30)
        signing.verify(secret, got.headers, got.body)
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)
        self.assertEqual(json.loads(logs.request_headers)["webhook-signature"], "***")

    def test_signature_during_rotation(self):
        config = self.make_config(sign_requests=True, signing_grace_hours=24)
        config.action_generate_signing_secret()
        old = config.sudo().signing_secret
        config.action_generate_signing_secret()
        new = config.sudo().signing_secret
        self.assertNotEqual(old, new)
        config._make_outbound_http_request(self.partner)
        got = self.server.received[0]
        self.assertEqual(len(got.headers["webhook-signature"].split(" ")), 2)
        for secret in (old, new):
            signing.verify(secret, got.headers, got.body)
            standardwebhooks.Webhook(secret).verify(got.body, got.headers)
        # After the grace period only the new secret signs.
        config.signing_rotated_at = fields.Datetime.now() - timedelta(hours=25)
        config._make_outbound_http_request(self.partner)
        got = self.server.received[1]
        self.assertEqual(len(got.headers["webhook-signature"].split(" ")), 1)
        signing.verify(new, got.headers, got.body)
        with self.assertRaises(signing.SignatureError):
            signing.verify(old, got.headers, got.body)

    def test_signing_without_secret_is_logged(self):
        config = self.make_config(sign_requests=True)
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertIn("has no signing secret", logs.error_message)
        self.assertFalse(self.server.received)

    # -- allow-list --------------------------------------------------------------

    def test_allowed_hosts_at_save_and_send(self):
        params = self.env["ir.config_parameter"]
        params.set_param("bj_api_sync.allowed_hosts", "api.example.com, *.partner.org")
        with self.assertRaises(ValidationError) as caught:
            self.make_config()
        self.assertIn(
            "host 127.0.0.1 is not in the allowed hosts", str(caught.exception)
        )
        params.set_param("bj_api_sync.allowed_hosts", "127.0.0.*,api.example.com")
        config = self.make_config()
        self.assertEqual(
            config._make_outbound_http_request(self.partner).state, "success"
        )
        params.set_param("bj_api_sync.allowed_hosts", "api.example.com")
        logs = config._make_outbound_http_request(self.partner)
        self.assertEqual(logs.state, "error")
        self.assertIn("host 127.0.0.1 is not in the allowed hosts", logs.error_message)
        self.assertEqual(len(self.server.received), 1)
        row = config._enqueue(self.partner, "manual")
        self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "dead")
        self.assertIn("127.0.0.1", row.last_error)

    # -- secrets never leak ------------------------------------------------------

    def test_no_secret_anywhere_after_every_auth_type(self):
        secrets = {
            "basic": "basic-SECRET-pw",
            "bearer": "bearer-SECRET-tok",
            "api_key": "apikey-SECRET-val",
            "oauth_client": "oauth-SECRET-client",
            "oauth_token": "oauth-SECRET-token",
            "header": "header-SECRET-val",
        }
        self.token_server.script(token_reply(secrets["oauth_token"]))
        configs = [
            self.make_config(
                auth_type="basic", auth_login="u", auth_password=secrets["basic"]
            ),
            self.make_config(auth_type="bearer", bearer_token=secrets["bearer"]),
            self.make_config(auth_type="api_key", api_key_value=secrets["api_key"]),
            self.make_oauth_config(),
            self.make_config(
                sign_requests=True,
                header_ids=[
                    Command.create(
                        {"key": "X-Secret-Token", "value": secrets["header"]}
                    )
                ],
            ),
        ]
        configs[-1].action_generate_signing_secret()
        configs[-1].action_generate_signing_secret()
        sign_secrets = [
            configs[-1].sudo().signing_secret,
            configs[-1].sudo().signing_secret_previous,
        ]
        all_secrets = [*secrets.values(), *sign_secrets]
        all_secrets.append(base64.b64encode(f"u:{secrets['basic']}".encode()).decode())
        all_secrets.append(base64.b64encode(b"client-1:oauth-SECRET-client").decode())
        # The receiver echoes what it got (credentials included) and fails for
        # every other request, so error paths run too.
        self.server.script(
            *[Reply(500 if i % 2 else 200, echo=True) for i in range(40)]
        )
        # What the server log shows: INFO and up, plus our own and urllib3's DEBUG.
        capture = _Capture()
        root = logging.getLogger()
        verbose = [logging.getLogger(n) for n in ("odoo.addons.bj_api_sync", "urllib3")]
        old_levels = [logger.level for logger in verbose]
        root.addHandler(capture)
        for logger in verbose:
            logger.setLevel(logging.DEBUG)
        try:
            for config in configs:
                config.write({"name": f"{config.name} {config.auth_type}"})
                config._make_outbound_http_request(self.partner)
                config._enqueue(self.partner, "manual")
                config.action_preview_payload()
            self.env["bj.api.sync.delivery"]._process_due()
            self.env.flush_all()
            self.env.cr.precommit.run()
        finally:
            root.removeHandler(capture)
            for logger, level in zip(verbose, old_levels, strict=True):
                logger.setLevel(level)
        self.assertGreater(len(self.server.received), 9)
        texts = []
        for model in (
            "bj.api.log",
            "bj.api.sync.delivery",
            "mail.message",
            "bj.api.sync.preview",
        ):
            Model = self.env[model].sudo()
            names = [
                n
                for n, f in Model._fields.items()
                if f.type in ("char", "text", "html") and f.store
            ]
            for row in Model.search_read([], names):
                texts += [str(v) for v in row.values() if v]
        texts += [
            v.new_value_char or ""
            for v in self.env["mail.tracking.value"].sudo().search([])
        ]
        texts += capture.lines
        for secret in all_secrets:
            leaks = [t for t in texts if secret in t]
            self.assertFalse(leaks, f"secret {secret!r} found in {leaks[:2]}")

    # -- access --------------------------------------------------------------------

    def test_user_reads_no_secret_field(self):
        config = self.make_oauth_config(
            auth_type="api_key",
            api_key_value="hidden-api-key",
            sign_requests=True,
            header_ids=[
                Command.create({"key": "X-Api-Token", "value": "hidden-header"})
            ],
        )
        config.action_generate_signing_secret()
        user = new_test_user(
            self.env,
            login="bj_reader",
            groups="base.group_user,bj_api_sync.group_bj_api_user",
        )
        as_user = config.with_user(user)
        self.assertEqual(as_user.name, "Test config")
        for name in SECRET_FIELDS:
            with self.assertRaises(AccessError, msg=name):
                as_user.read([name])
        self.assertTrue(set(SECRET_FIELDS).isdisjoint(as_user.fields_get()))
        header = as_user.header_ids
        self.assertEqual(header.display_value, "***")
        with self.assertRaises(AccessError):
            header.read(["value"])
        for name in SECRET_FIELDS:
            self.assertFalse(config._fields[name].copy, f"{name} must not be copied")

    def test_multi_company_isolation(self):
        company_a = self.env.company
        company_b = self.env["res.company"].create({"name": "BJ Company B"})
        config_a = self.make_config(name="A", company_id=company_a.id)
        config_b = self.make_config(name="B", company_id=company_b.id)
        shared = self.make_config(name="Shared")
        for config in (config_a, config_b):
            config._make_outbound_http_request(self.partner)
            config._enqueue(self.partner, "manual")
        user_a = new_test_user(
            self.env,
            login="bj_user_a",
            groups="base.group_user,bj_api_sync.group_bj_api_manager",
            company_id=company_a.id,
            company_ids=[Command.set(company_a.ids)],
        )
        env_a = self.env(user=user_a)
        visible = env_a["bj.api.sync.config"].search(
            [("id", "in", (config_a | config_b | shared).ids)]
        )
        self.assertEqual(visible, config_a | shared)
        self.assertEqual(
            env_a["bj.api.log"]
            .search([("config_id", "in", (config_a | config_b).ids)])
            .config_id,
            config_a,
        )
        self.assertEqual(
            env_a["bj.api.sync.delivery"]
            .search([("config_id", "in", (config_a | config_b).ids)])
            .config_id,
            config_a,
        )
        with self.assertRaises(AccessError):
            config_b.with_user(user_a).read(["name"])

    # -- neutralization -------------------------------------------------------------

    def test_neutralize(self):
        config = self.make_oauth_config(
            sign_requests=True,
            header_ids=[
                Command.create({"key": "X-Api-Key", "value": "neutral-key"}),
                Command.create({"key": "X-Version", "value": "2"}),
            ],
        )
        config.action_generate_signing_secret()
        config.sudo().write(
            {"bearer_token": "b", "auth_password": "p", "api_key_value": "k"}
        )
        row = config._enqueue(self.partner, "manual")
        self.env.flush_all()
        for query in get_neutralization_queries(["bj_api_sync"]):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        config = config.with_context(active_test=False)
        self.assertFalse(config.active)
        for name in SECRET_FIELDS:
            self.assertFalse(config.sudo()[name], name)
        values = {h.key: h.sudo().value for h in config.header_ids}
        self.assertEqual(values, {"X-Api-Key": False, "X-Version": "2"})
        self.assertEqual(row.state, "cancelled")
