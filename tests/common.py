import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from odoo import Command
from odoo.tests import HttpCase, TransactionCase, new_test_user
from odoo.tests.common import _super_send


@dataclass
class Reply:
    """One scripted answer of the test server."""

    status: int = 200
    body: bytes | str = b'{"ok": true}'
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    echo: bool = False  # answer with the request's headers and body, as JSON
    raw: bytes | None = None  # the whole answer, status line included, as is
    drip: float = 0.0  # seconds between two bytes of ``raw`` (slow senders)


@dataclass
class Received:
    method: str
    path: str
    query: list
    headers: dict
    body: bytes
    client_port: int

    def json(self):
        return json.loads(self.body.decode()) if self.body else None


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 that answers from a script.

    ``script(Reply(503), Reply(503), Reply(200))`` queues replies; once the queue is
    empty every request gets ``default``. Everything received is kept in
    ``received``.
    """

    def __init__(self):
        self.replies = deque()
        self.default = Reply()
        self.received = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with server.lock:
                    server.received.append(
                        Received(
                            method=self.command,
                            path=parts.path,
                            query=parse_qsl(parts.query, keep_blank_values=True),
                            headers=dict(self.headers.items()),
                            body=body,
                            client_port=self.client_address[1],
                        )
                    )
                    reply = (
                        server.replies.popleft() if server.replies else server.default
                    )
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(reply, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, reply, body):
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    self.close_connection = True
                    try:
                        if not reply.drip:
                            self.wfile.write(reply.raw)
                            return
                        for index in range(len(reply.raw)):
                            self.wfile.write(reply.raw[index : index + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    except OSError:
                        pass  # the client gave up: what these replies test
                    return
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = (
                    reply.body.encode() if isinstance(reply.body, str) else reply.body
                )
                if reply.echo:
                    payload = json.dumps(
                        {
                            "headers": dict(self.headers.items()),
                            "body": body.decode(errors="replace"),
                        }
                    ).encode()
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up first (timeout tests): nothing to answer.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies):
        with self.lock:
            self.replies.extend(
                r if isinstance(r, Reply) else Reply(status=r) for r in replies
            )

    def reset(self):
        with self.lock:
            self.replies.clear()
            self.received.clear()
            self.max_in_flight = 0
            self.default = Reply()


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
        cls.server = ScriptedServer().start()
        cls.addClassCleanup(cls.server.stop)
        cls.method_post = cls.env.ref("bj_api_sync.http_method_post")
        cls.method_get = cls.env.ref("bj_api_sync.http_method_get")
        cls.partner_model = cls.env["ir.model"]._get("res.partner")
        cls.Config = cls.env["bj.api.sync.config"]
        cls.Log = cls.env["bj.api.log"]

    def setUp(self):
        super().setUp()
        self.server.reset()

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


class UsersMixin:
    """Users of every kind, made with ``new_test_user`` (password = login).

    portal, internal (no BJ group, may edit contacts), bj_user (BJ API User),
    bj_manager (BJ API Manager, not a Settings admin), admin_user (Settings),
    and other_manager (BJ API Manager of a second company only).
    """

    @classmethod
    def make_users(cls):
        env = cls.env
        cls.company_b = env["res.company"].create({"name": "BJ Company B"})
        cls.portal = new_test_user(env, "bj_portal", groups="base.group_portal")
        cls.internal = new_test_user(
            env, "bj_internal", groups="base.group_user,base.group_partner_manager"
        )
        cls.bj_user = new_test_user(
            env,
            "bj_user",
            groups="base.group_user,base.group_partner_manager,"
            "bj_api_sync.group_bj_api_user",
        )
        cls.bj_manager = new_test_user(
            env,
            "bj_manager",
            groups="base.group_user,base.group_partner_manager,"
            "bj_api_sync.group_bj_api_manager",
        )
        cls.admin_user = new_test_user(
            env, "bj_admin", groups="base.group_user,base.group_system"
        )
        cls.other_manager = new_test_user(
            env,
            "bj_other_manager",
            groups="base.group_user,base.group_partner_manager,"
            "bj_api_sync.group_bj_api_manager",
            company_id=cls.company_b.id,
            company_ids=[Command.set(cls.company_b.ids)],
        )


class BjApiSyncCase(SyncFixtures, LocalHttpMixin, TransactionCase):
    """Base case: a scripted HTTP server per class and record factories."""


class BjApiSyncHttpCase(SyncFixtures, LocalHttpMixin, HttpCase):
    """Over real HTTP: Odoo's own test server, the scripted receiver and the
    same factories."""
