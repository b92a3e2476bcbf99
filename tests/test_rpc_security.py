"""The same trust boundaries over real RPC (``/web/action/run``,
``/web/dataset/call_kw``) with a session of every kind of user."""

from odoo import Command
from odoo.tests import tagged
from odoo.tests.common import JsonRpcException

from .common import BjApiSyncHttpCase, Reply, UsersMixin

ESCALATE = (
    "env.user.write({'group_ids': [(4, env.ref('base.group_system').id)]})\nresult = 1"
)


@tagged("post_install", "-at_install")
class TestRpcSecurity(UsersMixin, BjApiSyncHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.partner_b = cls.env["res.partner"].create(
            {"name": "Hidden B", "comment": "secret", "company_id": cls.company_b.id}
        )
        cls.partner_a = cls.env["res.partner"].create({"name": "Visible A"})
        cls.config = cls.make_config(
            lines=[("name", "name", "plain"), ("comment", "comment", "plain")],
            sync_interval_number=1,
            binding_model=True,
            sign_requests=True,
            company_id=cls.env.company.id,
        )
        cls.config.action_generate_signing_secret()

    def call_kw(self, model, method, args, kwargs=None):
        return self.make_jsonrpc_request(
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": args, "kwargs": kwargs or {}},
        )

    def run_action(self, action, context=None):
        return self.make_jsonrpc_request(
            "/web/action/run", {"action_id": action.id, "context": context or {}}
        )

    def deliveries(self):
        return self.env["bj.api.sync.delivery"].search(
            [("config_id", "=", self.config.id)]
        )

    def test_cron_action_with_empty_context(self):
        action = self.config.cron_id.ir_actions_server_id
        for login in ("bj_portal", "bj_internal", "bj_user", "bj_manager"):
            with self.subTest(login=login):
                self.authenticate(login, login)
                with self.assertRaises(JsonRpcException):
                    self.run_action(action)
                # A forged cron context changes nothing.
                with self.assertRaises(JsonRpcException):
                    self.run_action(action, {"cron_id": self.config.cron_id.id})
        self.assertFalse(self.deliveries())

    def test_send_to_hidden_record(self):
        binding = self.config.binding_action_id
        self.authenticate("bj_user", "bj_user")
        with self.assertRaises(JsonRpcException) as caught:
            self.run_action(
                binding,
                {"active_model": "res.partner", "active_ids": [self.partner_b.id]},
            )
        self.assertIn("AccessError", str(caught.exception))
        with self.assertRaises(JsonRpcException):
            self.run_action(
                binding, {"active_model": "res.users", "active_ids": [1, 2]}
            )
        self.assertFalse(self.deliveries())
        self.run_action(
            binding,
            {"active_model": "res.partner", "active_ids": [self.partner_a.id]},
        )
        self.env.cr.precommit.run()
        self.assertEqual(self.deliveries().mapped("res_ids"), [str(self.partner_a.id)])

    def test_secret_actions_over_rpc(self):
        secret = self.config.signing_secret
        for login in ("bj_portal", "bj_internal", "bj_user", "bj_other_manager"):
            for method in (
                "action_generate_signing_secret",
                "action_clear_oauth2_token",
                "action_send_now",
                "action_pause",
            ):
                with self.subTest(login=login, method=method):
                    self.authenticate(login, login)
                    with self.assertRaises(JsonRpcException):
                        self.call_kw("bj.api.sync.config", method, [self.config.ids])
        self.config.invalidate_recordset()
        self.assertEqual(self.config.signing_secret, secret)
        self.assertEqual(self.config.sync_state, "active")
        self.assertFalse(self.server.received)

    def test_new_actions_over_rpc(self):
        """Import Now, Test Connection and the import Preview: refused to every
        user but a BJ API manager of the configuration's company, over RPC,
        before anything is sent; the manager may run them."""
        importer = self.make_config(
            name="RPC import",
            request_url=self.server.url("/people"),
            http_method_ids=[Command.set(self.method_get.ids)],
            import_response=True,
            company_id=self.env.company.id,
            line_ids=[
                Command.create(
                    {
                        "field_path": "ref",
                        "api_key": "code",
                        "direction": "in",
                        "is_identifier": True,
                    }
                ),
                Command.create(
                    {"field_path": "name", "api_key": "name", "direction": "in"}
                ),
            ],
        )
        calls = (
            (importer, "action_import_now"),
            (importer, "action_preview_payload"),
            (self.config, "action_test_connection"),
        )
        for login in ("bj_portal", "bj_internal", "bj_user", "bj_other_manager"):
            for config, method in calls:
                with self.subTest(login=login, method=method):
                    self.authenticate(login, login)
                    with self.assertRaises(JsonRpcException):
                        self.call_kw("bj.api.sync.config", method, [config.ids])
        self.assertFalse(self.server.received, "nothing sent for a refused call")
        self.assertFalse(
            self.env["res.partner"].search([("ref", "=like", "RPC-%")]),
            "nothing imported",
        )
        self.authenticate("bj_manager", "bj_manager")
        self.server.script(
            Reply(200, body='[{"code": "RPC-1", "name": "Imported"}]'), Reply(200)
        )
        action = self.call_kw("bj.api.sync.config", "action_import_now", [importer.ids])
        self.assertIn("1 created", action["params"]["message"])
        action = self.call_kw(
            "bj.api.sync.config", "action_test_connection", [self.config.ids]
        )
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(
            self.env["res.partner"].search([("ref", "=", "RPC-1")]).create_uid,
            self.bj_manager,
            "imported with the manager's rights",
        )

    def test_manager_cannot_write_code_over_rpc(self):
        self.authenticate("bj_manager", "bj_manager")
        with self.assertRaises(JsonRpcException):
            self.call_kw(
                "bj.api.sync.config",
                "write",
                [
                    self.config.ids,
                    {
                        "line_ids": [
                            Command.create(
                                {
                                    "api_key": "x",
                                    "value_type": "python",
                                    "python_code": ESCALATE,
                                }
                            )
                        ]
                    },
                ],
            )
        with self.assertRaises(JsonRpcException):
            self.call_kw(
                "bj.api.sync.config",
                "write",
                [self.config.ids, {"python_script": ESCALATE}],
            )
        # Send Now still works for the manager, and nobody became admin.
        self.call_kw("bj.api.sync.config", "action_send_now", [self.config.ids])
        self.assertFalse(self.bj_manager.has_group("base.group_system"))

    def test_manager_of_other_company_sees_nothing(self):
        self.authenticate("bj_other_manager", "bj_other_manager")
        with self.assertRaises(JsonRpcException):
            self.call_kw(
                "bj.api.sync.config", "read", [self.config.ids, ["request_url"]]
            )
