"""A scripted HTTP/1.1 server on 127.0.0.1, shared by ``tests/`` and ``tests_plain/``.

``server.script(Reply(503), 503, "drop", Reply(200, body="done"))`` queues replies,
one per request; once the queue is empty every request gets ``server.default``.
Everything received is kept in ``server.received``. Plain Python: no Odoo import.
"""

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    """One scripted answer of the test server.

    ``delay`` waits before answering; ``drop`` closes the connection without an
    answer; ``echo`` answers the request's headers and body as JSON; ``raw`` is the
    whole answer, status line included, sent as is. ``body_delay`` sends the headers
    and half the body, then stalls that long. ``drip`` sends the whole answer (or
    ``raw``) one byte every ``drip`` seconds; ``body_drip`` sends the status line
    and headers at once, then the body one byte every ``body_drip`` seconds.
    """

    status: int = 200
    body: bytes | str = b'{"ok": true}'
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    echo: bool = False
    raw: bytes | None = None
    drip: float = 0.0
    body_delay: float = 0.0
    body_drip: float = 0.0


@dataclass
class Received:
    """One request as received; ``path`` is the request target, query included;
    ``at`` the monotonic time its headers had arrived."""

    method: str
    path: str
    query: list
    headers: dict
    body: bytes
    client_port: int
    at: float = field(default_factory=time.monotonic)

    def json(self):
        """The body decoded as JSON (None when empty)."""
        return json.loads(self.body.decode()) if self.body else None


class BaseUrl(str):
    """``http://127.0.0.1:<port>``; called with a path it gives the full URL."""

    def __call__(self, path="/hook"):
        return f"{self}{path}"


class ScriptedServer:
    """A real HTTP server on a free port of 127.0.0.1 that answers from a script.

    ``script()`` takes ``Reply`` objects, status ints or ``"drop"``. ``received``
    lists the requests, ``connections`` counts the connections accepted,
    ``max_in_flight`` the most requests answered at once. ``url`` is the base URL
    (a string) and ``url("/path")`` a full one (``/hook`` by default).
    """

    def __init__(self):
        self.replies = deque()
        self.default = Reply()
        self.received = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.scripted = self  # where the handler finds its script
        self.port = self.httpd.server_address[1]
        self.url = BaseUrl(f"http://127.0.0.1:{self.port}")
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self):
        """Serve in a daemon thread; returns the server."""
        self.thread.start()
        return self

    def stop(self):
        """Stop serving, cut short delays and drips, close the socket."""
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    close = stop  # the name tests_plain/ uses

    def script(self, *replies):
        """Queue replies: ``Reply`` objects, status ints or ``"drop"``."""
        with self.lock:
            for reply in replies:
                if reply == "drop":
                    reply = Reply(drop=True)
                elif isinstance(reply, int):
                    reply = Reply(status=reply)
                self.replies.append(reply)

    def reset(self):
        """Forget the script and what was received; back to the default reply."""
        with self.lock:
            self.replies.clear()
            self.received.clear()
            self.max_in_flight = 0
            self.default = Reply()

    def _begin(self, received):
        """Record a request and pick its reply."""
        with self.lock:
            self.received.append(received)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.replies.popleft() if self.replies else self.default

    def _end(self):
        with self.lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        return None

    def setup(self):
        with self.server.scripted.lock:
            self.server.scripted.connections += 1
        return super().setup()

    def handle(self):
        # A client that gives up (the timeout tests) is no error of the server.
        with contextlib.suppress(OSError):
            return super().handle()

    def _handle(self):
        scripted = self.server.scripted
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = scripted._begin(
            Received(
                method=self.command,
                path=self.path,
                query=parse_qsl(urlsplit(self.path).query, keep_blank_values=True),
                headers=dict(self.headers.items()),
                body=body,
                client_port=self.client_address[1],
            )
        )
        try:
            self._answer(reply, body)
        finally:
            scripted._end()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
    do_OPTIONS = _handle

    def _answer(self, reply, body):
        stop_event = self.server.scripted.stop_event
        if reply.delay:
            stop_event.wait(reply.delay)
        if reply.drop:
            self.close_connection = True
            return
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        if reply.echo:
            echoed = {
                "headers": dict(self.headers.items()),
                "body": body.decode(errors="replace"),
            }
            payload = json.dumps(echoed).encode()
        if reply.raw is not None or reply.drip or reply.body_drip:
            self._write_slowly(reply, payload)
            return
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if reply.body_delay:
                half = len(payload) // 2
                self.wfile.write(payload[:half])
                self.wfile.flush()
                stop_event.wait(reply.body_delay)
                payload = payload[half:]
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _write_slowly(self, reply, payload):
        """Write ``raw`` or the built answer, at once or byte by byte, then close."""
        self.close_connection = True
        if reply.raw is not None:
            fast, slow = b"", reply.raw
        else:
            reason = self.responses.get(reply.status, ("Unknown",))[0]
            head = [f"HTTP/1.1 {reply.status} {reason}"]
            head += [f"{key}: {value}" for key, value in reply.headers.items()]
            head.append(f"Content-Length: {len(payload)}")
            head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
            fast, slow = (b"", head + payload) if reply.drip else (head, payload)
        pause = reply.drip or reply.body_drip
        # The client giving up half-way is what these replies test.
        with contextlib.suppress(OSError):
            self.wfile.write(fast)
            if not pause:
                self.wfile.write(slow)
                return
            for index in range(len(slow)):
                self.wfile.write(slow[index : index + 1])
                self.wfile.flush()
                if self.server.scripted.stop_event.wait(pause):
                    return
