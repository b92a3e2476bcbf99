"""Inbound REST endpoints (SPEC §11) over real HTTP: every row of the table,
every error status, and the security boundaries (credentials, rights, record
rules, mass assignment, sizes, signatures, replays, rate limits)."""

import json
import time
from datetime import timedelta
from unittest.mock import patch

import psycopg2.errors

from odoo import Command, fields
from odoo.exceptions import ValidationError
from odoo.sql_db import db_connect
from odoo.tests import Form, new_test_user, tagged
from odoo.tools import mute_logger

from ..models.bj_api_sync_inbound import advisory_key
from ..tools import signing
from .common import BjApiSyncHttpCase, UsersMixin

TOKEN = "tok-A-0123456789"
LINES = [
    ("ref", "ref", "plain"),
    ("name", "name", "plain"),
    ("email", "email", "plain"),
    ("phone", "phone", "plain"),
    ("type", "type", "plain"),
]


@tagged("post_install", "-at_install")
class TestInbound(UsersMixin, BjApiSyncHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.make_users()
        cls.reader = new_test_user(cls.env, "bj_in_reader", groups="base.group_user")
        cls.methods = cls.env["bj.http.method"].search([])
        cls.config = cls.make_in_config(
            "t-partners",
            bearer_token=TOKEN,
            company_id=cls.env.company.id,
        )
        cls.config.line_ids.filtered(lambda line: line.api_key == "ref").write(
            {"is_identifier": True}
        )
        cls.config.line_ids = [
            Command.create({"field_path": "id", "api_key": "id", "direction": "out"})
        ]
        cls.other = cls.make_in_config("t-other", bearer_token="tok-B-0123456789")
        cls.Partner = cls.env["res.partner"]
        cls.p1, cls.p2, cls.p3 = cls.Partner.create(
            [
                {"name": "Ada", "ref": "T-1", "email": "ada@x.test"},
                {"name": "Bob", "ref": "T-2"},
                {"name": "Cid", "ref": "T-3"},
            ]
        )
        cls.outside = cls.Partner.create({"name": "Outsider", "ref": "X-1"})

    @classmethod
    def make_in_config(cls, endpoint, lines=LINES, identifier="ref", **values):
        vals = {
            "name": f"In {endpoint}",
            "request_type": "in",
            "endpoint": endpoint,
            "model_id": cls.partner_model.id,
            "filter_domain": "[('ref', '=like', 'T-%')]",
            "http_method_ids": [Command.set(cls.methods.ids)],
            "auth_type": "bearer",
            "run_as_user_id": cls.internal.id,
            "line_ids": [
                Command.create(
                    {
                        "field_path": path,
                        "api_key": key,
                        "value_type": vtype,
                        "sequence": index,
                        "is_identifier": key == identifier,
                    }
                )
                for index, (path, key, vtype) in enumerate(lines)
            ],
        }
        vals.update(values)
        return cls.Config.create(vals)

    # -- helpers ---------------------------------------------------------------

    def call(self, method, path, body=None, token=TOKEN, headers=None, raw=None):
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw
        if body is not None:
            data = json.dumps(body)
        if data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        return self.url_open(
            f"/bj_api_sync/v1/{path}", data=data, headers=sent, method=method
        )

    def assertError(self, response, status, message=None):
        self.assertEqual(response.status_code, status, response.text)
        self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
        body = response.json()
        self.assertEqual(body["status"], "error")
        self.assertEqual(body["code"], status)
        if message:
            self.assertIn(message, body["message"])
        self.assertNotIn("Traceback", response.text)
        return body

    def assertSuccess(self, response, status=200):
        self.assertEqual(response.status_code, status, response.text)
        body = response.json()
        self.assertEqual(body["status"], "success")
        return body

    def last_log(self, config=None):
        return self.env["bj.api.log"].search(
            [("config_id", "=", (config or self.config).id)], limit=1
        )

    def partners(self, ref):
        self.env.invalidate_all()
        return self.Partner.with_context(active_test=False).search([("ref", "=", ref)])

    # -- GET list --------------------------------------------------------------

    def test_list(self):
        self.config.page_size = 2
        body = self.assertSuccess(self.call("GET", "t-partners"))
        self.assertEqual(
            set(body), {"status", "data", "count", "total", "limit", "offset"}
        )
        self.assertEqual((body["count"], body["total"]), (2, 3))
        self.assertEqual((body["limit"], body["offset"]), (2, 0))
        self.assertEqual(
            body["data"][0],
            {
                "ref": "T-1",
                "name": "Ada",
                "email": "ada@x.test",
                "phone": None,
                "type": "contact",
                "id": self.p1.id,
            },
        )
        body = self.assertSuccess(self.call("GET", "t-partners?limit=5&offset=2"))
        self.assertEqual([o["ref"] for o in body["data"]], ["T-3"])
        self.assertEqual((body["count"], body["limit"], body["offset"]), (1, 5, 2))
        # equality filters on top-level plain keys, the outsider never listed
        body = self.assertSuccess(self.call("GET", "t-partners?name=Bob"))
        self.assertEqual([o["ref"] for o in body["data"]], ["T-2"])
        body = self.assertSuccess(self.call("GET", "t-partners?ref=X-1"))
        self.assertEqual(body["data"], [])
        body = self.assertSuccess(self.call("GET", f"t-partners?id={self.p3.id}"))
        self.assertEqual([o["ref"] for o in body["data"]], ["T-3"])

    def test_list_total(self):
        """``total`` counts every match the user may see, also past the end
        and on a full page; ``?total=false`` skips the count."""
        self.config.page_size = 2
        cases = {
            "": (2, 3),
            "?offset=2": (1, 3),
            "?offset=9": (0, 3),
            "?limit=3": (3, 3),
            "?total=false": (2, None),
            "?total=0&offset=2": (1, None),
            "?total=true&limit=1": (1, 3),
            "?total=1&name=Bob": (1, 1),
        }
        for query, expected in cases.items():
            with self.subTest(query=query):
                body = self.assertSuccess(self.call("GET", f"t-partners{query}"))
                self.assertEqual((body["count"], body["total"]), expected)
                self.assertIn("total", body)
        # a partner of the other company is hidden from the count too
        self.config.run_as_user_id = self.internal
        self.Partner.create(
            {"name": "Hidden B", "ref": "T-HB", "company_id": self.company_b.id}
        )
        body = self.assertSuccess(self.call("GET", "t-partners?limit=1"))
        self.assertEqual(body["total"], 3)
        self.assertError(self.call("GET", "t-partners?total=maybe"), 400, "total")

    def test_list_bad_parameters(self):
        for query in ("limit=0", "limit=1001", "limit=ten", "offset=-1"):
            with self.subTest(query=query):
                self.assertError(self.call("GET", f"t-partners?{query}"), 400)
        self.assertError(
            self.call("GET", "t-partners?is_company=1"), 400, "Unknown filter"
        )
        self.assertError(self.call("GET", "t-partners?id=abc"), 400, "whole number")
        body = self.assertSuccess(self.call("GET", "t-partners?limit=1000"))
        self.assertEqual(body["limit"], 1000)

    # -- GET one ---------------------------------------------------------------

    def test_read_one(self):
        body = self.assertSuccess(self.call("GET", "t-partners/T-2"))
        self.assertEqual(body["data"]["name"], "Bob")
        self.assertEqual(set(body), {"status", "data"})
        # outside the domain looks exactly like nothing at all
        outside = self.assertError(self.call("GET", "t-partners/X-1"), 404)
        missing = self.assertError(self.call("GET", "t-partners/X-2"), 404)
        self.assertEqual(
            outside["message"].replace("X-1", "?"),
            missing["message"].replace("X-2", "?"),
        )
        self.assertNotIn("Outsider", json.dumps(outside))

    def test_identifier_id(self):
        config = self.make_in_config(
            "t-by-id",
            lines=[("id", "id", "plain"), ("name", "name", "plain")],
            identifier="id",
            bearer_token="tok-id-0123456789",
        )
        token = config.sudo().bearer_token
        body = self.assertSuccess(
            self.call("GET", f"t-by-id/{self.p1.id}", token=token)
        )
        self.assertEqual(body["data"], {"id": self.p1.id, "name": "Ada"})
        self.assertError(self.call("GET", "t-by-id/abc", token=token), 404)
        self.assertError(
            self.call("GET", f"t-by-id/{self.outside.id}", token=token), 404
        )
        response = self.call(
            "PATCH", f"t-by-id/{self.p1.id}", {"name": "Ada L.", "id": 1}, token=token
        )
        self.assertEqual(self.assertSuccess(response)["data"]["name"], "Ada L.")
        body = self.assertSuccess(
            self.call("DELETE", f"t-by-id/{self.p2.id}", token=token)
        )
        self.assertEqual(body["data"], {"id": self.p2.id})
        self.assertFalse(self.partners("T-2"))

    # -- POST ------------------------------------------------------------------

    def test_post_create_then_update(self):
        response = self.call(
            "POST", "t-partners", {"ref": "T-NEW", "name": "New", "email": "n@x.test"}
        )
        body = self.assertSuccess(response, 201)
        partner = self.partners("T-NEW")
        self.assertEqual(len(partner), 1)
        self.assertEqual(body["data"]["id"], partner.id)
        self.assertEqual(partner.create_uid, self.internal)
        response = self.call("POST", "t-partners", {"ref": "T-NEW", "phone": "123"})
        body = self.assertSuccess(response, 200)
        self.assertEqual(self.partners("T-NEW"), partner)
        self.assertEqual((partner.name, partner.phone), ("New", "123"))
        self.assertEqual(body["data"]["email"], "n@x.test")

    def test_post_without_identifier_creates(self):
        response = self.call("POST", "t-partners", {"name": "No ref"})
        # created without a reference it would fall outside the domain: refused
        self.assertError(response, 422, "filter domain")
        self.assertFalse(self.Partner.search([("name", "=", "No ref")]))

    def test_mass_assignment(self):
        response = self.call(
            "POST",
            "t-partners",
            {
                "ref": "T-MASS",
                "name": "Mass",
                "id": self.p1.id,
                "create_uid": self.admin_user.id,
                "is_company": True,
                "company_id": self.company_b.id,
            },
        )
        self.assertSuccess(response, 201)
        partner = self.partners("T-MASS")
        self.assertNotEqual(partner, self.p1)
        self.assertEqual(self.p1.name, "Ada")
        self.assertEqual(partner.create_uid, self.internal)
        self.assertFalse(partner.is_company)
        self.assertNotEqual(partner.company_id, self.company_b)
        self.assertEqual(
            self.last_log().ignored_keys, "company_id, create_uid, id, is_company"
        )

    def test_post_array(self):
        response = self.call(
            "POST",
            "t-partners",
            [
                {"ref": "T-A1", "name": "A1"},
                {"ref": "T-1", "name": "Ada 2"},
                {"ref": "T-A1", "email": "a1@x.test"},
            ],
        )
        body = self.assertSuccess(response, 201)
        self.assertEqual([o["ref"] for o in body["data"]], ["T-A1", "T-1", "T-A1"])
        created = self.partners("T-A1")
        self.assertEqual(len(created), 1)
        self.assertEqual((created.name, created.email), ("A1", "a1@x.test"))
        self.assertEqual(self.p1.name, "Ada 2")
        # all updates: 200
        response = self.call("POST", "t-partners", [{"ref": "T-2", "phone": "9"}])
        self.assertEqual(self.assertSuccess(response)["data"][0]["phone"], "9")

    def test_post_array_is_one_transaction(self):
        response = self.call(
            "POST",
            "t-partners",
            [{"ref": "T-OK", "name": "fine"}, {"ref": "T-KO", "type": "bogus"}],
        )
        body = self.assertError(response, 422, "allowed values are")
        type_line = self.config.line_ids.filtered(lambda line: line.api_key == "type")
        self.assertEqual(body["line_id"], type_line.id)
        self.assertFalse(self.partners("T-OK"))
        # ... and its log row is kept
        log = self.last_log()
        self.assertEqual((log.status_code, log.state), (422, "error"))
        self.assertIn("bogus", log.request_body)

    def test_post_bad_bodies(self):
        cases = [
            ([], 400, "non-empty array"),
            ([1, 2], 400, "non-empty array"),
            ("text", 400, "non-empty array"),
            ([{}] * 1001, 400, "At most 1000"),
        ]
        for body, status, message in cases:
            with self.subTest(body=str(body)[:20]):
                self.assertError(self.call("POST", "t-partners", body), status, message)
        self.assertError(
            self.call("POST", "t-partners", raw='{"ref": "T-9",'), 400, "not valid JSON"
        )
        self.assertError(self.call("POST", "t-partners", raw=""), 400, "empty")
        deep = "[" * 33 + "]" * 33
        self.assertError(
            self.call("POST", "t-partners", raw=deep), 400, "deeper than 32"
        )
        self.assertError(
            self.call("POST", "t-partners", raw=b'{"name": "\xff"}'), 400, "UTF-8"
        )

    def test_not_json(self):
        response = self.url_open(
            "/bj_api_sync/v1/t-partners",
            data={"ref": "T-F", "name": "form"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        self.assertError(response, 415, "must be JSON")
        response = self.call(
            "POST",
            "t-partners",
            raw="ref=T-F",
            headers={"Content-Type": "text/plain"},
        )
        self.assertError(response, 415)
        self.assertFalse(self.partners("T-F"))

    def test_body_size(self):
        self.env["ir.config_parameter"].set_param("bj_api_sync.inbound_max_bytes", 500)
        big = {"ref": "T-BIG", "name": "x" * 600}
        self.assertError(self.call("POST", "t-partners", big), 413, "500 bytes")
        self.assertFalse(self.partners("T-BIG"))

        def chunks():
            yield b'{"ref": "T-CH", '
            yield b'"name": "chunked"}'

        response = self.call("POST", "t-partners", raw=chunks())
        self.assertError(response, 411, "Content-Length")
        self.assertSuccess(
            self.call("POST", "t-partners", {"ref": "T-SMALL", "name": "ok"}), 201
        )

    # -- PUT / PATCH -----------------------------------------------------------

    def test_put_and_patch(self):
        body = self.assertSuccess(
            self.call("PUT", "t-partners/T-1", {"email": "new@x.test"})
        )
        self.assertEqual(
            (body["data"]["name"], body["data"]["email"]), ("Ada", "new@x.test")
        )
        body = self.assertSuccess(self.call("PATCH", "t-partners/T-1", {"phone": None}))
        self.assertEqual(self.p1.email, "new@x.test")
        self.assertError(self.call("PATCH", "t-partners/X-1", {"name": "no"}), 404)
        self.assertEqual(self.outside.name, "Outsider")
        self.assertError(self.call("PATCH", "t-partners/T-1", [{"name": "x"}]), 400)
        # moving the record out of the domain is refused
        self.assertError(
            self.call("PATCH", "t-partners/T-1", {"ref": "X-9"}), 422, "filter domain"
        )
        self.assertEqual(self.p1.ref, "T-1")
        body = self.assertError(
            self.call("PUT", "t-partners/T-1", {"type": "nope"}), 422, "'type'"
        )
        self.assertTrue(body["line_id"])

    # -- DELETE ----------------------------------------------------------------

    def test_delete(self):
        body = self.assertSuccess(self.call("DELETE", "t-partners/T-3"))
        self.assertEqual(body, {"status": "success", "data": {"id": "T-3"}})
        self.assertFalse(self.partners("T-3"))
        self.assertError(self.call("DELETE", "t-partners/T-3"), 404)
        self.assertError(self.call("DELETE", "t-partners/X-1"), 404)
        self.assertTrue(self.outside.exists())

    def test_delete_archives(self):
        self.config.delete_mode = "archive"
        self.assertSuccess(self.call("DELETE", "t-partners/T-2"))
        partner = self.partners("T-2")
        self.assertTrue(partner)
        self.assertFalse(partner.active)
        self.assertError(self.call("GET", "t-partners/T-2"), 404)

    def test_delete_refused_by_odoo(self):
        self.reader.partner_id.ref = "T-USER"
        body = self.assertError(self.call("DELETE", "t-partners/T-USER"), 409)
        self.assertIn("refused to delete", body["message"])
        self.assertTrue(self.reader.partner_id.exists())

    # -- routing ---------------------------------------------------------------

    def test_unknown_and_inactive_endpoints(self):
        self.assertError(self.call("GET", "nope"), 404, "No inbound endpoint")
        self.assertError(self.call("GET", "Bad.Slug"), 404)
        self.config.active = False
        self.assertError(self.call("GET", "t-partners"), 404, "No inbound endpoint")

    def test_method_not_allowed(self):
        self.config.http_method_ids = self.env.ref("bj_api_sync.http_method_get")
        response = self.call("POST", "t-partners", {"ref": "T-X"})
        self.assertError(response, 405)
        self.assertEqual(response.headers["Allow"], "GET")
        response = self.call("DELETE", "t-partners/T-1")
        self.assertError(response, 405)
        self.assertEqual(response.headers["Allow"], "GET")
        response = self.call("PUT", "t-partners", {"ref": "T-X"})
        self.assertEqual(response.headers["Allow"], "GET")
        self.assertEqual(self.call("HEAD", "t-partners/T-1").status_code, 405)
        self.assertTrue(self.p1.exists())

    # -- authentication --------------------------------------------------------

    def test_credentials(self):
        for token in (None, "wrong", "tok-B-0123456789", TOKEN[:-1], ""):
            with self.subTest(token=token):
                response = self.call("GET", "t-partners", token=token)
                self.assertError(response, 401)
                self.assertIn("Bearer", response.headers["WWW-Authenticate"])
        response = self.call(
            "GET", "t-partners", token=None, headers={"Authorization": TOKEN}
        )
        self.assertError(response, 401)
        log = self.last_log()
        self.assertEqual(log.status_code, 401)
        self.assertNotIn(TOKEN, log.request_headers)

    def test_no_session(self):
        self.authenticate("bj_admin", "bj_admin")
        response = self.call("GET", "t-partners", token=None)
        self.assertError(response, 401)
        self.assertNotIn("Set-Cookie", response.headers)
        response = self.call("GET", "t-partners")
        self.assertSuccess(response)
        self.assertNotIn("Set-Cookie", response.headers)

    def test_basic_and_api_key(self):
        basic = self.make_in_config(
            "t-basic",
            auth_type="basic",
            auth_login="svc",
            auth_password="pw-0123456789",
        )
        url = "/bj_api_sync/v1/t-basic/T-1"
        response = self.opener.get(
            self.base_url() + url, auth=("svc", "pw-0123456789"), timeout=12
        )
        self.assertSuccess(response)
        for auth in (("svc", "wrong"), ("other", "pw-0123456789"), ("", "")):
            response = self.opener.get(self.base_url() + url, auth=auth, timeout=12)
            self.assertError(response, 401)
            self.assertIn("Basic", response.headers["WWW-Authenticate"])
        self.assertTrue(basic)
        self.make_in_config(
            "t-key",
            auth_type="api_key",
            api_key_header="X-Client",
            api_key_value="key-0123456789",
        )
        ok = self.call(
            "GET", "t-key/T-1", token=None, headers={"X-Client": "key-0123456789"}
        )
        self.assertSuccess(ok)
        ko = self.call(
            "GET", "t-key/T-1", token=None, headers={"X-Client": "guess-1234"}
        )
        self.assertError(ko, 401)
        log = self.env["bj.api.log"].search([("request_url", "like", "t-key")], limit=1)
        self.assertIn('"X-Client": "***"', log.request_headers)

    def test_odoo_api_key(self):
        config = self.make_in_config(
            "t-odoo-key", auth_type="odoo_api_key", run_as_user_id=False
        )
        Keys = self.env["res.users.apikeys"]
        key_internal = Keys.with_user(self.internal).sudo()._generate("rpc", "t", None)
        key_reader = Keys.with_user(self.reader).sudo()._generate("rpc", "t", None)
        response = self.call(
            "POST", "t-odoo-key", {"ref": "T-K", "name": "By key"}, token=key_internal
        )
        self.assertSuccess(response, 201)
        self.assertEqual(self.partners("T-K").create_uid, self.internal)
        # a user without the right to create contacts: 403, nothing created
        response = self.call(
            "POST", "t-odoo-key", {"ref": "T-K2", "name": "No"}, token=key_reader
        )
        self.assertError(response, 403, "access rights")
        self.assertFalse(self.partners("T-K2"))
        self.assertSuccess(self.call("GET", "t-odoo-key/T-1", token=key_reader))
        self.assertError(self.call("GET", "t-odoo-key", token="0" * 40), 401)
        self.assertError(self.call("GET", "t-odoo-key", token=TOKEN), 401)
        self.assertTrue(config)

    def test_odoo_api_key_checked_every_time(self):
        """A key that worked is still looked up for every request: deleted,
        expired or of an archived user, it stops at once; another key with the
        same index never rides on it."""
        self.make_in_config("t-again", auth_type="odoo_api_key", run_as_user_id=False)
        Keys = self.env["res.users.apikeys"]
        key = Keys.with_user(self.internal).sudo()._generate("rpc", "t", None)
        for _i in range(3):
            self.assertSuccess(self.call("GET", "t-again/T-1", token=key))
        # same first 8 characters (the index), another secret
        forged = key[:8] + ("0" if key[8] != "0" else "1") + key[9:]
        self.assertError(self.call("GET", "t-again/T-1", token=forged), 401)
        self.assertError(self.call("GET", "t-again/T-1", token=key[:-1]), 401)
        # a key of scope other than rpc is refused
        other = Keys.with_user(self.internal).sudo()._generate("mail", "t", None)
        self.assertError(self.call("GET", "t-again/T-1", token=other), 401)
        # the user archived, then active again
        self.internal.active = False
        self.internal.flush_recordset()
        self.assertError(self.call("GET", "t-again/T-1", token=key), 401)
        self.internal.active = True
        self.internal.flush_recordset()
        self.assertSuccess(self.call("GET", "t-again/T-1", token=key))
        # the key deleted
        Keys.sudo().search([("user_id", "=", self.internal.id)]).unlink()
        self.assertError(self.call("GET", "t-again/T-1", token=key), 401)

    def test_run_as_without_rights(self):
        self.config.run_as_user_id = self.reader
        self.assertSuccess(self.call("GET", "t-partners/T-1"))
        response = self.call("POST", "t-partners", {"ref": "T-R", "name": "x"})
        body = self.assertError(response, 403)
        self.assertNotIn("bj_in_reader", body["message"])
        self.assertFalse(self.partners("T-R"))
        self.assertError(self.call("DELETE", "t-partners/T-1"), 403)
        self.assertTrue(self.p1.exists())

    def test_record_rules_of_another_company(self):
        hidden = self.Partner.create(
            {"name": "Hidden B", "ref": "T-B", "company_id": self.company_b.id}
        )
        for method, path, body in (
            ("GET", "t-partners/T-B", None),
            ("PATCH", "t-partners/T-B", {"name": "Taken"}),
            ("DELETE", "t-partners/T-B", None),
        ):
            with self.subTest(method=method):
                response = self.call(method, path, body)
                self.assertError(response, 404)
                self.assertNotIn("Hidden B", response.text)
        listed = self.assertSuccess(self.call("GET", "t-partners?limit=1000"))
        self.assertNotIn("T-B", [o["ref"] for o in listed["data"]])
        self.env.invalidate_all()
        self.assertEqual(hidden.name, "Hidden B")
        self.assertTrue(hidden.exists())

    def test_no_domain_read_rules_still_apply(self):
        """Without a filter domain the written record is checked against the
        read rules alone (no statement when none applies): a record the user
        may create but not read is refused like one outside the domain."""
        self.config.filter_domain = False
        self.env["ir.rule"].create(
            {
                "name": "bj test: H- partners unreadable",
                "model_id": self.partner_model.id,
                "groups": [Command.link(self.env.ref("base.group_user").id)],
                "domain_force": "[('ref', 'not =like', 'H-%')]",
                "perm_read": True,
                "perm_write": False,
                "perm_create": False,
                "perm_unlink": False,
            }
        )
        body = self.assertSuccess(
            self.call("POST", "t-partners", {"ref": "V-1", "name": "Visible"}), 201
        )
        self.assertEqual(body["data"]["name"], "Visible")
        response = self.call("POST", "t-partners", {"ref": "H-1", "name": "Hidden"})
        self.assertError(response, 422, "filter domain")
        self.assertNotIn("Hidden", response.text)
        self.assertFalse(self.partners("H-1"))
        # archived on creation: a search would not find it either
        self.config.line_ids = [
            Command.create(
                {"field_path": "active", "api_key": "active", "direction": "in"}
            )
        ]
        archived = {"ref": "V-2", "name": "Archived", "active": False}
        response = self.call("POST", "t-partners", archived)
        self.assertError(response, 422, "filter domain")
        self.assertFalse(self.partners("V-2"))

    # -- signatures ------------------------------------------------------------

    def test_signature(self):
        self.config.verify_signature = True
        self.config.action_generate_signing_secret()
        old = self.config.sudo().signing_secret
        body = json.dumps({"ref": "T-SIG", "name": "Signed"}).encode()

        def post(secret, when=None, msg_id="msg_1", payload=body):
            headers = signing.signature_headers(
                [secret], msg_id, int(when or time.time()), payload
            )
            return self.call("POST", "t-partners", raw=payload, headers=headers)

        self.assertError(self.call("POST", "t-partners", raw=body), 401, "signature")
        response = post(old, when=time.time() - 6 * 60)
        self.assertError(response, 401, "too old")
        self.assertError(post(signing.generate_secret()), 401, "No matching")
        tampered = body.replace(b"Signed", b"Forged")
        headers = signing.signature_headers([old], "msg_2", int(time.time()), body)
        response = self.call("POST", "t-partners", raw=tampered, headers=headers)
        self.assertError(response, 401)
        self.assertFalse(self.partners("T-SIG"))
        self.assertSuccess(post(old), 201)
        # rotation: both secrets are accepted during the grace period
        self.config.action_generate_signing_secret()
        payload = json.dumps({"ref": "T-SIG2", "name": "Old secret"}).encode()
        self.assertSuccess(post(old, msg_id="msg_3", payload=payload), 201)
        new = self.config.sudo().signing_secret
        payload = json.dumps({"ref": "T-SIG3", "name": "New secret"}).encode()
        self.assertSuccess(post(new, msg_id="msg_4", payload=payload), 201)
        # the same signed request again: replayed, not applied twice
        response = post(new, msg_id="msg_4", payload=payload)
        self.assertEqual(response.headers.get("Idempotent-Replayed"), "true")

    # -- idempotency -----------------------------------------------------------

    def test_idempotency(self):
        body = {"ref": "T-IDEM", "name": "Once"}
        first = self.call(
            "POST", "t-partners", body, headers={"Idempotency-Key": "k-1"}
        )
        self.assertSuccess(first, 201)
        self.partners("T-IDEM").name = "Changed since"
        again = self.call(
            "POST", "t-partners", body, headers={"Idempotency-Key": "k-1"}
        )
        self.assertEqual(again.status_code, 201)
        self.assertEqual(again.text, first.text)
        self.assertEqual(again.headers["Idempotent-Replayed"], "true")
        self.assertNotIn("Idempotent-Replayed", first.headers)
        self.assertEqual(len(self.partners("T-IDEM")), 1)
        self.assertEqual(self.partners("T-IDEM").name, "Changed since")
        # the same key for another request
        other = self.call(
            "POST",
            "t-partners",
            {"ref": "T-IDEM", "name": "Twice"},
            headers={"Idempotency-Key": "k-1"},
        )
        self.assertError(other, 422, "different request")
        # X-Request-ID works too; other configurations do not share keys
        headers = {"X-Request-ID": "r-1"}
        self.assertSuccess(self.call("DELETE", "t-partners/T-2", headers=headers))
        replay = self.call("DELETE", "t-partners/T-2", headers=headers)
        self.assertSuccess(replay)
        self.assertEqual(replay.headers["Idempotent-Replayed"], "true")
        # failures are not stored: the retry runs again
        bad = {"ref": "T-IDEM2", "type": "bogus"}
        headers = {"Idempotency-Key": "k-2"}
        self.assertError(self.call("POST", "t-partners", bad, headers=headers), 422)
        self.assertError(self.call("POST", "t-partners", bad, headers=headers), 422)
        self.assertFalse(
            self.env["bj.api.sync.inbound.request"].search(
                [("idempotency_key", "=", "k-2")]
            )
        )

    def test_idempotency_in_flight(self):
        key = advisory_key("idempotency", self.config.id, "k-busy")
        other = db_connect(self.env.cr.dbname).cursor()
        try:
            other.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            response = self.call(
                "POST",
                "t-partners",
                {"ref": "T-BUSY", "name": "x"},
                headers={"Idempotency-Key": "k-busy"},
            )
            self.assertError(response, 409, "still in progress")
        finally:
            other.rollback()
            other.close()
        self.assertFalse(self.partners("T-BUSY"))

    def test_identifier_lock(self):
        """The identifier lock of a POST is held until the transaction ends:
        another connection cannot take it meanwhile."""
        config = self.config.with_user(self.internal)
        key = advisory_key("identifier", config.id, "T-LOCK")
        config._inbound_lock(key)
        other = db_connect(self.env.cr.dbname).cursor()
        try:
            other.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
            self.assertFalse(other.fetchone()[0])
            other.execute("SELECT pg_try_advisory_xact_lock(%s)", [key + 1])
            self.assertTrue(other.fetchone()[0])
        finally:
            other.rollback()
            other.close()
        self.assertNotEqual(
            advisory_key("identifier", config.id, "T-LOCK"),
            advisory_key("identifier", self.other.id, "T-LOCK"),
        )

    # -- rate limit ------------------------------------------------------------

    def test_rate_limit(self):
        self.config.rate_limit = 3
        # failed attempts count too: brute force ends at the limit
        for _i in range(2):
            self.assertError(self.call("GET", "t-partners", token="guess-1234"), 401)
        self.assertSuccess(self.call("GET", "t-partners"))
        response = self.call("GET", "t-partners")
        self.assertError(response, 429, "Rate limit of 3")
        self.assertTrue(1 <= int(response.headers["Retry-After"]) <= 60)
        self.assertError(self.call("GET", "t-partners", token="guess-5678"), 429)
        # another configuration has its own counter
        self.assertSuccess(self.call("GET", "t-other", token="tok-B-0123456789"))

    # -- logs ------------------------------------------------------------------

    def test_log_rows(self):
        response = self.call(
            "POST",
            "t-partners?note=1&token=secret-query",
            {"ref": "T-LOG", "name": "Logged"},
        )
        self.assertSuccess(response, 201)
        log = self.last_log()
        self.assertEqual(
            (log.direction, log.request_method, log.status_code, log.state),
            ("in", "POST", 201, "success"),
        )
        self.assertIn("/bj_api_sync/v1/t-partners?", log.request_url)
        self.assertIn("token=***", log.request_url)
        self.assertNotIn("secret-query", log.request_url)
        self.assertEqual(log.res_ids, str(self.partners("T-LOG").id))
        self.assertEqual(log.res_model, "res.partner")
        self.assertIn('"Authorization": "***"', log.request_headers)
        self.assertIn("Logged", log.request_body)
        self.assertIn("T-LOG", log.response_body)
        self.assertEqual(log.remote_addr, "127.0.0.1")
        self.assertGreaterEqual(log.duration_ms, 0)
        # outbound rows are "out"
        out = self.env["bj.api.log"].create({"config_id": self.config.id})
        self.assertEqual(out.direction, "out")
        self.config.log_level = "errors"
        count = self.env["bj.api.log"].search_count(
            [("config_id", "=", self.config.id)]
        )
        self.assertSuccess(self.call("GET", "t-partners/T-1"))
        self.assertError(self.call("GET", "t-partners/T-404"), 404)
        self.assertEqual(
            self.env["bj.api.log"].search_count([("config_id", "=", self.config.id)]),
            count + 1,
        )
        self.assertEqual(self.last_log().status_code, 404)

    def test_internal_error(self):
        self.config.python_script = "secret_marker = 1\nresult = 1 / 0"
        with mute_logger("odoo.addons.bj_api_sync.controllers.main"):
            response = self.call("POST", "t-partners", {"ref": "T-500", "name": "x"})
        body = self.assertError(response, 500)
        log = self.last_log()
        self.assertEqual(body["log_id"], log.id)
        self.assertIn(f"#{log.id}", body["message"])
        self.assertNotIn("secret_marker", response.text)
        self.assertNotIn("division by zero", response.text)
        self.assertIn("division by zero", log.error_message)
        self.assertFalse(self.partners("T-500"))

    def test_unexpected_error(self):
        Config = type(self.env["bj.api.sync.config"])
        with (
            patch.object(Config, "_inbound_read", side_effect=RuntimeError("boom")),
            mute_logger("odoo.addons.bj_api_sync.controllers.main"),
        ):
            response = self.call("GET", "t-partners/T-1")
        body = self.assertError(response, 500, "could not be handled")
        self.assertNotIn("boom", response.text)
        log = self.env["bj.api.log"].browse(body["log_id"])
        self.assertIn("boom", log.error_message)
        self.assertEqual(log.status_code, 500)

    def test_python_script(self):
        self.config.python_script = (
            "request_data['name'] = (request_data.get('name') or '').upper()\n"
            "result = request_data"
        )
        body = self.assertSuccess(
            self.call("POST", "t-partners", {"ref": "T-PY", "name": "shout"}), 201
        )
        self.assertEqual(body["data"]["name"], "SHOUT")
        # a Python line refusing a value: 422 naming the line, not its code
        self.config.python_script = False
        name_line = self.config.line_ids.filtered(lambda line: line.api_key == "name")
        name_line.write(
            {
                "value_type": "python",
                "direction": "in",
                "python_code": "secret_marker = 1\nresult = value.upper()",
            }
        )
        response = self.call("POST", "t-partners", {"ref": "T-PY2", "name": 5})
        body = self.assertError(response, 422, "Python code")
        self.assertEqual(body["line_id"], name_line.id)
        self.assertNotIn("secret_marker", response.text)
        self.assertIn("secret_marker", self.last_log().error_message)

    # -- OpenAPI ---------------------------------------------------------------

    def test_openapi(self):
        self.make_in_config("t-public", auth_type="none")
        response = self.url_open(
            "/bj_api_sync/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self.assertEqual(response.status_code, 200)
        document = response.json()
        self.assertEqual(document["openapi"], "3.1.0")
        paths = document["paths"]
        self.assertIn("/bj_api_sync/v1/t-partners", paths)
        self.assertIn("/bj_api_sync/v1/t-partners/{id}", paths)
        self.assertIn("/bj_api_sync/v1/t-public", paths)
        self.assertNotIn("/bj_api_sync/v1/t-other", paths)
        self.assertEqual(
            set(paths["/bj_api_sync/v1/t-partners/{id}"]) - {"parameters"},
            {"get", "put", "patch", "delete"},
        )
        schemas = document["components"]["schemas"]
        properties = schemas["t-partners"]["properties"]
        self.assertEqual(properties["id"]["type"], "integer")
        self.assertEqual(properties["name"]["type"], ["string", "null"])
        self.assertIn("contact", properties["type"]["enum"])
        self.assertNotIn("id", schemas["t-partners_input"]["properties"])
        self.assertEqual(
            document["components"]["securitySchemes"]["t-partners_auth"]["scheme"],
            "bearer",
        )
        anonymous = self.url_open("/bj_api_sync/v1/openapi.json").json()
        self.assertEqual(
            set(anonymous["paths"]),
            {"/bj_api_sync/v1/t-public", "/bj_api_sync/v1/t-public/{id}"},
        )
        self.assertNotIn(TOKEN, response.text)

    # -- configuration ---------------------------------------------------------

    def test_form_shows_url_and_curl(self):
        config = self.config.with_user(self.bj_manager)
        self.assertTrue(config.endpoint_url.endswith("/bj_api_sync/v1/t-partners"))
        self.assertIn("curl", config.curl_example)
        self.assertIn('"Authorization: Bearer $TOKEN"', config.curl_example)
        self.assertIn("-X POST", config.curl_example)
        self.assertNotIn(TOKEN, config.curl_example)
        self.assertFalse(self.make_config().endpoint_url)

    def test_form(self):
        form = Form(self.Config.with_user(self.admin_user))
        form.name = "Form endpoint"
        form.request_type = "in"
        form.endpoint = "t-form"
        form.model_id = self.partner_model
        form.http_method_ids.add(self.env.ref("bj_api_sync.http_method_get"))
        form.http_method_ids.add(self.env.ref("bj_api_sync.http_method_post"))
        form.auth_type = "api_key"
        form.run_as_user_id = self.internal
        with form.line_ids.new() as line:
            line.field_path = "ref"
            line.api_key = "ref"
            line.is_identifier = True
        with form.line_ids.new() as line:
            line.field_path = "name"
            line.api_key = "customer.name"
        self.assertIn("/bj_api_sync/v1/t-form", form.endpoint_url)
        self.assertIn('"X-API-Key: $API_KEY"', form.curl_example)
        self.assertIn('{"ref":"text","customer":{"name":"text"}}', form.curl_example)
        config = form.save()
        self.assertEqual(config.endpoint, "t-form")

    def test_config_constraints(self):
        def refused(message, **values):
            with self.assertRaises(ValidationError) as caught, self.env.cr.savepoint():
                self.make_in_config(**values)
            self.assertIn(message, str(caught.exception))

        refused("may only hold", endpoint="Bad Slug")
        refused("may only hold", endpoint="-dash")
        refused("needs an Endpoint", endpoint=False)
        with (
            self.assertRaises(psycopg2.errors.UniqueViolation),
            mute_logger("odoo.sql_db"),
            self.env.cr.savepoint(),
        ):
            self.make_in_config("t-partners")
        refused("Run As user", endpoint="t-x", run_as_user_id=False)
        refused(
            "outbound requests",
            endpoint="t-x",
            auth_type="oauth2",
            oauth2_token_url="https://auth.example.com/token",
        )
        refused("at least one", endpoint="t-x", http_method_ids=[Command.clear()])
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.make_in_config("t-x", run_as_user_id=self.env.ref("base.user_root").id)
        with self.assertRaises(ValidationError) as caught, self.env.cr.savepoint():
            self.make_config(auth_type="odoo_api_key")
        self.assertIn("outbound configurations cannot use it", str(caught.exception))
        with self.assertRaises(ValidationError) as caught, self.env.cr.savepoint():
            self.make_in_config(
                "t-country",
                model_id=self.env["ir.model"]._get("res.country").id,
                lines=[("code", "code", "plain")],
                identifier="code",
                filter_domain="[]",
                delete_mode="archive",
            )
        self.assertIn("cannot be archived", str(caught.exception))
        with (
            self.assertRaises(psycopg2.errors.CheckViolation),
            mute_logger("odoo.sql_db"),
            self.env.cr.savepoint(),
        ):
            self.config.rate_limit = -1
            self.config.flush_recordset()
        # an Out configuration may keep an endpoint another In config uses
        self.make_config(endpoint="t-partners")

    def test_expired_api_key(self):
        self.make_in_config("t-exp", auth_type="odoo_api_key", run_as_user_id=False)
        key = (
            self.env["res.users.apikeys"]
            .with_user(self.internal)
            .sudo()
            ._generate("rpc", "t", fields.Datetime.now() + timedelta(hours=1))
        )
        self.assertSuccess(self.call("GET", "t-exp/T-1", token=key))
        self.env.cr.execute(
            "UPDATE res_users_apikeys SET expiration_date = %s WHERE user_id = %s",
            [fields.Datetime.now() - timedelta(days=1), self.internal.id],
        )
        self.assertError(self.call("GET", "t-exp/T-1", token=key), 401)
