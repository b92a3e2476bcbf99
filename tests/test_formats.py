"""Body formats (JSON, form, XML) and changed-fields payloads (SPEC §14)."""

import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from odoo import Command
from odoo.exceptions import ValidationError
from odoo.tests import tagged

from ..models.bj_api_sync_changes import CHANGES_KEY
from ..models.bj_api_sync_outbox import TXN_KEY
from ..tools import jsonenc, signing
from .common import BjApiSyncCase

FORM = "application/x-www-form-urlencoded"
XML = "application/xml; charset=utf-8"
LINES = (
    ("name", "name", "plain"),
    ("email", "customer.email", "plain"),
    ("category_id.name", "tags", "plain"),
    ("is_company", "company", "plain"),
    ("phone", "phone", "plain"),
)


def content_type(received):
    return {k.lower(): v for k, v in received.headers.items()}["content-type"]


@tagged("post_install", "-at_install")
class TestBodyFormats(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]
        tags = cls.env["res.partner.category"].create(
            [{"name": "VIP"}, {"name": "Zoë"}]
        )
        cls.partner = cls.env["res.partner"].create(
            {
                "name": "Ann & <Co>",
                "email": "ann@example.com",
                "ref": "FMT-1",
                "is_company": True,
                "category_id": [Command.set(tags.ids)],
            }
        )

    def make_format_config(self, body_format, **values):
        return self.make_config(
            lines=LINES,
            body_format=body_format,
            filter_domain="[('ref', 'like', 'FMT-')]",
            **values,
        )

    def send_queued(self, config, records):
        deliveries = config._enqueue(records, "manual")
        sent = self.Delivery._process_due()
        self.assertEqual(sent, deliveries)
        self.assertEqual(set(deliveries.mapped("state")), {"done"})
        return deliveries

    # -- form --------------------------------------------------------------

    def test_form_body_and_content_type(self):
        config = self.make_format_config("form")
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success")
        got = self.server.received[0]
        self.assertEqual(content_type(got), FORM)
        self.assertEqual(
            parse_qsl(got.body.decode(), keep_blank_values=True),
            [
                ("name", "Ann & <Co>"),
                ("customer[email]", "ann@example.com"),
                ("tags[0]", "VIP"),
                ("tags[1]", "Zoë"),
                ("company", "true"),
                ("phone", ""),
            ],
        )
        self.assertEqual(log.request_body, got.body.decode())

    def test_form_page_is_indexed_from_the_top(self):
        second = self.partner.copy({"name": "Bob", "ref": "FMT-2"})
        config = self.make_format_config("form", is_paginated=True, page_size=10)
        config._make_outbound_http_request(self.partner | second)
        pairs = parse_qsl(self.server.received[0].body.decode())
        self.assertIn(("0[name]", "Ann & <Co>"), pairs)
        self.assertIn(("1[name]", "Bob"), pairs)

    # -- xml ---------------------------------------------------------------

    def test_xml_body_and_content_type(self):
        config = self.make_format_config("xml", xml_root_tag="partner")
        log = config._make_outbound_http_request(self.partner)
        self.assertEqual(log.state, "success")
        got = self.server.received[0]
        self.assertEqual(content_type(got), XML)
        text = got.body.decode("utf-8")
        self.assertIn("<name>Ann &amp; &lt;Co&gt;</name>", text)
        root = ET.fromstring(got.body)
        self.assertEqual(root.tag, "partner")
        self.assertEqual(root.findtext("name"), "Ann & <Co>")
        self.assertEqual(root.findtext("customer/email"), "ann@example.com")
        self.assertEqual([i.text for i in root.find("tags")], ["VIP", "Zoë"])
        self.assertEqual(root.findtext("company"), "true")
        self.assertEqual(len(root.find("phone")), 0)
        self.assertIsNone(root.find("phone").text)
        self.assertEqual(log.request_body, text)

    def test_queued_deliveries_send_the_same_bytes(self):
        for body_format in ("form", "xml"):
            with self.subTest(body_format=body_format):
                self.server.reset()
                config = self.make_format_config(body_format)
                config._make_outbound_http_request(self.partner)
                immediate = self.server.received[0]
                deliveries = self.send_queued(config, self.partner)
                queued = self.server.received[1]
                self.assertEqual(queued.body, immediate.body)
                self.assertEqual(deliveries.payload, immediate.body.decode())
                self.assertEqual(content_type(queued), content_type(immediate))
                self.assertEqual(
                    content_type(queued), FORM if body_format == "form" else XML
                )

    def test_custom_content_type_header_wins(self):
        config = self.make_format_config(
            "xml",
            header_ids=[Command.create({"key": "content-type", "value": "text/xml"})],
        )
        config._make_outbound_http_request(self.partner)
        self.send_queued(config, self.partner)
        for got in self.server.received:
            self.assertEqual(content_type(got), "text/xml")
            self.assertTrue(got.body.startswith(b"<?xml"))

    def test_json_stays_the_default(self):
        config = self.make_config(lines=LINES)
        self.assertEqual(config.body_format, "json")
        config._make_outbound_http_request(self.partner)
        got = self.server.received[0]
        self.assertEqual(content_type(got), "application/json")
        self.assertEqual(got.json()["customer"], {"email": "ann@example.com"})

    def test_signature_signs_the_bytes_sent(self):
        config = self.make_format_config("xml", sign_requests=True)
        config.action_generate_signing_secret()
        secret = config.sudo().signing_secret
        config._make_outbound_http_request(self.partner)
        self.send_queued(config, self.partner)
        self.assertEqual(len(self.server.received), 2)
        for got in self.server.received:
            self.assertTrue(got.body.startswith(b"<?xml"))
            signing.verify(secret, got.headers, got.body)
            # Not the JSON text of the same object: the XML bytes were signed.
            as_json = jsonenc.encode({"name": "Ann & <Co>"})
            with self.assertRaises(signing.SignatureError):
                signing.verify(secret, got.headers, as_json)

    def test_preview_shows_the_encoded_body(self):
        config = self.make_format_config("form")
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertFalse(self.server.received)
        self.assertIn("name=Ann+%26+%3CCo%3E", preview.request_body)
        self.assertIn("customer%5Bemail%5D=ann%40example.com", preview.request_body)
        self.assertEqual(json.loads(preview.request_headers)["Content-Type"], FORM)
        config.body_format = "xml"
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertEqual(ET.fromstring(preview.request_body.encode()).tag, "data")

    def test_get_sends_no_body_whatever_the_format(self):
        config = self.make_format_config(
            "xml", http_method_ids=[Command.set(self.method_get.ids)]
        )
        config._make_outbound_http_request(self.partner)
        self.send_queued(config, self.partner)
        for got in self.server.received:
            self.assertEqual(got.method, "GET")
            self.assertEqual(got.body, b"")
            self.assertIn(("name", "Ann & <Co>"), got.query)

    # -- bad input ---------------------------------------------------------

    def test_bad_xml_root_tag_is_refused_at_save(self):
        for tag in ("my root", "1data", "ns:data"):
            with self.subTest(tag=tag), self.assertRaises(ValidationError) as caught:
                self.make_format_config("xml", xml_root_tag=tag)
            self.assertIn("XML Root Tag", str(caught.exception))
            self.assertIn(repr(tag), str(caught.exception))
        config = self.make_format_config("xml")
        with self.assertRaises(ValidationError) as caught:
            config.xml_root_tag = False
        self.assertIn("XML Root Tag", str(caught.exception))

    def test_key_that_is_no_xml_name_fails_that_record_only(self):
        other = self.partner.copy({"name": "Fine", "ref": "FMT-OK"})
        config = self.make_format_config("xml")
        self.add_line(
            config,
            api_key="extra",
            value_type="python",
            python_code="result = {'first name': 1} if record.name != 'Fine' else 2",
        )
        logs = config._make_outbound_http_request(self.partner | other)
        bad = logs.filtered(lambda log: log.res_ids == str(self.partner.id))
        self.assertEqual(bad.state, "error")
        self.assertIn("cannot be sent as XML", bad.error_message)
        self.assertIn("The key 'first name' at $.extra", bad.error_message)
        self.assertEqual((logs - bad).state, "success")
        self.assertEqual(len(self.server.received), 1)
        rows = config._enqueue(self.partner, "manual")
        self.assertEqual(rows.state, "dead")
        self.assertIn("'first name'", rows.last_error)


@tagged("post_install", "-at_install")
class TestChangedFields(BjApiSyncCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]
        cls.company_a, cls.company_b = cls.env["res.partner"].create(
            [
                {"name": "Company A", "is_company": True},
                {"name": "Company B", "is_company": True},
            ]
        )
        cls.partner = cls.env["res.partner"].create(
            {
                "name": "Before",
                "email": "before@example.com",
                "ref": "CH-1",
                "parent_id": cls.company_a.id,
            }
        )

    def setUp(self):
        super().setUp()
        # A new transaction: nothing noted or queued by an earlier test.
        for key in (CHANGES_KEY, TXN_KEY):
            self.env.cr.postcommit.data.pop(key, None)

    def make_changed_config(self, lines=None, trigger="on_write", **values):
        values.setdefault("payload_scope", "changed")
        config = self.make_config(
            lines=lines
            or (
                ("ref", "ref", "plain"),
                ("name", "name", "plain"),
                ("email", "email", "plain"),
                ("parent_id", "company", "relational"),
                ("parent_id", "company_id", "plain"),
                ("phone", "phone", "plain"),
            ),
            filter_domain="[('ref', 'like', 'CH-')]",
            **values,
        )
        identifier = config.line_ids.filtered(lambda line: line.api_key == "ref")
        identifier.is_identifier = True
        self.env["base.automation"].create(
            {
                "name": "BJ changes",
                "model_id": self.partner_model.id,
                "trigger": trigger,
                "action_server_ids": [
                    Command.create(
                        dict(
                            config._prepare_trigger_action_values("Sync changes"),
                            usage="base_automation",
                        )
                    )
                ],
            }
        )
        return config

    def commit_hooks(self):
        """What a commit runs before COMMIT (the pre-commit hooks)."""
        self.env.cr.flush()

    def deliveries(self, config):
        return self.Delivery.search([("config_id", "=", config.id)], order="id")

    def test_write_sends_the_identifier_and_the_changed_line(self):
        config = self.make_changed_config()
        self.partner.email = "after@example.com"
        self.commit_hooks()
        row = self.deliveries(config)
        self.assertEqual(row.event, "write")
        expected = {"ref": "CH-1", "email": "after@example.com"}
        self.assertEqual(json.loads(row.payload), expected)
        self.Delivery._process_due()
        self.assertEqual(row.state, "done")
        self.assertEqual(self.server.received[0].json(), expected)

    def test_whole_object_by_default(self):
        config = self.make_changed_config(payload_scope="full")
        self.partner.email = "after@example.com"
        self.commit_hooks()
        payload = json.loads(self.deliveries(config).payload)
        self.assertEqual(payload["name"], "Before")
        self.assertEqual(payload["email"], "after@example.com")
        self.assertNotIn("previous", payload)

    def test_two_writes_one_delivery_with_values_before_the_first(self):
        config = self.make_changed_config(include_previous=True)
        self.partner.name = "Middle"
        self.partner.write({"name": "After", "email": "after@example.com"})
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 1)
        self.assertEqual(
            json.loads(rows.payload),
            {
                "ref": "CH-1",
                "name": "After",
                "email": "after@example.com",
                "previous": {"name": "Before", "email": "before@example.com"},
            },
        )

    def test_previous_of_relational_lines(self):
        config = self.make_changed_config(include_previous=True)
        self.partner.parent_id = self.company_b
        self.commit_hooks()
        self.assertEqual(
            json.loads(self.deliveries(config).payload),
            {
                "ref": "CH-1",
                "company": "Company B",
                "company_id": self.company_b.id,
                "previous": {"company": "Company A", "company_id": self.company_a.id},
            },
        )

    def test_previous_of_paths_through_relations(self):
        tags = self.env["res.partner.category"].create([{"name": "T1"}, {"name": "T2"}])
        self.partner.category_id = tags[:1]
        config = self.make_changed_config(
            lines=(
                ("ref", "ref", "plain"),
                ("parent_id.name", "company.name", "plain"),
                ("category_id.name", "tags", "plain"),
                ("category_id", "tag_ids", "plain"),
            ),
            include_previous=True,
        )
        self.partner.write(
            {"parent_id": self.company_b.id, "category_id": [Command.set(tags.ids)]}
        )
        self.commit_hooks()
        self.assertEqual(
            json.loads(self.deliveries(config).payload),
            {
                "ref": "CH-1",
                "company": {"name": "Company B"},
                "tags": ["T1", "T2"],
                "tag_ids": tags.ids,
                "previous": {
                    "company": {"name": "Company A"},
                    "tags": ["T1"],
                    "tag_ids": tags[:1].ids,
                },
            },
        )

    def test_write_of_unmapped_field_sends_nothing(self):
        config = self.make_changed_config()
        self.partner.comment = "Not mapped"
        self.partner.function = "Not mapped either"
        self.commit_hooks()
        self.assertFalse(self.deliveries(config))
        # A mapped field written back to its value before: no change either.
        self.partner.name = "Briefly"
        self.partner.name = "Before"
        self.commit_hooks()
        self.assertFalse(self.deliveries(config))

    def test_create_sends_the_whole_object(self):
        config = self.make_changed_config(
            trigger="on_create_or_write", include_previous=True
        )
        partner = self.env["res.partner"].create(
            {"name": "New", "ref": "CH-2", "email": "new@example.com"}
        )
        partner.name = "New name"
        self.commit_hooks()
        row = self.deliveries(config)
        self.assertEqual(row.event, "create")
        self.assertEqual(
            json.loads(row.payload),
            {
                "ref": "CH-2",
                "name": "New name",
                "email": "new@example.com",
                "company": None,
                "company_id": None,
                "phone": None,
            },
        )
        # A later transaction's update of that record sends its changes only.
        self.env.cr.postcommit.data.clear()  # what COMMIT would do
        self.env.cr.execute(
            "UPDATE res_partner SET create_date = create_date - interval '1 minute' "
            "WHERE id = %s",
            (partner.id,),
        )
        partner.invalidate_recordset(["create_date"])
        partner.email = "newer@example.com"
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(rows.mapped("event"), ["create", "write"])
        self.assertEqual(
            json.loads(rows[1].payload),
            {
                "ref": "CH-2",
                "email": "newer@example.com",
                "previous": {"email": "new@example.com"},
            },
        )

    def test_rule_with_other_actions_sends_changes_too(self):
        config = self.make_changed_config()
        automation = config.automation_ids
        automation.action_server_ids = [
            Command.create(
                {
                    "name": "Something else",
                    "model_id": self.partner_model.id,
                    "state": "code",
                    "code": "answer = 42",
                    "usage": "base_automation",
                }
            )
        ]
        self.partner.name = "Per record"
        self.commit_hooks()
        self.assertEqual(
            json.loads(self.deliveries(config).payload),
            {"ref": "CH-1", "name": "Per record"},
        )

    def test_python_lines_always_go(self):
        config = self.make_changed_config(
            lines=(
                ("ref", "ref", "plain"),
                ("name", "name", "plain"),
                ("email", "email", "plain"),
            )
        )
        self.add_line(
            config,
            api_key="shout",
            value_type="python",
            python_code="result = (record.name or '').upper()",
        )
        self.partner.email = "after@example.com"
        self.commit_hooks()
        self.assertEqual(
            json.loads(self.deliveries(config).payload),
            {"ref": "CH-1", "email": "after@example.com", "shout": "BEFORE"},
        )

    def test_changes_queued_at_a_savepoint_are_merged_or_cancelled(self):
        config = self.make_changed_config(include_previous=True)
        self.partner.name = "S1"
        with self.env.cr.savepoint():  # flushes: runs the pre-commit hooks
            self.partner.email = "s@example.com"
        self.commit_hooks()
        row = self.deliveries(config)
        self.assertEqual(len(row), 1)
        self.assertEqual(
            json.loads(row.payload),
            {
                "ref": "CH-1",
                "name": "S1",
                "email": "s@example.com",
                "previous": {"name": "Before", "email": "before@example.com"},
            },
        )
        # Both fields back to their values before: the row would lie.
        self.partner.write({"name": "Before", "email": "before@example.com"})
        self.commit_hooks()
        self.assertEqual(row.state, "cancelled")
        self.assertEqual(len(self.deliveries(config)), 1)

    def test_immediate_rule_sends_changes_at_once(self):
        config = self.make_changed_config(
            delivery_mode="immediate", include_previous=True
        )
        self.partner.write({"email": "now@example.com", "comment": "x"})
        self.assertEqual(len(self.server.received), 1)
        self.assertEqual(
            self.server.received[0].json(),
            {
                "ref": "CH-1",
                "email": "now@example.com",
                "previous": {"email": "before@example.com"},
            },
        )
        self.partner.comment = "unmapped only"
        self.assertEqual(len(self.server.received), 1)
        self.assertFalse(self.deliveries(config))

    def test_changed_fields_in_a_form_body(self):
        self.make_changed_config(body_format="form", include_previous=True)
        self.partner.email = "form@example.com"
        self.commit_hooks()
        self.Delivery._process_due()
        got = self.server.received[0]
        self.assertEqual(content_type(got), FORM)
        self.assertEqual(
            parse_qsl(got.body.decode()),
            [
                ("ref", "CH-1"),
                ("email", "form@example.com"),
                ("previous[email]", "before@example.com"),
            ],
        )
