"""Plain pytest setup for bj_api_sync's Odoo-free tools.

The checkout folder is not named ``bj_api_sync`` and the addon's own
``__init__.py`` imports Odoo, so a synthetic ``bj_api_sync`` package pointing at
the repository root is registered without executing that ``__init__.py``; tests
then import ``bj_api_sync.tools.transport`` and ``bj_api_sync.exceptions``.

``scripted_server`` is a real ``ThreadingHTTPServer`` on 127.0.0.1 that answers
from a queue of scripted replies and records what it received.
"""

import collections
import http.server
import socket
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

if "bj_api_sync" not in sys.modules:
    _package = types.ModuleType("bj_api_sync")
    _package.__path__ = [str(REPO_ROOT)]
    _package.__file__ = str(REPO_ROOT / "__init__.py")
    _package.__package__ = "bj_api_sync"
    sys.modules["bj_api_sync"] = _package

# pytest sees the repository root as a package (it has an __init__.py) and imports
# it under the checkout folder's name before running the tests; that __init__.py
# imports Odoo. Give pytest the synthetic package under that name instead.
if REPO_ROOT.name.isidentifier() and REPO_ROOT.name not in sys.modules:
    sys.modules[REPO_ROOT.name] = sys.modules["bj_api_sync"]


@dataclass
class Reply:
    """One scripted answer: status, headers, body, delay, or drop the socket.

    ``body_delay`` sends the headers and half the body, then stalls that long.
    """

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | str = b""
    delay: float = 0.0
    drop: bool = False
    body_delay: float = 0.0


DROP = Reply(drop=True)


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    client_port: int


class ScriptedServer:
    """Scripted HTTP/1.1 server; ``replies`` is consumed one per request."""

    def __init__(self):
        self.replies = collections.deque()
        self.received = []
        self.default = Reply(200, {"Content-Type": "application/json"}, b'{"ok":true}')
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler_class()
        )
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def script(self, *replies):
        """Queue replies: ``Reply`` objects, status ints or ``"drop"``."""
        for reply in replies:
            if reply == "drop":
                reply = DROP
            elif isinstance(reply, int):
                reply = Reply(reply, {"Content-Type": "text/plain"}, f"status {reply}")
            self.replies.append(reply)

    def next_reply(self):
        with self.lock:
            return self.replies.popleft() if self.replies else self.default

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 -- stdlib signature
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server.lock:
                    server.received.append(
                        Received(
                            method=self.command,
                            path=self.path,
                            headers=dict(self.headers.items()),
                            body=body,
                            client_port=self.client_address[1],
                        )
                    )
                reply = server.next_reply()
                if reply.delay:
                    server.stop_event.wait(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.body
                if isinstance(payload, str):
                    payload = payload.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if payload and self.command != "HEAD":
                        if reply.body_delay:
                            half = len(payload) // 2
                            self.wfile.write(payload[:half])
                            self.wfile.flush()
                            server.stop_event.wait(reply.body_delay)
                            payload = payload[half:]
                        self.wfile.write(payload)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def handle(self):
                try:
                    super().handle()
                except OSError:
                    pass

        return Handler

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# pytest-odoo, when installed, adds autouse fixtures that load an Odoo registry
# (and need a database); these tools tests need neither, so neutralize them here.
@pytest.fixture(scope="session")
def load_registry():
    yield


@pytest.fixture(scope="session")
def load_http():
    yield


@pytest.fixture(scope="module")
def enable_odoo_test_flag():
    yield


@pytest.fixture
def scripted_server():
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on (bound, then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
