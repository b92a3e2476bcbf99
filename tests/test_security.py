"""Trust boundaries, tried as an attacker would (issue: nobody gets in where
they don't belong). Users of every kind come from ``UsersMixin``."""

import json

from odoo import Command
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged

from .common import BjApiSyncCase, UsersMixin

ESCALATE = (
    "env.user.write({'group_ids': [(4, env.ref('base.group_system').id)]})\nresult = 1"
)


@tagged("post_install", "-at_install")
class TestCodeAuthors(UsersMixin, BjApiSyncCase):
    """Item 1: only Settings admins write code; code never runs as superuser."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()

    def test_manager_cannot_write_python_line(self):
        config = self.make_config()
        with self.assertRaises(AccessError) as caught:
            config.with_user(self.bj_manager).write(
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
                }
            )
        self.assertIn("Only Settings administrators", str(caught.exception))
        self.assertFalse(self.bj_manager.has_group("base.group_system"))

    def test_manager_cannot_change_or_activate_code(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
        )
        line = self.env["bj.api.sync.config.line"].create(
            {
                "config_id": config.id,
                "api_key": "code",
                "value_type": "python",
                "python_code": "result = 1",
            }
        )
        as_manager = line.with_user(self.bj_manager)
        with self.assertRaises(AccessError):
            as_manager.python_code = ESCALATE
        # Code kept on a line switched to plain cannot be switched back on.
        line.write({"value_type": "plain", "field_path": "name"})
        with self.assertRaises(AccessError):
            as_manager.value_type = "python"
        # Other fields of the same line stay editable by the manager.
        as_manager.api_key = "renamed"
        self.assertEqual(line.api_key, "renamed")

    def test_manager_cannot_write_python_script(self):
        config = self.make_config()
        with self.assertRaises(AccessError):
            config.with_user(self.bj_manager).python_script = ESCALATE
        with self.assertRaises(AccessError):
            self.Config.with_user(self.bj_manager).create(
                {
                    "name": "sneaky",
                    "model_id": self.partner_model.id,
                    "request_url": self.server.url(),
                    "http_method_ids": [Command.set(self.method_post.ids)],
                    "python_script": ESCALATE,
                }
            )
        # A Settings admin may.
        config.with_user(self.admin_user).python_script = "result = request_data"
        self.assertTrue(config.with_user(self.bj_manager).can_edit_code is False)
        self.assertTrue(config.with_user(self.admin_user).can_edit_code)

    def test_code_runs_with_the_callers_rights_not_superuser(self):
        partner = self.env["res.partner"].create({"name": "Code target"})
        config = self.make_config(
            delivery_mode="immediate",
            filter_domain=f"[('id', '=', {partner.id})]",
            python_script=(
                "result = {'login': env.user.login, 'su': env.su, 'uid': env.uid}"
            ),
        )
        config.with_user(self.bj_manager).action_send_now()
        [received] = self.server.received
        self.assertEqual(
            received.json(),
            {"login": "bj_manager", "su": False, "uid": self.bj_manager.id},
        )

    def test_queued_build_runs_as_the_triggering_user(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            python_script="result = {'login': env.user.login, 'su': env.su}",
        )
        partner = (
            self.env["res.partner"]
            .with_user(self.internal)
            .create({"name": "Built as internal"})
        )
        config.sudo()._trigger_records(partner.sudo(), "create")
        self.env.cr.precommit.run()
        delivery = self.env["bj.api.sync.delivery"].search(
            [("config_id", "=", config.id)]
        )
        self.assertEqual(
            json.loads(delivery.payload), {"login": "bj_internal", "su": False}
        )

    def test_run_as_user_builds_unattended_events(self):
        config = self.make_config(
            python_script="result = {'login': env.user.login}",
            run_as_user_id=self.bj_manager.id,
        )
        partner = (
            self.env["res.partner"].with_user(self.internal).create({"name": "Run as"})
        )
        config._trigger_records(partner, "create")
        self.env.cr.precommit.run()
        delivery = config.delivery_ids
        self.assertEqual(json.loads(delivery.payload), {"login": "bj_manager"})
        # Manual sends keep the caller's rights.
        config.delivery_mode = "immediate"
        config._make_outbound_http_request(partner.with_user(self.internal))
        self.assertEqual(self.server.received[-1].json(), {"login": "bj_internal"})

    def test_only_admins_lend_another_users_rights(self):
        config = self.make_config()
        with self.assertRaises(AccessError):
            config.with_user(self.bj_manager).run_as_user_id = self.admin_user
        config.with_user(self.bj_manager).run_as_user_id = self.bj_manager
        config.with_user(self.admin_user).run_as_user_id = self.internal
        self.assertEqual(config.run_as_user_id, self.internal)
        with self.assertRaises(ValidationError):
            config.run_as_user_id = self.env.ref("base.user_root")

    def test_domain_has_values_only(self):
        with self.assertRaises(ValidationError) as caught:
            self.make_config(
                filter_domain="[('id', '=', user.write({'name': 'pwned'}))]"
            )
        self.assertIn("Filter Domain", str(caught.exception))
        self.assertNotEqual(self.env.user.name, "pwned")
        # Values still work.
        config = self.make_config(
            filter_domain="[('create_date', '<=', (datetime.now() + "
            "timedelta(days=1)).strftime('%Y-%m-%d')), ('id', '!=', uid)]"
        )
        self.assertTrue(config._get_records_domain())


@tagged("post_install", "-at_install")
class TestTriggerRights(UsersMixin, BjApiSyncCase):
    """Items 2 and 3: server actions run with the caller's rights; only the
    configuration's own cron syncs everything."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.partner_b = cls.env["res.partner"].create(
            {
                "name": "Hidden B",
                "email": "hidden@b.example",
                "comment": "secret note",
                "company_id": cls.company_b.id,
            }
        )
        cls.partner_a = cls.env["res.partner"].create({"name": "Visible A"})
        cls.config = cls.make_config(
            lines=[("name", "name", "plain"), ("email", "email", "plain")],
            sync_interval_number=1,
            binding_model=True,
        )

    def deliveries(self):
        return self.env["bj.api.sync.delivery"].search(
            [("config_id", "=", self.config.id)]
        )

    def test_empty_context_does_not_sync_everything(self):
        action = self.config.cron_id.ir_actions_server_id
        for user in (self.internal, self.bj_user, self.bj_manager):
            with self.subTest(user=user.login), self.assertRaises(UserError):
                action.with_user(user).with_context(
                    active_model=False, active_ids=False
                ).run()
        # Portal: refused by Odoo's own check or by ours; either way, nothing.
        with self.assertRaises(UserError):  # AccessError is a UserError
            action.with_user(self.portal).run()
        self.assertFalse(self.deliveries())

    def test_own_cron_syncs_everything_with_its_users_rights(self):
        cron = self.config.cron_id
        self.assertNotEqual(cron.user_id, self.env.ref("base.user_root"))
        cron.user_id = self.bj_user
        cron.ir_actions_server_id.with_user(self.bj_user).with_context(
            cron_id=cron.id
        ).run()
        ids = {int(d.res_ids) for d in self.deliveries()}
        self.assertIn(self.partner_a.id, ids)
        self.assertNotIn(self.partner_b.id, ids)  # hidden from the cron's user

    def test_forged_cron_context_is_refused(self):
        cron = self.config.cron_id
        with self.assertRaises(UserError):
            cron.ir_actions_server_id.with_user(self.bj_manager).with_context(
                cron_id=cron.id
            ).run()
        self.assertFalse(self.deliveries())

    def test_send_to_hidden_record_is_refused(self):
        binding = self.config.binding_action_id
        for user in (self.bj_user, self.bj_manager):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                binding.with_user(user).with_context(
                    active_model="res.partner", active_ids=[self.partner_b.id]
                ).run()
        self.assertFalse(self.deliveries())
        binding.with_user(self.bj_user).with_context(
            active_model="res.partner", active_ids=[self.partner_a.id]
        ).run()
        self.env.cr.precommit.run()
        self.assertEqual(self.deliveries().mapped("res_ids"), [str(self.partner_a.id)])

    def test_mismatched_active_model_is_refused(self):
        binding = self.config.binding_action_id
        with self.assertRaises(UserError):
            binding.with_user(self.bj_user).with_context(
                active_model="res.users", active_ids=[self.bj_user.id]
            ).run()
        self.assertFalse(self.deliveries())

    def test_forged_automation_context_gets_no_run_as_rights(self):
        self.config.run_as_user_id = self.env.ref("base.user_admin")
        binding = self.config.binding_action_id
        with self.assertRaises(AccessError):
            binding.with_user(self.bj_user).with_context(
                active_model="res.partner",
                active_ids=[self.partner_b.id],
                __action_done={"x": 1},
            ).run()

    def test_automation_builds_as_the_writer(self):
        config = self.make_config(
            lines=[("name", "name", "plain")],
            python_script="result = {'login': env.user.login, 'su': env.su}",
        )
        wizard = self.env["bj.api.sync.automate"].create(
            {"config_id": config.id, "on_create": True}
        )
        wizard.action_create_automations()
        self.env["res.partner"].with_user(self.internal).create({"name": "Auto"})
        self.env.cr.precommit.run()
        self.assertEqual(
            json.loads(config.delivery_ids.payload),
            {"login": "bj_internal", "su": False},
        )


@tagged("post_install", "-at_install")
class TestPublicMethods(UsersMixin, BjApiSyncCase):
    """Item 4: every public method checks the caller's rights first."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.config = cls.make_config(
            sign_requests=True,
            auth_type="oauth2",
            oauth2_token_url=cls.server.url("/token"),
            oauth2_client_id="client",
            oauth2_client_secret="client-secret",
            delivery_mode="immediate",
            company_id=cls.env.company.id,
        )
        cls.config.action_generate_signing_secret()
        cls.config.sudo().write(
            {
                "oauth2_access_token": "cached-token",
                "oauth2_token_expires_at": "2099-01-01 00:00:00",
            }
        )
        cls.delivery = cls.env["bj.api.sync.delivery"].create(
            {
                "config_id": cls.config.id,
                "res_model": "res.partner",
                "res_ids": str(cls.env.user.partner_id.id),
                "payload": "{}",
                "state": "dead",
                "idempotency_key": "k-1",
            }
        )

    CONFIG_ACTIONS = (
        "action_generate_signing_secret",
        "action_clear_oauth2_token",
        "action_send_now",
        "action_preview_payload",
        "action_pause",
        "action_resume",
        "action_open_automate",
    )

    def test_config_actions_refused_below_manager(self):
        secret = self.config.signing_secret
        for user in (self.portal, self.internal, self.bj_user, self.other_manager):
            for method in self.CONFIG_ACTIONS:
                with (
                    self.subTest(user=user.login, method=method),
                    self.assertRaises(AccessError),
                ):
                    getattr(self.config.with_user(user), method)()
        self.assertEqual(self.config.signing_secret, secret)
        self.assertEqual(self.config.oauth2_access_token, "cached-token")
        self.assertFalse(self.server.received)

    def test_delivery_actions_refused_below_manager(self):
        for user in (self.portal, self.internal, self.bj_user, self.other_manager):
            for method in ("action_retry", "action_cancel"):
                with (
                    self.subTest(user=user.login, method=method),
                    self.assertRaises(AccessError),
                ):
                    getattr(self.delivery.with_user(user), method)()
        self.assertEqual(self.delivery.state, "dead")

    def test_manager_may(self):
        config = self.config.with_user(self.bj_manager)
        config.action_clear_oauth2_token()
        self.assertFalse(self.config.oauth2_access_token)
        old = self.config.signing_secret
        config.action_generate_signing_secret()
        self.assertNotEqual(self.config.signing_secret, old)
        self.delivery.with_user(self.bj_manager).action_cancel()
        self.assertEqual(self.delivery.state, "cancelled")

    def test_form_opens_for_every_bj_user(self):
        for user in (self.bj_user, self.bj_manager):
            with self.subTest(user=user.login):
                config = self.config.with_user(user)
                views = config.get_views([(False, "form")])
                fields_ = list(views["models"]["bj.api.sync.config"]["fields"])
                config.web_read({name: {} for name in fields_})
                self.assertEqual(config.automation_count, 0)
