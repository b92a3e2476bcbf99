"""Import (GET configs reading their response into records) and write-back
(SPEC §12), against the scripted server on 127.0.0.1."""

import json

from odoo import Command
from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import BjApiSyncCase, Reply

IN_LINES = (
    ("ref", "code", "plain"),
    ("name", "full_name", "plain"),
    ("email", "email", "plain"),
)


def page(items, **extra):
    return Reply(200, body=json.dumps(dict({"data": items}, **extra)))


def people(start, count, prefix="IMP"):
    return [
        {
            "code": f"{prefix}-{i:03d}",
            "full_name": f"Person {i}",
            "email": f"p{i}@x.test",
        }
        for i in range(start, start + count)
    ]


@tagged("post_install", "-at_install")
class TestImport(BjApiSyncCase):
    def make_import(self, **values):
        values = dict(
            {
                "name": "Import people",
                "request_url": self.server.url("/people"),
                "http_method_ids": [Command.set(self.method_get.ids)],
                "import_response": True,
                "response_data_path": "data",
            },
            **values,
        )
        config = self.make_config(
            lines=(),
            line_ids=[
                Command.create(
                    {
                        "field_path": path,
                        "api_key": key,
                        "value_type": vtype,
                        "sequence": index,
                        "direction": "in",
                        "is_identifier": path == "ref",
                    }
                )
                for index, (path, key, vtype) in enumerate(IN_LINES)
            ],
            **values,
        )
        return config

    def partners(self, prefix="IMP"):
        return (
            self.env["res.partner"]
            .with_context(active_test=False)
            .search([("ref", "=like", f"{prefix}-%")], order="ref")
        )

    def test_page_pagination_creates_then_updates(self):
        config = self.make_import(
            pull_pagination="page", pull_size_param="per_page", page_size=2
        )
        self.server.script(
            page(people(0, 2)), page(people(2, 2)), page(people(4, 1)), page([])
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (5, 0, 0))
        queries = [dict(r.query) for r in self.server.received]
        self.assertEqual(
            queries[:3],
            [
                {"page": "1", "per_page": "2"},
                {"page": "2", "per_page": "2"},
                {"page": "3", "per_page": "2"},
            ],
        )
        partners = self.partners()
        self.assertEqual(partners.mapped("ref"), [f"IMP-{i:03d}" for i in range(5)])
        self.assertEqual(partners[0].email, "p0@x.test")
        logs = self.Log.search([("config_id", "=", config.id)], order="id")
        self.assertEqual(logs.mapped("import_created")[:3], [2, 2, 1])
        # second run: all updates
        changed = people(0, 2)
        changed[0]["full_name"] = "Renamed"
        self.server.reset()
        self.server.script(
            page(changed), page(people(2, 2)), page(people(4, 1)), page([])
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (0, 5, 0))
        self.assertEqual(self.partners()[0].name, "Renamed")
        self.assertEqual(len(self.partners()), 5)

    def test_bad_object_fails_alone(self):
        config = self.make_import()
        items = people(0, 3)
        del items[1]["code"]
        items.append("not an object")
        self.server.script(page(items))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.failed), (2, 2))
        log = self.Log.search([("config_id", "=", config.id)])
        self.assertEqual(log.state, "error")
        self.assertIn("Object 2", log.error_message)
        self.assertIn("code", log.error_message)
        self.assertIn("Object 4", log.error_message)

    def test_not_json_and_missing_path(self):
        config = self.make_import()
        self.server.script(Reply(200, body="<html>hi</html>"))
        outcome = config._import_run(self.env)
        self.assertTrue(outcome.errors)
        self.assertIn("not JSON", outcome.errors[0])
        self.server.script(Reply(200, body=json.dumps({"items": []})))
        outcome = config._import_run(self.env)
        self.assertIn("response_data_path 'data' not found", outcome.errors[0])

    def test_import_needs_get_and_identifier(self):
        with self.assertRaises(ValidationError):
            self.make_import(http_method_ids=[Command.set(self.method_post.ids)])


@tagged("post_install", "-at_install")
class TestWriteBack(BjApiSyncCase):
    def make_push(self, **values):
        config = self.make_config(lines=[("name", "name", "plain")], **values)
        self.add_line(
            config, field_path="ref", api_key="id", value_type="plain", direction="in"
        )
        return config

    def test_immediate_write_back(self):
        config = self.make_push()
        partner = self.env["res.partner"].create({"name": "Push me"})
        self.server.script(Reply(201, body=json.dumps({"id": "EXT-42"})))
        logs = config._make_outbound_http_request(partner)
        self.assertEqual(logs.state, "success")
        self.assertFalse(logs.write_back_error)
        self.assertEqual(partner.ref, "EXT-42")

    def test_write_back_failure_keeps_success(self):
        config = self.make_push()
        self.add_line(
            config,
            field_path="type",
            api_key="kind",
            value_type="plain",
            direction="in",
        )
        partner = self.env["res.partner"].create({"name": "Push me"})
        self.server.script(
            Reply(200, body=json.dumps({"id": "EXT-1", "kind": "bogus"}))
        )
        logs = config._make_outbound_http_request(partner)
        self.assertEqual(logs.state, "success")
        self.assertIn("Write-back failed", logs.write_back_error)
        self.assertFalse(partner.ref)

    def test_queued_write_back(self):
        config = self.make_push(delivery_mode="queued")
        partner = self.env["res.partner"].create({"name": "Queue me"})
        row = config._enqueue(partner, "manual")
        self.server.script(Reply(201, body=json.dumps({"id": "EXT-Q"})))
        self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "done")
        partner.invalidate_recordset()
        self.assertEqual(partner.ref, "EXT-Q")
