"""The Sample Payload panel of the configuration form: the Preview's payload,
built with the reader's own rights, and never by code a reader may not run."""

import json

from odoo import Command
from odoo.exceptions import AccessError
from odoo.tests import Form, tagged

from .common import BjApiSyncCase, UsersMixin

NOT_AVAILABLE = "The sample payload is not available"


@tagged("post_install", "-at_install")
class TestSamplePayload(UsersMixin, BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.company_a = cls.env.ref("base.main_company")
        cls.partner_a = cls.env["res.partner"].create(
            {
                "name": "Sample Alpha",
                "email": "alpha@a.example.com",
                "company_id": cls.company_a.id,
            }
        )
        cls.partner_b = cls.env["res.partner"].create(
            {
                "name": "Sample Beta",
                "email": "beta@b.example.com",
                "company_id": cls.company_b.id,
            }
        )

    def make_sample_config(self, lines=None, **values):
        return self.make_config(
            lines=lines
            or [("name", "name", "plain"), ("email", "contact.email", "plain")],
            filter_domain="[('name', 'like', 'Sample ')]",
            **values,
        )

    def sample(self, config, user):
        return config.with_user(user).sample_payload

    def test_sample_is_the_preview_body(self):
        config = self.make_sample_config()
        sample = self.sample(config, self.bj_manager)
        self.assertEqual(
            json.loads(sample),
            {"name": "Sample Alpha", "contact": {"email": "alpha@a.example.com"}},
        )
        # One builder: the panel shows what Preview Payload shows, nothing sent.
        action = config.with_user(self.bj_manager).action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertEqual(sample, preview.request_body)
        self.assertFalse(self.server.received)

    def test_read_only_user_sees_a_sample_without_code(self):
        sample = self.sample(self.make_sample_config(), self.bj_user)
        self.assertEqual(json.loads(sample)["name"], "Sample Alpha")

    def test_record_rules_of_the_reader_apply(self):
        """A manager of another company gets the first record *they* may read:
        the other company's partner never shows up, even in sudo()."""
        config = self.make_sample_config()
        for env_config in (
            config.with_user(self.other_manager),
            config.with_user(self.other_manager).sudo(),
        ):
            sample = env_config.sample_payload
            self.assertEqual(json.loads(sample)["name"], "Sample Beta")
            self.assertNotIn("alpha", sample.lower())

    def test_nothing_the_reader_may_read(self):
        config = self.make_sample_config()
        config.filter_domain = "[('name', '=', 'Sample Alpha')]"
        sample = self.sample(config, self.other_manager)
        self.assertEqual(
            sample, "No res.partner record you may read matches the filter domain."
        )

    def test_configuration_of_another_company(self):
        config = self.make_sample_config(company_id=self.company_a.id)
        with self.assertRaises(AccessError):
            config.with_user(self.other_manager).read(["sample_payload"])
        # Even a caller that reaches the field directly learns nothing.
        sample = self.sample(config, self.other_manager)
        self.assertEqual(sample, "You are not allowed to read this configuration.")

    def test_users_without_rights(self):
        config = self.make_sample_config()
        for user in (self.internal, self.portal):
            with self.assertRaises(AccessError):
                config.with_user(user).read(["sample_payload"])
            self.assertEqual(
                self.sample(config, user),
                "You are not allowed to read this configuration.",
            )

    def test_model_the_reader_may_not_read(self):
        self.env["ir.config_parameter"].set_param("bj_api_sync.sample_probe", "s3cr3t")
        config = self.make_config(
            lines=[("key", "key", "plain"), ("value", "value", "plain")],
            model_id=self.env["ir.model"]._get("ir.config_parameter").id,
            filter_domain="[('key', '=', 'bj_api_sync.sample_probe')]",
        )
        sample = self.sample(config, self.bj_manager)
        self.assertIn(NOT_AVAILABLE, sample)
        self.assertIn("ir.config_parameter", sample)
        self.assertNotIn("s3cr3t", sample)
        self.assertEqual(
            json.loads(self.sample(config, self.admin_user))["value"], "s3cr3t"
        )

    def test_python_script_runs_for_managers_only(self):
        config = self.make_sample_config(
            python_script="result = {'data': request_data, 'by': env.user.login}"
        )
        sample = json.loads(self.sample(config, self.bj_manager))
        self.assertEqual(sample["by"], "bj_manager", "code runs as the reader")
        self.assertEqual(sample["data"]["name"], "Sample Alpha")
        sample = self.sample(config, self.bj_user)
        self.assertIn(NOT_AVAILABLE, sample)
        self.assertIn("only BJ API Managers", sample)
        self.assertNotIn("Sample Alpha", sample)

    def test_python_line_of_a_nested_configuration(self):
        child = self.make_config(
            name="Nested",
            lines=[("name", "name", "plain")],
            filter_domain="[]",
        )
        child.line_ids = [
            Command.create(
                {
                    "api_key": "marker",
                    "value_type": "python",
                    "python_code": "result = env.user.login",
                }
            )
        ]
        config = self.make_sample_config()
        self.add_line(
            config,
            field_path="parent_id",
            api_key="parent",
            value_type="mapping",
            mapping_config_id=child.id,
        )
        self.assertTrue(config._runs_python_code())
        self.assertIn(NOT_AVAILABLE, self.sample(config, self.bj_user))
        sample = json.loads(self.sample(config, self.bj_manager))
        self.assertEqual(sample["name"], "Sample Alpha")
        self.assertIsNone(sample["parent"])
        # An inbound-only Python line runs nowhere when building payloads.
        child.line_ids.filtered(
            lambda line: line.value_type == "python"
        ).direction = "in"
        self.assertFalse(config._runs_python_code())
        # A nested configuration's lines are not dependencies of the panel:
        # forget this transaction's value, as the next request would.
        config.invalidate_recordset(["sample_payload"])
        self.assertEqual(json.loads(self.sample(config, self.bj_user))["parent"], None)

    def test_errors_and_secrets(self):
        config = self.make_sample_config(python_script="result = 1 / 0")
        sample = self.sample(config, self.bj_manager)
        self.assertIn(
            "The sample payload cannot be built: Python Script failed", sample
        )
        config = self.make_sample_config(
            auth_type="bearer", bearer_token="sample-bearer-secret"
        )
        self.partner_a.email = "sample-bearer-secret@a.example.com"
        sample = self.sample(config, self.bj_manager)
        self.assertNotIn("sample-bearer-secret", sample)
        self.assertIn("***@a.example.com", sample)

    def test_bad_domain_is_explained(self):
        config = self.make_sample_config()
        # Bypass the save-time check, as a field renamed by an upgrade would.
        self.env.cr.execute(
            "UPDATE bj_api_sync_config SET filter_domain = %s WHERE id = %s",
            ("[('no_such_field', '=', 1)]", config.id),
        )
        config.invalidate_recordset(["filter_domain"])
        sample = self.sample(config, self.bj_manager)
        self.assertIn("The sample payload cannot be built", sample)
        self.assertIn("Filter Domain", sample)

    def test_only_saved_out_configurations(self):
        self.assertIn(
            "Save the configuration",
            self.Config.new({"request_type": "out"}).sample_payload,
        )
        self.assertFalse(self.Config.new({"request_type": "in"}).sample_payload)
        config = self.make_sample_config(line_ids=[])
        self.assertEqual(
            self.sample(config, self.bj_manager),
            "Add field mappings to see a sample payload.",
        )

    def test_form_shows_the_panel(self):
        config = self.make_sample_config()
        form = Form(config.with_user(self.bj_user))
        self.assertEqual(json.loads(form.sample_payload)["name"], "Sample Alpha")
        arch = self.env.ref("bj_api_sync.bj_api_sync_config_view_form").arch
        self.assertIn('name="sample_payload"', arch)
