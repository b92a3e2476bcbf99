"""Test Connection and mutual TLS (SPEC §14)."""

import json
import os
import socket
import stat

from odoo import Command
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import tagged

from ..testkit.tls_server import TlsServer, make_pki
from ..tools import signing, tls
from .common import BjApiSyncCase, Reply, UsersMixin

TOKEN = "bearer-SECRET-token-42"


def _one_line(pem):
    """What a one-line password input makes of a pasted PEM."""
    return "".join(pem.splitlines())


@tagged("post_install", "-at_install")
class TestConnectionButton(UsersMixin, BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.config = cls.make_config(
            name="Probe", auth_type="bearer", bearer_token=TOKEN
        )

    def notification(self, config=None):
        action = (config or self.config).action_test_connection()
        self.assertEqual(action["tag"], "display_notification")
        return action["params"]

    def last_log(self, config=None):
        return self.Log.search(
            [("config_id", "=", (config or self.config).id)], order="id desc", limit=1
        )

    def test_post_config_sends_options_with_auth_and_no_body(self):
        self.server.script(Reply(200, body='{"service": "up"}'))
        params = self.notification()
        [received] = self.server.received
        self.assertEqual(received.method, "OPTIONS")
        self.assertEqual(received.path, "/hook")
        self.assertEqual(received.headers["Authorization"], f"Bearer {TOKEN}")
        self.assertEqual(received.body, b"")
        self.assertNotIn("Content-Type", received.headers)
        self.assertEqual(params["type"], "success")
        self.assertIn(f"OPTIONS {self.server.url()}: HTTP 200 in", params["message"])
        self.assertIn("127.0.0.1 resolved to 127.0.0.1", params["message"])
        self.assertIn('Answer: {"service": "up"}', params["message"])
        log = self.last_log()
        self.assertEqual(
            (log.request_method, log.state, log.status_code),
            ("OPTIONS", "success", 200),
        )
        self.assertEqual(
            (log.res_model, log.res_ids), ("bj.api.sync.config", str(self.config.id))
        )
        self.assertFalse(log.request_body)
        self.assertNotIn(TOKEN, log.request_headers)
        self.assertIn("***", log.request_headers)

    def test_get_config_sends_get_without_record_data(self):
        config = self.make_config(
            name="Getter",
            lines=(("name", "name", "plain"), ("ref", "ref", "plain")),
            http_method_ids=[Command.set(self.method_get.ids)],
            param_ids=[Command.create({"key": "scope", "value": "all"})],
        )
        self.env["res.partner"].create({"name": "Nobody sends me", "ref": "R1"})
        report = config._test_connection()
        [received] = self.server.received
        self.assertEqual(received.method, "GET")
        self.assertEqual(received.query, [("scope", "all")])
        self.assertTrue(report["ok"])
        self.assertEqual(report["method"], "GET")

    def test_placeholders_are_cut_from_the_url(self):
        config = self.make_config(
            name="Placeholders", request_url=self.server.url("/partners/{ref}")
        )
        config._test_connection()
        self.assertEqual(self.server.received[0].path, "/partners/")

    def test_refused_connection_is_shown_not_raised(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nobody listens there any more
        config = self.make_config(
            name="Closed", request_url=f"http://127.0.0.1:{port}/hook"
        )
        params = self.notification(config)
        self.assertEqual(params["type"], "danger")
        self.assertTrue(params["sticky"])
        self.assertIn(
            f"failed: Connection refused (127.0.0.1:{port})", params["message"]
        )
        log = self.last_log(config)
        self.assertEqual(log.state, "error")
        self.assertIn("Connection refused", log.error_message)
        self.assertEqual(log.request_method, "OPTIONS")

    def test_401_says_the_credentials_were_refused(self):
        self.server.script(Reply(401, body='{"error": "invalid token"}'))
        params = self.notification()
        self.assertEqual(params["type"], "danger")
        self.assertIn("HTTP 401", params["message"])
        self.assertIn("refused the credentials", params["message"])
        log = self.last_log()
        self.assertEqual((log.state, log.status_code), ("error", 401))

    def test_other_status_is_a_warning(self):
        self.server.script(Reply(405, body="Method Not Allowed"))
        params = self.notification()
        self.assertEqual(params["type"], "warning")
        self.assertIn("HTTP 405", params["message"])

    def test_host_not_allowed(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "bj_api_sync.allowed_hosts", "api.example.com"
        )
        params = self.notification()
        self.assertEqual(params["type"], "danger")
        self.assertIn("not in the allowed hosts", params["message"])
        self.assertFalse(self.server.received)
        log = self.last_log()
        self.assertEqual(log.state, "error")
        self.assertIn("not in the allowed hosts", log.error_message)

    def test_in_configuration_cannot_be_tested(self):
        config = self.Config.create(
            {
                "name": "Inbound",
                "request_type": "in",
                "endpoint": "probe-in",
                "model_id": self.partner_model.id,
                "http_method_ids": [Command.set(self.method_get.ids)],
                "auth_type": "bearer",
                "run_as_user_id": self.internal.id,
                "line_ids": [
                    Command.create(
                        {"field_path": "ref", "api_key": "ref", "is_identifier": True}
                    )
                ],
            }
        )
        with self.assertRaisesRegex(UserError, "not an outbound"):
            config.action_test_connection()

    def test_only_managers(self):
        config = self.make_config(
            name="Company A",
            auth_type="bearer",
            bearer_token=TOKEN,
            company_id=self.env.company.id,
        )
        for user in (self.bj_user, self.internal, self.portal, self.other_manager):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                config.with_user(user).action_test_connection()
        self.assertFalse(self.server.received)
        params = config.with_user(self.bj_manager).action_test_connection()
        self.assertEqual(params["params"]["type"], "success")

    def test_secrets_are_redacted_from_answer_and_log(self):
        config = self.make_config(
            name="Echo", auth_type="api_key", api_key_value="key-SECRET-echo"
        )
        self.server.script(Reply(echo=True))
        report = config._test_connection()
        self.assertIn("X-API-Key", report["answer"])
        self.assertNotIn("key-SECRET-echo", report["message"])
        log = self.last_log(config)
        for name in ("request_headers", "response_body", "request_url"):
            self.assertNotIn("key-SECRET-echo", log[name] or "")

    def test_oauth2_token_fetched_for_the_test(self):
        token_server = self.start_server()
        body = {"access_token": "oauth-SECRET-tok", "expires_in": 3600}
        token_server.script(Reply(200, body=json.dumps(body)))
        config = self.make_config(
            name="OAuth",
            auth_type="oauth2",
            oauth2_token_url=token_server.url("/token"),
            oauth2_client_id="id",
            oauth2_client_secret="oauth-SECRET-client",
        )
        report = config._test_connection()
        self.assertTrue(report["ok"])
        self.assertEqual(token_server.received[0].method, "POST")
        self.assertEqual(
            self.server.received[0].headers["Authorization"], "Bearer oauth-SECRET-tok"
        )
        logs = self.Log.search([("config_id", "=", config.id)])
        self.assertEqual(len(logs), 2)  # the token request and the test
        for log in logs:
            self.assertNotIn("oauth-SECRET-tok", log.request_headers or "")

    def test_signature_covers_the_empty_body(self):
        config = self.make_config(name="Signed", sign_requests=True)
        config.action_generate_signing_secret()
        config._test_connection()
        [received] = self.server.received
        self.assertTrue(
            signing.verify(config.signing_secret, received.headers, received.body)
        )


@tagged("post_install", "-at_install")
class TestMutualTls(UsersMixin, BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.pki = make_pki()
        cls.tls_server = TlsServer(cls.pki).start()
        cls.addClassCleanup(cls.tls_server.stop)
        cls.partner = cls.env["res.partner"].create({"name": "mTLS", "ref": "MTLS"})

    def setUp(self):
        super().setUp()
        self.tls_server.reset()

    def make_tls_config(self, **values):
        tls_values = {
            "name": "mTLS",
            "request_url": self.tls_server.url(),
            "client_cert": self.pki.client.cert,
            "client_key": self.pki.client.key,
            "ca_bundle": self.pki.ca.cert,
        }
        config = self.make_config(**dict(tls_values, **values))
        # the test's rollback runs no postrollback hook: remove its files here
        self.addCleanup(self.Config._tls_store().purge, config.id)
        return config

    # -- sending ---------------------------------------------------------------

    def test_request_presents_the_client_certificate(self):
        config = self.make_tls_config()
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        [received] = self.tls_server.received
        self.assertEqual(received.client_subject, "CN=bj-client,O=bj_api_sync tests")
        self.assertEqual(json.loads(received.body), {"name": "mTLS"})

    def test_queued_delivery_presents_the_client_certificate(self):
        config = self.make_tls_config(delivery_mode="queued")
        row = config._enqueue(self.partner, "manual")
        self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "done", row.last_error)
        self.assertEqual(
            self.tls_server.received[0].client_subject,
            "CN=bj-client,O=bj_api_sync tests",
        )

    def test_oauth2_token_request_presents_the_client_certificate(self):
        self.tls_server.body = b'{"access_token": "mtls-tok", "expires_in": 600}'
        self.addCleanup(setattr, self.tls_server, "body", b'{"ok": true}')
        config = self.make_tls_config(
            auth_type="oauth2",
            oauth2_token_url=self.tls_server.url("/token"),
            oauth2_client_id="id",
            oauth2_client_secret="secret",
        )
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        paths = [(r.path, r.client_subject) for r in self.tls_server.received]
        subject = "CN=bj-client,O=bj_api_sync tests"
        self.assertEqual(paths, [("/token", subject), ("/hook", subject)])

    def test_without_client_certificate_the_handshake_fails_clearly(self):
        config = self.make_tls_config(client_cert=False, client_key=False)
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "error")
        self.assertIn("client certificate", log.error_message)
        self.assertNotIn("Traceback", log.error_message)
        self.assertFalse(self.tls_server.received)

    def test_wrong_ca_bundle_fails_verification(self):
        config = self.make_tls_config(ca_bundle=self.pki.other_ca.cert)
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual((log.state, log.outcome), ("error", "permanent"))
        self.assertIn("SSL certificate verification failed", log.error_message)
        report = config._test_connection()
        self.assertEqual(report["level"], "danger")
        self.assertIn("SSL certificate verification failed", report["message"])
        # the certificate the server showed is still described
        self.assertIn("Server certificate valid until", report["message"])

    def test_test_connection_reports_the_certificate_expiry(self):
        config = self.make_tls_config()
        report = config._test_connection()
        self.assertTrue(report["ok"], report["message"])
        not_after = self.pki.server.not_after
        self.assertEqual(report["probe"].peer_cert.not_after, not_after)
        self.assertIn(
            f"Server certificate valid until {not_after:%Y-%m-%d %H:%M} UTC",
            report["message"],
        )
        self.assertIn("Client certificate", report["message"])
        [received] = self.tls_server.received
        self.assertEqual(received.method, "OPTIONS")
        self.assertEqual(received.client_subject, "CN=bj-client,O=bj_api_sync tests")

    # -- sessions and files -------------------------------------------------------

    def test_sessions_are_not_shared_across_tls_settings(self):
        plain = self.make_config(name="Plain")
        self.assertEqual(plain._session_key(), (self.env.cr.dbname, plain.id))
        config = self.make_tls_config()
        first = config._session_key()
        self.assertEqual(first[:2], (self.env.cr.dbname, config.id))
        config.ca_bundle = self.pki.other_ca.cert
        second = config._session_key()
        self.assertNotEqual(first, second)
        config._make_outbound_http_request(self.partner)  # verification fails
        config.ca_bundle = self.pki.ca.cert
        self.assertEqual(config._session_key(), first)
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)

    def test_a_kept_alive_connection_never_outlives_its_tls_settings(self):
        config = self.make_tls_config()
        self.assertEqual(
            config._make_outbound_http_request(self.partner).state, "success"
        )
        # the pooled connection (verified against the CA) is still open
        config.ca_bundle = self.pki.other_ca.cert
        log = config._make_outbound_http_request(self.partner)
        self.assertIn("SSL certificate verification failed", log.error_message or "")
        config.ca_bundle = self.pki.ca.cert
        self.assertEqual(
            config._make_outbound_http_request(self.partner).state, "success"
        )
        # a connection authenticated with the client certificate is not reused
        config.write({"client_cert": False, "client_key": False})
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "error")
        self.assertIn("client certificate", log.error_message)
        self.assertEqual(len(self.tls_server.received), 2)

    def test_pem_files_are_private_and_follow_the_fields(self):
        config = self.make_tls_config()
        files = config._get_tls_files()
        cert_path, key_path = files.client_cert
        for path, text in (
            (cert_path, self.pki.client.cert),
            (key_path, self.pki.client.key),
            (files.ca_bundle, self.pki.ca.cert),
        ):
            self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o600)
            with open(path) as handle:
                self.assertEqual(handle.read(), text)
        folder = os.path.dirname(key_path)
        self.assertEqual(stat.S_IMODE(os.lstat(folder).st_mode), 0o700)
        self.assertEqual(os.path.basename(folder), self.env.cr.dbname)
        # a new CA bundle replaces the old file
        config.ca_bundle = self.pki.other_ca.cert
        self.assertFalse(os.path.exists(files.ca_bundle))
        self.assertTrue(os.path.exists(config._get_tls_files().ca_bundle))
        # removed behind our back (a temp cleaner): written again when sending
        config.ca_bundle = self.pki.ca.cert
        os.unlink(config._get_tls_files().client_cert[1])
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        # deleting the configuration removes its files
        config.unlink()
        self.assertFalse(
            [name for name in os.listdir(folder) if name.startswith(f"{config.id}-")]
        )

    # -- save-time checks ------------------------------------------------------------

    def test_bad_pem_is_refused_naming_the_field(self):
        with self.assertRaisesRegex(
            ValidationError, "Client Certificate: no PEM block"
        ):
            self.make_tls_config(client_cert="not a certificate")
        with self.assertRaisesRegex(ValidationError, "CA Bundle: .*does not parse"):
            self.make_tls_config(
                ca_bundle="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
            )
        with self.assertRaisesRegex(ValidationError, "Client Key: .*private key"):
            self.make_tls_config(client_key=self.pki.client.cert)

    def test_mismatched_key_is_refused(self):
        with self.assertRaisesRegex(
            ValidationError, "Client Key: the private key does not match"
        ):
            self.make_tls_config(client_key=self.pki.server.key)
        config = self.make_tls_config()
        with self.assertRaisesRegex(ValidationError, "does not match"):
            config.client_key = self.pki.server.key

    def test_cert_without_key_and_key_without_cert_are_refused(self):
        with self.assertRaisesRegex(ValidationError, "Client Key: is required"):
            self.make_tls_config(client_key=False)
        with self.assertRaisesRegex(ValidationError, "Client Certificate: is required"):
            self.make_tls_config(client_cert=False)

    def test_pem_pasted_on_one_line_is_stored_in_pem_form(self):
        config = self.make_tls_config(
            client_cert=_one_line(self.pki.client.cert),
            client_key=_one_line(self.pki.client.key),
        )
        self.assertEqual(config.client_cert, self.pki.client.cert)
        self.assertEqual(config.client_key, self.pki.client.key)
        self.assertEqual(tls.normalize_pem(config.ca_bundle), config.ca_bundle)

    # -- secrets --------------------------------------------------------------------

    def test_client_key_is_a_secret(self):
        config = self.make_tls_config()
        as_user = config.with_user(self.bj_user)
        fields = as_user.fields_get()
        self.assertNotIn("client_key", fields)
        self.assertNotIn("client_cert", fields)
        self.assertIn("ca_bundle", fields)
        with self.assertRaises(AccessError):
            as_user.read(["client_key"])
        copy = config.copy()
        self.addCleanup(self.Config._tls_store().purge, copy.id)
        self.assertFalse(copy.client_cert or copy.client_key)

    def test_key_never_reaches_a_log(self):
        config = self.make_tls_config(request_url=self.server.url())
        self.server.script(Reply(200, body=f"echo: {self.pki.client.key}"))
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success", log.error_message)
        self.assertIn("echo: ", log.response_body)
        self.assertNotIn(self.pki.client.key.splitlines()[1], log.response_body)
        self.assertNotIn("BEGIN PRIVATE KEY", log.response_body)

    def test_neutralize_blanks_the_client_certificate(self):
        config = self.make_tls_config()
        self.env.flush_all()
        for query in get_neutralization_queries(["bj_api_sync"]):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertFalse(config.client_cert)
        self.assertFalse(config.client_key)
        self.assertTrue(config.ca_bundle)  # public: kept
