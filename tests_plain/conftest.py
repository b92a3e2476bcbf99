"""Plain pytest setup for bj_api_sync's Odoo-free tools.

The checkout folder is not named ``bj_api_sync`` and the addon's own
``__init__.py`` imports Odoo, so a synthetic ``bj_api_sync`` package pointing at
the repository root is registered without executing that ``__init__.py``; tests
then import ``bj_api_sync.tools.transport`` and ``bj_api_sync.exceptions``.

``scripted_server`` is a real ``ThreadingHTTPServer`` on 127.0.0.1 that answers
from a queue of scripted replies and records what it received (and how many
connections it accepted). ``silent_server`` is a TCP listener that accepts and
then sends nothing, or drips the bytes it is given.
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
    ``drip`` sends the whole response (status line, headers, body) one byte
    every ``drip`` seconds; ``body_drip`` sends the status line and headers at
    once, then the body one byte every ``body_drip`` seconds.
    """

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | str = b""
    delay: float = 0.0
    drop: bool = False
    body_delay: float = 0.0
    drip: float = 0.0
    body_drip: float = 0.0


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
        self.connections = 0
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
                if reply.drip or reply.body_drip:
                    self._drip(reply, payload)
                    return
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

            def _drip(self, reply, payload):
                """Write the response slowly, byte by byte, until the client
                goes away or the server stops."""
                self.close_connection = True
                head = [f"HTTP/1.1 {reply.status} {self.responses[reply.status][0]}"]
                head += [f"{key}: {value}" for key, value in reply.headers.items()]
                head.append(f"Content-Length: {len(payload)}")
                head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
                if reply.drip:
                    slow, fast = head + payload, b""
                else:
                    slow, fast = payload, head
                try:
                    self.wfile.write(fast)
                    for index in range(len(slow)):
                        self.wfile.write(slow[index : index + 1])
                        self.wfile.flush()
                        if server.stop_event.wait(reply.drip or reply.body_drip):
                            return
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def setup(self):
                with server.lock:
                    server.connections += 1
                super().setup()

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


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and answers nothing,
    or, with ``drip``, sends ``greeting`` one byte every ``drip`` seconds (e.g.
    the start of a TLS record, to stall a handshake)."""

    def __init__(self, greeting=b"", drip=0.0):
        self.greeting = greeting
        self.drip = drip
        self.accepted = 0
        self.stop_event = threading.Event()
        self.sockets = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                sock, _address = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            self.sockets.append(sock)
            if self.greeting:
                threading.Thread(target=self._drip, args=(sock,), daemon=True).start()

    def _drip(self, sock):
        try:
            for index in range(len(self.greeting)):
                sock.sendall(self.greeting[index : index + 1])
                if self.stop_event.wait(self.drip):
                    return
        except OSError:
            pass

    def close(self):
        self.stop_event.set()
        self.thread.join(2)
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def silent_server():
    servers = []

    def make(greeting=b"", drip=0.0):
        servers.append(SilentServer(greeting, drip))
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on (bound, then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
