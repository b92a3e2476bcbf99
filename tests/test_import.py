"""Import (GET configs reading their response into records) and write-back
(SPEC §12), against the scripted server on 127.0.0.1."""

import contextlib
import json
import re
import threading
from datetime import datetime
from unittest.mock import patch

from odoo import Command
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import new_test_user, tagged

from odoo.addons.base.models.ir_cron import IrCron

from .common import BjApiSyncCase, Reply, UsersMixin

IN_LINES = (
    ("ref", "code", "plain"),
    ("name", "full_name", "plain"),
    ("email", "email", "plain"),
)


def page(items, headers=None, **extra):
    return Reply(
        200, body=json.dumps(dict({"data": items}, **extra)), headers=headers or {}
    )


def people(start, count, prefix="IMP"):
    return [
        {
            "code": f"{prefix}-{i:03d}",
            "full_name": f"Person {i}",
            "email": f"p{i}@x.test",
        }
        for i in range(start, start + count)
    ]


@contextlib.contextmanager
def recorded_queries():
    """The SQL queries this thread runs inside the block (Odoo's own query
    hooks, as its profiler uses them: nothing is patched)."""
    queries = []
    thread = threading.current_thread()
    previous = getattr(thread, "query_hooks", None)

    def hook(cr, query, params, start, delay):
        queries.append(str(query))

    thread.query_hooks = [*(previous or ()), hook]
    try:
        yield queries
    finally:
        if previous is None:
            del thread.query_hooks
        else:
            thread.query_hooks = previous


class ImportHelpers:
    """Factories shared by the import test classes."""

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

    def logs(self, config):
        return self.Log.search([("config_id", "=", config.id)], order="id")

    def queries(self):
        """The query string of every request received, as dicts."""
        return [dict(r.query) for r in self.server.received]

    @staticmethod
    def status_param(key="status", value="active"):
        return [Command.create({"key": key, "value": value})]


@tagged("post_install", "-at_install")
class TestImport(ImportHelpers, BjApiSyncCase):
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
class TestImportPagination(ImportHelpers, BjApiSyncCase):
    """Item 1: every strategy end to end, with the query of every page."""

    def test_page_from_zero_sends_size_and_configured_params(self):
        config = self.make_import(
            pull_pagination="page",
            pull_page_param="p",
            pull_page_start=0,
            pull_size_param="limit",
            page_size=2,
            param_ids=self.status_param(),
        )
        self.server.script(page(people(0, 2)), page(people(2, 2)), page([]))
        outcome = config._import_run(self.env)
        self.assertEqual(
            (outcome.pages, outcome.created, outcome.updated, outcome.failed),
            (3, 4, 0, 0),
        )
        self.assertEqual(
            self.queries(),
            [
                {"status": "active", "p": "0", "limit": "2"},
                {"status": "active", "p": "1", "limit": "2"},
                {"status": "active", "p": "2", "limit": "2"},
            ],
        )
        self.assertEqual({r.method for r in self.server.received}, {"GET"})
        self.assertEqual(len(self.partners()), 4)
        logs = self.logs(config)
        self.assertEqual(logs.mapped("import_created"), [2, 2, 0])
        self.assertEqual(logs.mapped("state"), ["success"] * 3)
        self.assertEqual(outcome.logs, logs.ids)

    def test_page_from_one_without_size_param(self):
        config = self.make_import(
            pull_pagination="page", pull_size_param="", page_size=3
        )
        self.server.script(page(people(0, 3)), page(people(3, 1)))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created), (2, 4))
        # A page shorter than the largest one seen ends the walk: no 3rd GET.
        self.assertEqual(self.queries(), [{"page": "1"}, {"page": "2"}])

    def test_offset_advances_by_objects_received(self):
        # The server caps pages at 2 objects although 5 are asked for: the
        # offset moves by what came back, so no object is skipped.
        config = self.make_import(
            pull_pagination="offset",
            pull_offset_param="skip",
            pull_size_param="take",
            page_size=5,
            param_ids=self.status_param(),
        )
        self.server.script(
            page(people(0, 2)),
            page(people(2, 2)),
            page(people(4, 2)),
            page(people(6, 1)),
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created, outcome.failed), (4, 7, 0))
        self.assertEqual(
            self.queries(),
            [
                {"status": "active", "skip": str(offset), "take": "5"}
                for offset in (0, 2, 4, 6)
            ],
        )
        self.assertEqual(
            self.partners().mapped("ref"), [f"IMP-{i:03d}" for i in range(7)]
        )

    def test_offset_full_pages(self):
        config = self.make_import(
            pull_pagination="offset", pull_size_param="limit", page_size=3
        )
        self.server.script(page(people(0, 3)), page(people(3, 3)), page([]))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created), (3, 6))
        self.assertEqual(
            self.queries(),
            [{"offset": str(o), "limit": "3"} for o in (0, 3, 6)],
        )

    def test_next_link_from_body_absolute_and_relative(self):
        config = self.make_import(
            pull_pagination="next_link",
            pull_next_path="links.next",
            param_ids=self.status_param(),
        )
        self.server.script(
            page(people(0, 2), links={"next": self.server.url("/people?after=2")}),
            page(people(2, 2), links={"next": "/people?after=4"}),
            page(people(4, 2), links={"next": "?after=6&kind=all"}),
            page(people(6, 1), links={"next": None}),
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created, outcome.failed), (4, 7, 0))
        self.assertIsNone(outcome.warning)
        # The configured parameters go with the first page; a next link
        # carries its own query.
        self.assertEqual(
            [r.path for r in self.server.received],
            [
                "/people?status=active",
                "/people?after=2",
                "/people?after=4",
                "/people?after=6&kind=all",
            ],
        )
        self.assertEqual(len(self.partners()), 7)

    def test_next_link_from_link_header(self):
        config = self.make_import(
            pull_pagination="next_link", param_ids=self.status_param()
        )
        first_next = self.server.url("/people?cursor=b")
        self.server.script(
            page(
                people(0, 2),
                headers={
                    "Link": f'<{self.server.url("/people?cursor=z")}>; rel="last", '
                    f'<{first_next}>; rel="next"'
                },
            ),
            page(people(2, 2), headers={"Link": '</people?cursor=c>; rel="next"'}),
            page(people(4, 1)),
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created), (3, 5))
        self.assertEqual(
            [r.path for r in self.server.received],
            ["/people?status=active", "/people?cursor=b", "/people?cursor=c"],
        )

    def test_cursor_ints_and_strings(self):
        config = self.make_import(
            pull_pagination="cursor",
            pull_cursor_path="meta.next",
            pull_cursor_param="after",
            pull_size_param="limit",
            page_size=2,
            param_ids=self.status_param(),
        )
        self.server.script(
            page(people(0, 2), meta={"next": 17}),
            page(people(2, 2), meta={"next": "c2/x=="}),
            page(people(4, 1), meta={"next": None}),
        )
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.pages, outcome.created), (3, 5))
        self.assertIsNone(outcome.warning)
        self.assertEqual(
            self.queries(),
            [
                {"status": "active", "limit": "2"},
                {"status": "active", "limit": "2", "after": "17"},
                {"status": "active", "limit": "2", "after": "c2/x=="},
            ],
        )
        self.assertEqual(len(self.partners()), 5)


@tagged("post_install", "-at_install")
class TestImportStops(ImportHelpers, BjApiSyncCase):
    """Item 2: how a walk ends."""

    def test_empty_page_stops_even_with_a_cursor(self):
        config = self.make_import(
            pull_pagination="cursor", pull_cursor_path="meta.next"
        )
        self.server.script(
            page(people(0, 2), meta={"next": "a"}),
            page([], meta={"next": "b"}),
        )
        outcome = config._import_run(self.env)
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual((outcome.pages, outcome.created), (2, 2))
        self.assertIsNone(outcome.warning)
        self.assertTrue(outcome.ok)
        self.assertEqual(self.logs(config).mapped("state"), ["success", "success"])

    def test_max_pages_stops_endless_pagination_with_warning(self):
        config = self.make_import(pull_pagination="page", page_size=2, pull_max_pages=3)
        self.server.script(page(people(0, 2)), page(people(2, 2)), page(people(4, 2)))
        # ...and the same full page for ever after.
        self.server.default = page(people(100, 2))
        outcome = config._import_run(self.env)
        self.assertEqual(len(self.server.received), 3)
        self.assertEqual(
            [q["page"] for q in self.queries()], ["1", "2", "3"], "no 4th page"
        )
        self.assertEqual(outcome.warning, "Stopped after 3 pages (pull_max_pages)")
        self.assertEqual((outcome.pages, outcome.created, outcome.failed), (3, 6, 0))
        logs = self.logs(config)
        self.assertEqual(len(logs), 3)
        self.assertIn("pull_max_pages", logs[-1].error_message)
        self.assertFalse(logs[0].error_message)
        self.assertEqual(len(self.partners()), 6, "what was imported stays")

    def test_max_pages_stops_endless_next_links(self):
        config = self.make_import(
            pull_pagination="next_link", pull_next_path="next", pull_max_pages=2
        )
        self.server.script(
            page(people(0, 1), next="/people?n=2"),
            page(people(1, 1), next="/people?n=3"),
            page(people(2, 1), next="/people?n=4"),
        )
        outcome = config._import_run(self.env)
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(outcome.warning, "Stopped after 2 pages (pull_max_pages)")
        self.assertEqual(len(self.partners()), 2)

    def test_repeated_cursor_stops_with_warning(self):
        config = self.make_import(
            pull_pagination="cursor", pull_cursor_path="meta.next"
        )
        self.server.script(
            page(people(0, 2), meta={"next": "X"}),
            page(people(2, 2), meta={"next": "X"}),
        )
        self.server.default = page(people(50, 2), meta={"next": "Y"})
        outcome = config._import_run(self.env)
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(
            self.queries(), [{"per_page": "100"}, {"per_page": "100", "cursor": "X"}]
        )
        self.assertIn("'X' came back a second time", outcome.warning)
        logs = self.logs(config)
        self.assertIn("came back a second time", logs[-1].error_message)
        self.assertEqual(logs.mapped("import_created"), [2, 2])
        self.assertEqual(len(self.partners()), 4, "what was imported stays")

    def test_repeated_next_link_stops_with_warning(self):
        config = self.make_import(pull_pagination="next_link", pull_next_path="next")
        self.server.script(
            page(people(0, 1), next="/people?n=2"),
            page(people(1, 1), next="/people?n=2"),
        )
        outcome = config._import_run(self.env)
        self.assertEqual(len(self.server.received), 2)
        self.assertIn("was already visited", outcome.warning)
        self.assertEqual(len(self.partners()), 2)


@tagged("post_install", "-at_install")
class TestImportBadInput(ImportHelpers, BjApiSyncCase):
    """Item 3: each bad input gives a log row naming the problem; what was
    imported before stays."""

    def paged(self, **values):
        return self.make_import(pull_pagination="page", page_size=2, **values)

    def assert_page_two_failed(self, config, outcome, *messages):
        logs = self.logs(config)
        self.assertEqual(len(logs), 2)
        self.assertEqual(logs.mapped("state"), ["success", "error"])
        self.assertEqual(logs[0].import_created, 2)
        for message in messages:
            self.assertIn(message, logs[1].error_message)
            self.assertIn(message, " ".join(outcome.errors))
        self.assertEqual(outcome.created, 2)
        self.assertFalse(outcome.ok)
        self.assertEqual(len(self.server.received), 2, "the walk stops there")
        self.assertEqual(
            self.partners().mapped("ref"), ["IMP-000", "IMP-001"], "page 1 stays"
        )
        return logs[1]

    def test_response_not_json(self):
        config = self.paged()
        self.server.script(page(people(0, 2)), Reply(200, body="<html>oops</html>"))
        outcome = config._import_run(self.env)
        self.assert_page_two_failed(
            config, outcome, "The response is not JSON", "nothing imported from"
        )

    def test_data_path_missing(self):
        config = self.paged()
        self.server.script(
            page(people(0, 2)), Reply(200, body=json.dumps({"items": people(2, 2)}))
        )
        outcome = config._import_run(self.env)
        self.assert_page_two_failed(
            config,
            outcome,
            "response_data_path 'data' not found in the response; top-level keys: "
            "items",
        )

    def test_data_path_gives_a_scalar(self):
        config = self.paged()
        self.server.script(
            page(people(0, 2)), Reply(200, body=json.dumps({"data": "none left"}))
        )
        outcome = config._import_run(self.env)
        self.assert_page_two_failed(
            config,
            outcome,
            "response_data_path 'data' gives a string, not an object or a list",
        )

    def test_body_scalar_without_path(self):
        config = self.make_import(response_data_path=False)
        self.server.script(Reply(200, body="42"))
        outcome = config._import_run(self.env)
        log = self.logs(config)
        self.assertEqual(log.state, "error")
        self.assertIn("The response is a number", log.error_message)
        self.assertEqual(outcome.created, 0)

    def test_http_error_on_page_two(self):
        config = self.paged()
        self.server.script(page(people(0, 2)), Reply(500, body="boom"))
        outcome = config._import_run(self.env)
        log = self.assert_page_two_failed(config, outcome)
        self.assertEqual(log.status_code, 500)
        self.assertIn("500", log.error_message)
        self.assertEqual(outcome.errors, [log.error_message])

    def test_object_without_identifier_fails_alone(self):
        config = self.make_import(pull_pagination="page", page_size=3)
        items = people(0, 3)
        del items[1]["code"]
        self.server.script(page(items), page(people(3, 3)), page([]))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.failed), (5, 1))
        self.assertEqual(len(self.server.received), 3, "the walk goes on")
        logs = self.logs(config)
        self.assertEqual(logs.mapped("import_created"), [2, 3, 0])
        self.assertEqual(logs.mapped("import_failed"), [1, 0, 0])
        self.assertEqual(logs.mapped("state"), ["error", "success", "success"])
        self.assertIn("Object 2", logs[0].error_message)
        self.assertIn(
            "the identifier key 'code' is missing or empty", logs[0].error_message
        )
        self.assertEqual(
            self.partners().mapped("ref"),
            ["IMP-000", "IMP-002", "IMP-003", "IMP-004", "IMP-005"],
        )

    def test_next_link_to_another_port_is_refused(self):
        other = self.start_server()
        config = self.make_import(
            pull_pagination="next_link", pull_next_path="links.next"
        )
        self.server.script(
            page(people(0, 2), links={"next": other.url("/people?page=2")})
        )
        outcome = config._import_run(self.env)
        self.assertEqual(other.received, [], "the other server hears nothing")
        self.assertEqual(len(self.server.received), 1)
        self.assertIn("points to another host", outcome.errors[0])
        log = self.logs(config)
        self.assertEqual(log.state, "error")
        self.assertEqual(log.import_created, 2)
        self.assertIn(other.url("/people?page=2"), log.error_message)
        self.assertIn("points to another host", log.error_message)
        self.assertEqual(len(self.partners()), 2)

    def test_next_link_to_localhost_is_another_host(self):
        other = self.start_server()
        config = self.make_import(pull_pagination="next_link")
        stolen = f"http://localhost:{other.port}/people?page=2"
        same_port = f"http://localhost:{self.server.port}/people?page=2"
        for link in (stolen, same_port):
            with self.subTest(link=link):
                self.server.reset()
                self.server.script(
                    page(people(0, 2), headers={"Link": f'<{link}>; rel="next"'})
                )
                outcome = config._import_run(self.env)
                self.assertEqual(len(self.server.received), 1)
                self.assertEqual(other.received, [])
                self.assertIn("another host (localhost)", outcome.errors[0])
                self.assertIn("another host", self.logs(config)[-1].error_message)

    def test_refused_value_fails_that_object_only(self):
        config = self.make_import()
        self.add_line(
            config,
            field_path="type",
            api_key="kind",
            value_type="plain",
            direction="in",
        )
        existing = self.env["res.partner"].create({"name": "Kept", "ref": "IMP-003"})
        items = people(0, 4)
        items[0]["kind"] = "invoice"
        items[1]["kind"] = "bogus"  # a new record
        items[3]["kind"] = "nonsense"  # an existing record
        self.server.script(page(items))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (2, 0, 2))
        log = self.logs(config)
        self.assertEqual(log.state, "error")
        self.assertEqual(
            (log.import_created, log.import_updated, log.import_failed), (2, 0, 2)
        )
        self.assertIn('Object 2 (code="IMP-001")', log.error_message)
        self.assertIn("Key 'kind'", log.error_message)
        self.assertIn('value "bogus"', log.error_message)
        self.assertIn("allowed values are", log.error_message)
        self.assertIn('Object 4 (code="IMP-003")', log.error_message)
        self.assertEqual(
            self.partners().mapped("ref"), ["IMP-000", "IMP-002", "IMP-003"]
        )
        self.assertEqual(self.partners()[0].type, "invoice")
        self.assertEqual(existing.name, "Kept", "the failed update wrote nothing")


@tagged("post_install", "-at_install")
class TestImportBatching(ImportHelpers, BjApiSyncCase):
    """Item 4: identifiers looked up once per page, creates batched."""

    LOOKUP = re.compile(
        r'^\s*SELECT\s.*FROM "res_partner"\s.*WHERE.*"ref"', re.I | re.S
    )
    INSERT = re.compile(r'^\s*INSERT INTO "res_partner"\s', re.I)
    SAVEPOINT = re.compile(r"^\s*(RELEASE |ROLLBACK TO )?SAVEPOINT\s", re.I)

    def measure(self, config, items):
        """Import one page; return ``(all queries, outcome)``."""
        self.server.reset()
        self.server.script(page(items))
        self.env.flush_all()
        count = self.env.cr.sql_log_count
        with recorded_queries() as queries:
            outcome = config._import_run(self.env)
            self.env.flush_all()
        self.assertEqual(len(queries), self.env.cr.sql_log_count - count)
        self.assertFalse(outcome.failed)
        return queries, outcome

    def split(self, queries):
        """``(outside, blocks)``: the queries run outside any savepoint, and
        the number of queries inside each outermost savepoint (each update,
        or the one create of a page)."""
        outside, blocks, depth = [], [], 0
        for query in queries:
            match = self.SAVEPOINT.search(query)
            if match and not match.group(1):
                if not depth:
                    blocks.append(0)
                depth += 1
            elif match:
                depth -= 1 if match.group(1).strip() == "RELEASE" else 0
            elif depth:
                blocks[-1] += 1
            else:
                outside.append(query)
        self.assertEqual(depth, 0)
        return outside, blocks

    def renamed(self, start, count, prefix, run):
        items = people(start, count, prefix)
        for item in items:
            item["full_name"] += f" v{run}"
        return items

    def test_queries_do_not_grow_with_the_page(self):
        config = self.make_import()
        self.env["res.partner"].create(
            [
                {"name": f"Old {i}", "ref": f"OLD-{i:03d}", "email": f"p{i}@x.test"}
                for i in range(50)
            ]
        )
        # Warm the caches (mapping plans, field metadata) first.
        self.measure(config, people(0, 5, "WARM"))
        self.measure(config, self.renamed(0, 5, "OLD", 0))

        runs = {}
        for name, items, expected in (
            ("old10", self.renamed(0, 10, "OLD", 1), (0, 10)),
            ("old50", self.renamed(0, 50, "OLD", 2), (0, 50)),
            ("new10", people(0, 10, "NEWA"), (10, 0)),
            ("new50", people(0, 50, "NEWB"), (50, 0)),
            (
                "mixed50",
                self.renamed(0, 25, "OLD", 3) + people(0, 25, "NEWC"),
                (25, 25),
            ),
        ):
            queries, outcome = self.measure(config, items)
            self.assertEqual((outcome.created, outcome.updated), expected, name)
            runs[name] = queries
        info = {name: len(queries) for name, queries in runs.items()}

        # The identifier lookup: the same one or two queries for a page of 10
        # or 50 (one reads which identifiers exist, one fetches those records
        # when some do), never one per object.
        lookups = {
            name: sum(1 for q in queries if self.LOOKUP.search(q))
            for name, queries in runs.items()
        }
        self.assertEqual(
            lookups, {"old10": 2, "old50": 2, "new10": 1, "new50": 1, "mixed50": 2}
        )
        # New records: one INSERT for the whole page.
        inserts = {
            name: sum(1 for q in queries if self.INSERT.search(q))
            for name, queries in runs.items()
        }
        self.assertEqual(
            inserts, {"old10": 0, "old50": 0, "new10": 1, "new50": 1, "mixed50": 1}
        )
        # How the queries split: the updates of a page run together in one
        # savepoint, its creates together in another (one by one only when a
        # group fails). What a write of res.partner costs inside the savepoint
        # is Odoo's business (tracking, commercial fields...); this import's
        # share is what runs outside the savepoints (lookup, request, log
        # row), and that must not grow with the page. So: one savepoint per
        # group, the same number of queries outside them for 10 as for 50
        # objects, and the 40 more updates of the bigger page costing 40 times
        # the same inside.
        split = {name: self.split(queries) for name, queries in runs.items()}
        outside = {name: len(parts[0]) for name, parts in split.items()}
        blocks = {name: len(parts[1]) for name, parts in split.items()}
        inside = {name: sum(parts[1]) for name, parts in split.items()}
        self.assertEqual(
            blocks,
            {"old10": 1, "old50": 1, "new10": 1, "new50": 1, "mixed50": 2},
            info,
        )
        self.assertEqual(outside["old10"], outside["old50"], (outside, info))
        self.assertEqual(outside["new10"], outside["new50"], (outside, info))
        self.assertEqual(outside["mixed50"], outside["old50"], (outside, info))
        self.assertEqual(split["new10"][1], split["new50"][1], "one create")
        grown = inside["old50"] - inside["old10"]
        self.assertEqual(info["old50"] - info["old10"], grown, (info, inside))
        self.assertEqual(grown % 40, 0, (info, inside))
        self.assertEqual(info["new50"], info["new10"], info)

    def test_same_identifier_twice_in_a_page_gives_one_record(self):
        config = self.make_import()
        self.env["res.partner"].create({"name": "Old", "ref": "IMP-009"})
        items = people(0, 2)
        again = dict(items[0], full_name="Second")
        old = people(9, 1)
        old_again = dict(old[0], full_name="Old twice")
        self.server.script(page([items[0], *old, items[1], again, old_again]))
        outcome = config._import_run(self.env)
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (2, 3, 0))
        partners = self.partners()
        self.assertEqual(partners.mapped("ref"), ["IMP-000", "IMP-001", "IMP-009"])
        self.assertEqual(partners.mapped("name"), ["Second", "Person 1", "Old twice"])


@tagged("post_install", "-at_install")
class TestImportScheduled(ImportHelpers, BjApiSyncCase):
    """Item 5: the config's scheduled action imports, committing per page."""

    def setUp(self):
        super().setUp()
        self.commits = []
        commits = self.commits

        def commit_progress(cron, processed=0, *, remaining=None, deactivate=False):
            # The cron runner's commit, recorded: a test transaction cannot
            # commit. Odoo returns the time left; outside a cron run, infinity.
            commits.append(processed)
            return float("inf")

        patcher = patch.object(IrCron, "_commit_progress", commit_progress)
        patcher.start()
        self.addCleanup(patcher.stop)

    def make_scheduled(self, **values):
        return self.make_import(
            pull_pagination="page",
            page_size=2,
            sync_interval_number=1,
            sync_interval_type="hours",
            sync_mode="changed",
            pull_since_param="updated_since",
            **values,
        )

    def test_cron_imports_and_sends_since(self):
        config = self.make_scheduled()
        cron = config.cron_id
        self.assertTrue(cron.active)
        self.assertEqual(cron.ir_actions_server_id.bj_api_sync_config_id, config)
        self.assertFalse(config.last_sync_at)

        # 1st run: no watermark yet, so no since parameter.
        self.server.script(page(people(0, 2)), page(people(2, 1)))
        self.run_as_cron(cron)
        self.assertEqual(
            self.queries(),
            [{"page": "1", "per_page": "2"}, {"page": "2", "per_page": "2"}],
        )
        self.assertEqual(len(self.partners()), 3)
        self.assertEqual(self.partners().create_uid, cron.user_id)
        self.assertEqual(len(self.commits), 3, "one per page, one for the watermark")
        self.assertTrue(config.last_sync_at)

        # 2nd run: the previous watermark goes in pull_since_param (ISO, Z).
        config.last_sync_at = datetime(2024, 1, 2, 3, 4, 5)
        self.server.reset()
        self.server.script(page(people(0, 2)), page([]))
        self.run_as_cron(cron)
        self.assertEqual(
            self.queries(),
            [
                {"page": "1", "per_page": "2", "updated_since": "2024-01-02T03:04:05Z"},
                {"page": "2", "per_page": "2", "updated_since": "2024-01-02T03:04:05Z"},
            ],
        )
        self.assertGreater(config.last_sync_at, datetime(2024, 1, 2, 3, 4, 5))
        self.assertEqual(len(self.commits), 6)

        # A manual import never sends it, and leaves the watermark alone.
        config.last_sync_at = datetime(2024, 5, 6, 7, 8, 9)
        self.server.reset()
        self.server.script(page(people(0, 1)), page([]))
        config._import_run(self.env)
        self.assertEqual(
            self.queries(),
            [{"page": "1", "per_page": "2"}, {"page": "2", "per_page": "2"}],
        )
        self.assertEqual(config.last_sync_at, datetime(2024, 5, 6, 7, 8, 9))

    def test_watermark_stays_after_a_failed_run(self):
        config = self.make_scheduled()
        mark = datetime(2024, 1, 2, 3, 4, 5)
        config.last_sync_at = mark
        cases = {
            "HTTP error on page 2": (page(people(0, 2)), Reply(500)),
            "an object failed": (page([{"full_name": "no code"}]), page([])),
            "not JSON": (Reply(200, body="nope"),),
        }
        for name, replies in cases.items():
            with self.subTest(name):
                self.server.reset()
                self.commits.clear()
                self.server.script(*replies)
                self.run_as_cron(config.cron_id)
                self.assertEqual(
                    self.queries()[0]["updated_since"], "2024-01-02T03:04:05Z"
                )
                self.assertEqual(config.last_sync_at, mark)
                self.assertEqual(len(self.commits), len(replies), "pages only")

    def test_watermark_stays_when_max_pages_cut_the_walk(self):
        # Pages were left unread: advancing the watermark would skip them.
        config = self.make_scheduled(pull_max_pages=2)
        mark = datetime(2024, 1, 2, 3, 4, 5)
        config.last_sync_at = mark
        self.server.default = page(people(0, 2))
        self.run_as_cron(config.cron_id)
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(config.last_sync_at, mark)

    def test_all_mode_sends_no_since(self):
        config = self.make_scheduled()
        config.sync_mode = "all"
        config.last_sync_at = datetime(2024, 1, 2, 3, 4, 5)
        self.server.script(page(people(0, 1)), page([]))
        self.run_as_cron(config.cron_id)
        self.assertEqual(
            self.queries(),
            [{"page": "1", "per_page": "2"}, {"page": "2", "per_page": "2"}],
        )
        self.assertTrue(config.last_sync_at > datetime(2024, 1, 2, 3, 4, 5))
        self.assertEqual(len(self.partners()), 1)


@tagged("post_install", "-at_install")
class TestImportButtons(UsersMixin, ImportHelpers, BjApiSyncCase):
    """Items 6 and 7: Import Now, Preview, and whose rights write."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()

    def test_import_now_as_manager(self):
        config = self.make_import(param_ids=self.status_param())
        self.env["res.partner"].create({"name": "Old", "ref": "IMP-001"})
        self.server.script(page(people(0, 3)))
        action = config.with_user(self.bj_manager).action_import_now()
        self.assertEqual(action["tag"], "display_notification")
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(
            action["params"]["message"],
            "1 page(s) read: 2 created, 1 updated, 0 failed.",
        )
        self.assertEqual(self.queries(), [{"status": "active"}])
        partners = self.partners()
        self.assertEqual(partners.mapped("name"), ["Person 0", "Person 1", "Person 2"])
        self.assertEqual(
            (partners - partners[1]).create_uid, self.bj_manager, "the clicker's rights"
        )

    def test_import_now_reports_failures(self):
        config = self.make_import()
        self.server.script(page([*people(0, 1), {"full_name": "anonymous"}]))
        action = config.with_user(self.bj_manager).action_import_now()
        self.assertEqual(action["params"]["type"], "warning")
        self.assertTrue(action["params"]["sticky"])
        self.assertIn("1 created, 0 updated, 1 failed", action["params"]["message"])

    def test_import_now_refused_to_others(self):
        config = self.make_import()
        for user in (self.bj_user, self.internal, self.portal):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                config.with_user(user).action_import_now()
        self.assertFalse(self.server.received)
        self.assertFalse(self.partners())
        self.assertFalse(self.logs(config))

    def test_preview_gets_and_writes_nothing(self):
        config = self.make_import(
            pull_pagination="page", page_size=2, param_ids=self.status_param()
        )
        self.server.script(page(people(0, 2)))
        action = config.with_user(self.bj_manager).action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertEqual(
            [(r.method, dict(r.query)) for r in self.server.received],
            [("GET", {"status": "active", "page": "1", "per_page": "2"})],
        )
        self.assertFalse(preview.error_message)
        self.assertEqual(preview.record_count, 2)
        self.assertEqual(preview.request_method, "GET")
        self.assertEqual(
            json.loads(preview.request_body),
            {
                "action": "create",
                "record": None,
                "values": {
                    "ref": "IMP-000",
                    "name": "Person 0",
                    "email": "p0@x.test",
                },
            },
        )
        self.assertFalse(self.partners(), "a preview writes nothing")

        # An object whose record exists: an update of that record.
        partner = self.env["res.partner"].create({"name": "Known", "ref": "IMP-000"})
        self.server.reset()
        self.server.script(page([dict(people(0, 1)[0], extra=1)]))
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        body = json.loads(preview.request_body)
        self.assertEqual(body["action"], "update")
        self.assertEqual(body["record"], "Known")
        self.assertEqual(body["ignored_keys"], ["extra"])
        self.assertEqual(partner.name, "Known")
        self.assertEqual(len(self.partners()), 1)

    def test_preview_shows_a_bad_response(self):
        config = self.make_import()
        self.server.script(Reply(200, body=json.dumps({"items": []})))
        action = config.action_preview_payload()
        preview = self.env["bj.api.sync.preview"].browse(action["res_id"])
        self.assertIn("response_data_path 'data' not found", preview.error_message)

    def test_import_with_rights_of_a_reader(self):
        reader = new_test_user(self.env, "imp_reader", groups="base.group_user")
        Partner = self.env["res.partner"].with_user(reader)
        self.assertTrue(Partner.has_access("read"))
        self.assertFalse(Partner.has_access("create"))
        self.assertFalse(Partner.has_access("write"))
        config = self.make_import()
        existing = self.env["res.partner"].create({"name": "Old", "ref": "IMP-000"})
        self.server.script(page(people(0, 3)))
        outcome = config._import_run(self.env(user=reader))
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (0, 0, 3))
        log = self.logs(config)
        self.assertEqual(log.state, "error")
        self.assertEqual(log.import_failed, 3)
        self.assertIn('Object 1 (code="IMP-000")', log.error_message)
        self.assertIn("not allowed to modify", log.error_message)
        self.assertIn('Object 2 (code="IMP-001")', log.error_message)
        self.assertIn("not allowed to create", log.error_message)
        self.assertEqual(self.partners(), existing)
        self.assertEqual(existing.name, "Old")

    def test_record_hidden_by_rules_is_not_duplicated(self):
        """An identifier held by a record the importing user may not see
        (another company's) fails that object: no duplicate, no change."""
        hidden = self.env["res.partner"].create(
            {"name": "Company B's", "ref": "IMP-001", "company_id": self.company_b.id}
        )
        self.assertFalse(
            self.env["res.partner"]
            .with_user(self.bj_manager)
            .search([("ref", "=", "IMP-001")]),
            "hidden from the manager of company A",
        )
        config = self.make_import()
        self.server.script(page(people(0, 3)))
        outcome = config.with_user(self.bj_manager)._import_run(
            self.env(user=self.bj_manager)
        )
        self.assertEqual((outcome.created, outcome.updated, outcome.failed), (2, 0, 1))
        log = self.logs(config)
        self.assertIn('Object 2 (code="IMP-001")', log.error_message)
        self.assertIn("may not see it", log.error_message)
        self.assertEqual(
            self.partners().mapped("ref"), ["IMP-000", "IMP-001", "IMP-002"]
        )
        self.assertEqual(hidden.name, "Company B's")


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
        [received] = self.server.received
        self.assertEqual(
            (received.method, received.json()), ("POST", {"name": "Push me"})
        )

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
        self.assertEqual(row.log_ids.state, "success")
        self.assertFalse(row.log_ids.write_back_error)

    def test_queued_write_back_failure_keeps_delivery_done(self):
        config = self.make_push(delivery_mode="queued")
        self.add_line(
            config,
            field_path="type",
            api_key="kind",
            value_type="plain",
            direction="in",
        )
        partner = self.env["res.partner"].create({"name": "Queue me"})
        row = config._enqueue(partner, "manual")
        self.server.script(
            Reply(201, body=json.dumps({"id": "EXT-Q", "kind": "bogus"}))
        )
        self.env["bj.api.sync.delivery"]._process_due()
        self.assertEqual(row.state, "done")
        log = row.log_ids
        self.assertEqual((log.state, log.status_code), ("success", 201))
        self.assertIn("Write-back failed", log.write_back_error)
        self.assertIn("'kind'", log.write_back_error)
        self.assertIn("Queue me", log.write_back_error)
        partner.invalidate_recordset()
        self.assertFalse(partner.ref, "nothing of that record was written")
        self.assertEqual(partner.type, "contact")

    def test_paginated_write_back_by_position(self):
        config = self.make_push(
            is_paginated=True, page_size=3, delivery_mode="immediate"
        )
        partners = self.env["res.partner"].create(
            [{"name": f"WB {i}"} for i in range(5)]
        )
        self.server.script(
            Reply(200, body=json.dumps([{"id": "A"}, {"id": "B"}, {"id": "C"}])),
            # three objects for the two records of the second page
            Reply(200, body=json.dumps([{"id": "X"}, {"id": "Y"}, {"id": "Z"}])),
        )
        logs = config._make_outbound_http_request(partners).sorted("id")
        self.assertEqual(len(logs), 2)
        self.assertEqual(logs.mapped("state"), ["success", "success"])
        first, second = (r.json() for r in self.server.received)
        self.assertEqual((len(first), len(second)), (3, 2))
        by_name = {p.name: p for p in partners}
        for sent, ident in zip(first, "ABC", strict=True):
            self.assertEqual(by_name[sent["name"]].ref, ident, sent)
        self.assertFalse(logs[0].write_back_error)
        self.assertEqual(
            logs[1].write_back_error,
            "Write-back skipped: 3 object(s) answered for 2 record(s) sent.",
        )
        for sent in second:
            self.assertFalse(by_name[sent["name"]].ref, sent)

    def test_non_json_or_empty_body_writes_nothing(self):
        config = self.make_push()
        partner = self.env["res.partner"].create({"name": "Push me", "ref": "KEEP"})
        cases = (
            (Reply(200, body="<html>thanks</html>"), "Write-back skipped"),
            (Reply(204, body=""), False),
            (Reply(200, body="  "), False),
        )
        for reply, error in cases:
            with self.subTest(body=reply.body):
                self.server.script(reply)
                log = config._make_outbound_http_request(partner)
                self.assertEqual(log.state, "success")
                self.assertEqual(partner.ref, "KEEP")
                if error:
                    self.assertIn(error, log.write_back_error)
                else:
                    self.assertFalse(log.write_back_error)

    def test_get_config_writes_nothing_back(self):
        config = self.make_push(http_method_ids=[Command.set(self.method_get.ids)])
        partner = self.env["res.partner"].create({"name": "Get me"})
        self.server.script(Reply(200, body=json.dumps({"id": "NOPE"})))
        log = config._make_outbound_http_request(partner)
        self.assertEqual(log.state, "success")
        self.assertFalse(partner.ref)
        self.assertFalse(log.write_back_error)


@tagged("post_install", "-at_install")
class TestWriteBackLoop(BjApiSyncCase):
    """Item 9: a write-back write never triggers this addon's rules again."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Delivery = cls.env["bj.api.sync.delivery"]

    def commit_hooks(self):
        """Run what a commit would run before COMMIT, then forget the
        post-commit work (what COMMIT would do)."""
        self.env.cr.flush()
        self.env.cr.postcommit.data.clear()

    def make_looped(self, delivery_mode):
        config = self.make_config(
            filter_domain="[('email', '=like', '%@loop.test')]",
            lines=[("name", "name", "plain"), ("ref", "ref", "plain")],
            delivery_mode=delivery_mode,
        )
        self.add_line(
            config, field_path="ref", api_key="id", value_type="plain", direction="in"
        )
        wizard = self.env["bj.api.sync.automate"].create(
            {"config_id": config.id, "on_create": False, "on_create_or_write": True}
        )
        wizard.action_create_automations()
        self.assertEqual(config.automation_ids.trigger, "on_create_or_write")
        return config

    def deliveries(self, config):
        return self.Delivery.search([("config_id", "=", config.id)], order="id")

    def assert_queued_loop_free(self, config):
        partner = self.env["res.partner"].create(
            {"name": "Loop", "email": "a@loop.test"}
        )
        self.commit_hooks()
        self.assertEqual(len(self.deliveries(config)), 1)
        self.server.script(Reply(201, body=json.dumps({"id": "EXT-L"})))
        self.Delivery._process_due()
        self.commit_hooks()
        partner.invalidate_recordset()
        self.assertEqual(partner.ref, "EXT-L", "written back")
        rows = self.deliveries(config)
        self.assertEqual(
            rows.mapped("state"), ["done"], "the write-back queued nothing"
        )
        self.assertEqual(len(self.server.received), 1)
        self.assertFalse(self.Delivery._process_due())
        # A user's write of the same field is a change to send.
        partner.ref = "BY-HAND"
        self.commit_hooks()
        rows = self.deliveries(config)
        self.assertEqual(len(rows), 2)
        self.assertEqual(json.loads(rows[-1].payload)["ref"], "BY-HAND")

    def test_queued_write_back_does_not_loop(self):
        self.assert_queued_loop_free(self.make_looped("queued"))

    def test_queued_write_back_does_not_loop_with_other_actions(self):
        # A rule with another action runs through Odoo's own runner and the
        # server action (_run_action_bj_api_sync_multi).
        config = self.make_looped("queued")
        config.automation_ids.action_server_ids = [
            Command.create(
                {
                    "name": "Note it",
                    "model_id": self.partner_model.id,
                    "state": "code",
                    "code": "record.write({'comment': 'seen'})",
                    "usage": "base_automation",
                }
            )
        ]
        self.assert_queued_loop_free(config)

    def test_immediate_write_back_does_not_loop(self):
        config = self.make_looped("immediate")
        # Only changes of name and ref count: recomputed fields (which fire
        # "on save" rules too) would send the record again for reasons of
        # their own.
        config.automation_ids.trigger_field_ids = [
            Command.set(
                self.env["ir.model.fields"]
                .search(
                    [("model", "=", "res.partner"), ("name", "in", ("name", "ref"))]
                )
                .ids
            )
        ]
        self.server.script(
            Reply(201, body=json.dumps({"id": "EXT-I"})),
            Reply(200, body=json.dumps({"id": "EXT-I2"})),
            Reply(200, body=json.dumps({"id": "EXT-I3"})),
        )
        partner = self.env["res.partner"].create(
            {"name": "Loop now", "email": "b@loop.test"}
        )
        self.assertEqual(partner.ref, "EXT-I")
        self.assertEqual(len(self.server.received), 1, "sent once")
        # A user's write is sent again.
        partner.name = "Loop again"
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(self.server.received[1].json()["name"], "Loop again")
        self.assertEqual(partner.ref, "EXT-I2")

    def test_manual_send_write_back_does_not_trigger_the_rule(self):
        config = self.make_looped("immediate")
        partner = self.env["res.partner"].create(
            {"name": "Manual", "email": "c@loop.test"}
        )
        self.commit_hooks()
        self.server.reset()
        self.server.script(
            Reply(201, body=json.dumps({"id": "EXT-M"})),
            Reply(200, body=json.dumps({"id": "EXT-M2"})),
        )
        log = config._make_outbound_http_request(partner)
        self.assertEqual(log.state, "success")
        self.assertEqual(partner.ref, "EXT-M")
        self.assertEqual(len(self.server.received), 1, "the write-back sent nothing")
