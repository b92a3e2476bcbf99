"""A controllable HTTP receiver for the end-to-end check of the outbox.

Runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in background threads of the
calling process and records every request it gets (path, method, Idempotency-Key,
JSON body, the status it answered). Its behaviour is set per path prefix:

- ``ok``: answer 200 at once;
- ``fail``: answer ``status`` (e.g. 400, 503) at once;
- ``slow``: sleep ``delay`` seconds, then answer ``status`` (200 by default);
- ``hang``: never answer (the connection is held until :meth:`release_hangs`,
  :meth:`down` or ``hang_max`` seconds, then closed without a response).

:meth:`down` closes the listening socket *and* every open connection, so clients
get "connection refused" (keep-alive connections of a pool are cut too);
:meth:`up` listens again on the same port.

Run it alone (``python3 e2e/receiver.py --port 8099``) to get the same receiver
with a small JSON control API on ``/_control/...`` (see :class:`ControlHandler`)::

    curl -X POST localhost:8099/_control/mode -d '{"mode": "fail", "status": 503}'
    curl localhost:8099/_control/requests
"""

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODES = ("ok", "fail", "slow", "hang")


@dataclass
class Behaviour:
    """How the receiver answers requests under one path prefix."""

    mode: str = "ok"
    status: int = 200
    delay: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown receiver mode {self.mode!r}")


@dataclass
class Record:
    """One request received (``status`` is None when none was answered)."""

    seq: int
    at: float  # time.time() when the request was read
    method: str
    path: str
    key: str | None
    body: object
    raw: bytes = field(repr=False)
    client_port: int = 0
    status: int | None = None
    answered_at: float | None = None

    @property
    def accepted(self):
        return self.status is not None and 200 <= self.status < 300


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, receiver):
        self.receiver = receiver
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self.receiver.lock:
            self.receiver._connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        # A client that goes away (timeout, SIGKILL) is part of the scenarios.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def shutdown_request(self, request):
        with self.receiver.lock:
            self.receiver._connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args):
        pass

    def _answer(self, status, payload=b'{"ok": true}'):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _handle(self):
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if path.startswith("/_control/") and receiver.control:
            return self._control(receiver, path, raw)
        record = receiver._record(
            self.command, path, self.headers, raw, self.client_address[1]
        )
        behaviour = receiver.behaviour_for(path)
        if behaviour.mode == "hang":
            receiver._hang(self)
            self.close_connection = True
            return
        if behaviour.mode == "slow" and behaviour.delay:
            time.sleep(behaviour.delay)
        status = 200 if behaviour.mode == "ok" else behaviour.status
        if receiver.is_down:
            self.close_connection = True
            return
        if self._answer(status):
            receiver._answered(record, status)

    def _control(self, receiver, path, raw):
        try:
            data = json.loads(raw) if raw else {}
            answer = receiver.control_call(path.removeprefix("/_control/"), data)
            status = 200
        except (ValueError, TypeError, KeyError) as error:
            answer, status = {"error": str(error)}, 400
        self._answer(status, json.dumps(answer, default=str).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class Receiver:
    """The receiver: start with :meth:`up`, drive it, read :attr:`records`."""

    def __init__(self, port=0, host="127.0.0.1", hang_max=600.0, control=False):
        self.host = host
        self.port = port
        self.hang_max = hang_max
        self.control = control
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.rules: dict[str, Behaviour] = {}
        self.default = Behaviour()
        self._server = None
        self._thread = None
        self._connections = set()
        self._hang_release = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    @property
    def is_down(self):
        return self._server is None

    def up(self):
        """Listen (again, on the same port once one was chosen)."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"receiver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def down(self):
        """Refuse connections: close the listening socket and every open one."""
        server, self._server = self._server, None
        if server is None:
            return self
        server.shutdown()
        server.server_close()
        self.release_hangs()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return self

    stop = down

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    # -- behaviour ------------------------------------------------------------

    def set(self, mode="ok", status=200, delay=0.0, path=None):
        """Set the behaviour of ``path`` (a prefix) or, without one, the default."""
        behaviour = Behaviour(mode, status, delay)
        with self.lock:
            if path is None:
                self.default = behaviour
            else:
                self.rules[path] = behaviour
        return self

    def ok(self, path=None):
        return self.set("ok", path=path)

    def fail(self, status, path=None):
        return self.set("fail", status=status, path=path)

    def slow(self, delay, status=200, path=None):
        return self.set("slow", status=status, delay=delay, path=path)

    def hang(self, path=None):
        return self.set("hang", path=path)

    def behaviour_for(self, path):
        with self.lock:
            best = None
            for prefix in self.rules:
                if path.startswith(prefix) and (
                    best is None or len(prefix) > len(best)
                ):
                    best = prefix
            return self.rules[best] if best is not None else self.default

    def release_hangs(self):
        """Let every hanging request go (its connection is closed unanswered)."""
        with self.lock:
            event, self._hang_release = self._hang_release, threading.Event()
        event.set()

    def reset(self):
        """Forget records and per-path rules; answer 200 again."""
        self.release_hangs()
        with self.lock:
            self.records.clear()
            self.rules.clear()
            self.default = Behaviour()
        return self

    # -- records ------------------------------------------------------------

    def _record(self, method, path, headers, raw, client_port=0):
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self.lock:
            record = Record(
                seq=len(self.records),
                at=time.time(),
                method=method,
                path=path,
                key=headers.get("Idempotency-Key"),
                body=body,
                raw=raw,
                client_port=client_port,
            )
            self.records.append(record)
        return record

    def _answered(self, record, status):
        with self.lock:
            record.status = status
            record.answered_at = time.time()

    def _hang(self, handler):
        with self.lock:
            event = self._hang_release
        event.wait(self.hang_max)

    def requests(self, path=None, accepted=None):
        """Records (a copy), optionally under a path prefix / by acceptance."""
        with self.lock:
            found = list(self.records)
        if path is not None:
            found = [r for r in found if r.path.startswith(path)]
        if accepted is not None:
            found = [r for r in found if r.accepted == accepted]
        return found

    # -- control API (standalone mode) ----------------------------------------

    def control_call(self, name, data):
        """``mode``, ``requests``, ``reset``, ``release`` (up/down: in-process only,
        the control API shares the listening socket)."""
        if name == "mode":
            self.set(
                data.get("mode", "ok"),
                status=int(data.get("status", 200)),
                delay=float(data.get("delay", 0.0)),
                path=data.get("path"),
            )
            return {"ok": True}
        if name == "requests":
            return [
                {k: v for k, v in asdict(r).items() if k != "raw"}
                for r in self.requests(path=data.get("path"))
            ]
        if name == "reset":
            self.reset()
            return {"ok": True}
        if name == "release":
            self.release_hangs()
            return {"ok": True}
        raise KeyError(f"unknown control call {name!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    receiver = Receiver(port=args.port, control=True).up()
    print(f"receiver on {receiver.url('/')} (control API under /_control/)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.down()


if __name__ == "__main__":
    main()
