from urllib.parse import urlsplit

from odoo import Command
from odoo.tests import HttpCase, TransactionCase, new_test_user
from odoo.tests.common import _super_send

# The scripted HTTP server (Reply, Received, ScriptedServer) is plain Python, shared
# with tests_plain/; the test modules import it from here.
from ..testkit.http_server import Received, Reply, ScriptedServer  # noqa: F401


class LocalHttpMixin:
    """Let requests to local test servers through untouched: Odoo's test
    handler would rewrite (connect, read) timeout tuples meant for these tests.
    Anything else stays blocked."""

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        if urlsplit(r.url).hostname in ("127.0.0.1", "localhost"):
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)


class SyncFixtures:
    """A scripted HTTP server per class and record factories."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = cls.start_server()
        cls.method_post = cls.env.ref("bj_api_sync.http_method_post")
        cls.method_get = cls.env.ref("bj_api_sync.http_method_get")
        cls.partner_model = cls.env["ir.model"]._get("res.partner")
        cls.Config = cls.env["bj.api.sync.config"]
        cls.Log = cls.env["bj.api.log"]

    def setUp(self):
        super().setUp()
        self.server.reset()

    @classmethod
    def start_server(cls):
        """Another scripted server on 127.0.0.1, stopped after the class."""
        server = ScriptedServer().start()
        cls.addClassCleanup(server.stop)
        return server

    @classmethod
    def give_xml_id(cls, record, xml_id):
        """Register ``module.name`` for ``record`` (as data files do)."""
        module, name = xml_id.split(".")
        cls.env["ir.model.data"].create(
            {"module": module, "name": name, "model": record._name, "res_id": record.id}
        )

    @staticmethod
    def add_line(config, **values):
        """Append one mapping line to ``config``."""
        config.line_ids = [Command.create(dict({"sequence": 50}, **values))]

    @classmethod
    def make_config(cls, lines=(("name", "name", "plain"),), **values):
        """Create an outbound config on res.partner posting to the test server."""
        vals = {
            "name": "Test config",
            "request_type": "out",
            "model_id": cls.partner_model.id,
            "request_url": cls.server.url(),
            "http_method_ids": [Command.set(cls.method_post.ids)],
            "max_retries": 0,
            "backoff_factor": 0.0,
            "line_ids": [
                Command.create(
                    {
                        "field_path": path,
                        "api_key": key,
                        "value_type": vtype,
                        "sequence": index,
                    }
                )
                for index, (path, key, vtype) in enumerate(lines)
            ],
        }
        vals.update(values)
        return cls.Config.create(vals)

    @staticmethod
    def run_as_cron(cron):
        """Run a scheduled action's server action as the cron runner does (its
        user, ``cron_id`` in the context), without the runner's own commits."""
        return (
            cron.ir_actions_server_id.with_user(cron.user_id)
            .with_context(cron_id=cron.id)
            .run()
        )

    @classmethod
    def make_partners(cls, count, **values):
        return cls.env["res.partner"].create(
            [dict({"name": f"Partner {i:04d}"}, **values) for i in range(count)]
        )


PARTNER_EDITOR = "base.group_user,base.group_partner_manager"


class UsersMixin:
    """Users of every kind, made with ``new_test_user`` (password = login).

    portal, internal (no BJ group, may edit contacts), bj_user (BJ API User),
    bj_manager (BJ API Manager, not a Settings admin), admin_user (Settings),
    and other_manager (BJ API Manager of a second company only).
    """

    USERS = (
        # attribute, login, groups
        ("portal", "bj_portal", "base.group_portal"),
        ("internal", "bj_internal", "base.group_user,base.group_partner_manager"),
        ("bj_user", "bj_user", f"{PARTNER_EDITOR},bj_api_sync.group_bj_api_user"),
        (
            "bj_manager",
            "bj_manager",
            f"{PARTNER_EDITOR},bj_api_sync.group_bj_api_manager",
        ),
        ("admin_user", "bj_admin", "base.group_user,base.group_system"),
    )

    @classmethod
    def make_users(cls):
        env = cls.env
        cls.company_b = env["res.company"].create({"name": "BJ Company B"})
        for attribute, login, groups in cls.USERS:
            setattr(cls, attribute, new_test_user(env, login, groups=groups))
        cls.other_manager = new_test_user(
            env,
            "bj_other_manager",
            groups=f"{PARTNER_EDITOR},bj_api_sync.group_bj_api_manager",
            company_id=cls.company_b.id,
            company_ids=[Command.set(cls.company_b.ids)],
        )


class BjApiSyncCase(SyncFixtures, LocalHttpMixin, TransactionCase):
    """Base case: a scripted HTTP server per class and record factories."""


class BjApiSyncHttpCase(SyncFixtures, LocalHttpMixin, HttpCase):
    """Over real HTTP: Odoo's own test server, the scripted receiver and the
    same factories."""
