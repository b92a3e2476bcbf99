"""Plain pytest setup for bj_api_sync's Odoo-free tools.

The checkout folder is not named ``bj_api_sync`` and the addon's own
``__init__.py`` imports Odoo, so a synthetic ``bj_api_sync`` package pointing at
the repository root is registered without executing that ``__init__.py``; tests
then import ``bj_api_sync.tools.transport`` and ``bj_api_sync.exceptions``.

``scripted_server`` is ``testkit.http_server.ScriptedServer``, shared with
``tests/``: a real ``ThreadingHTTPServer`` on 127.0.0.1 that answers from a queue
of scripted replies and records what it received (and how many connections it
accepted); its ``url`` is the base URL. ``silent_server`` is a TCP listener that
accepts and then sends nothing, or drips the bytes it is given.
"""

import socket
import sys
import threading
import types
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


# The scripted server is the one of tests/ too (testkit/http_server.py); it imports
# only once the synthetic package above exists.
from bj_api_sync.testkit import http_server  # noqa: E402
from bj_api_sync.testkit.http_server import ScriptedServer  # noqa: E402
from bj_api_sync.tools.transport import OutboundRequest  # noqa: E402


def Reply(status=200, headers=None, body=b"", **options):  # noqa: N802 -- a factory
    """A ``testkit.http_server.Reply`` in the order these tests write it: status,
    headers, body (empty by default), then options by name (``delay``, ``drop``,
    ``body_delay``, ``drip``, ``body_drip``)."""
    return http_server.Reply(status, body, headers or {}, **options)


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
        server.stop()


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


def make_request(url, method="POST", body=b'{"a":1}', **kwargs):
    """An OutboundRequest for the tests: no backoff, JSON and a bearer header."""
    kwargs.setdefault("backoff_factor", 0)
    headers = kwargs.pop(
        "headers",
        {
            "Content-Type": "application/json",
            "Idempotency-Key": "key-123",
            "Authorization": "Bearer s3cr3t",
        },
    )
    return OutboundRequest(
        method=method,
        url=url,
        headers=headers,
        body=body,
        params=kwargs.pop("params", None),
        **kwargs,
    )
