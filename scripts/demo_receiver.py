#!/usr/bin/env python3
"""A tiny HTTP receiver for trying bj_api_sync by hand (stdlib only).

Listens on 127.0.0.1:<port> (default 8070), answers 200 {"ok": true} to every request
and prints each one to stdout: time, method, path, Idempotency-Key, then the body
(pretty JSON when it parses). Point an API configuration's URL at
http://127.0.0.1:8070/anything.

``GET /people?page=N&per_page=M`` is a page-paginated list of
:data:`PEOPLE_COUNT` people for imports: ``{"data": [...], "page": N,
"total": T}``, an empty ``data`` past the last page. A POST answers with an
``id`` of its own making (``{"ok": true, "id": "rcv-<n>"}``), for write-back.
"""

import argparse
import json
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs, urlsplit

_print_lock = threading.Lock()
_ids = count(1)
PEOPLE_COUNT = 25
MAX_PER_PAGE = 100
COUNTRIES = ("BE", "FR", "DE", "NL", "US")


def person(number):
    """The demo person ``number`` (1-based), the same on every call."""
    return {
        "code": f"RCV-{number:04d}",
        "full_name": f"Receiver Person {number}",
        "email": f"person{number}@receiver.example.com",
        "phone": f"+32 2 555 {number:04d}",
        "country": COUNTRIES[number % len(COUNTRIES)],
    }


def people_page(query):
    """The page of people ``query`` (``page``, ``per_page``) asks for."""

    def number(name, default):
        try:
            return max(int(query.get(name, [default])[0]), 1)
        except ValueError:
            return default

    page = number("page", 1)
    per_page = min(number("per_page", 10), MAX_PER_PAGE)
    first = (page - 1) * per_page + 1
    last = min(first + per_page - 1, PEOPLE_COUNT)
    data = [person(n) for n in range(first, last + 1)]
    return {"data": data, "page": page, "per_page": per_page, "total": PEOPLE_COUNT}


def format_body(raw):
    """Return the body as text: indented JSON when it parses, else decoded as is."""
    if not raw:
        return "(no body)"
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


class ReceiverHandler(BaseHTTPRequestHandler):
    server_version = "bj-demo-receiver/1.0"
    protocol_version = "HTTP/1.1"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        stamp = datetime.now().strftime("%H:%M:%S")
        key = self.headers.get("Idempotency-Key", "-")
        body = format_body(raw).replace("\n", "\n    ")
        with _print_lock:
            sys.stdout.write(
                f"[receiver] {stamp} {self.command} {self.path}"
                f" Idempotency-Key: {key}\n    {body}\n"
            )
            sys.stdout.flush()
        url = urlsplit(self.path)
        if self.command == "GET" and url.path.rstrip("/") == "/people":
            reply = json.dumps(people_page(parse_qs(url.query))).encode()
        elif self.command == "POST":
            reply = json.dumps({"ok": True, "id": f"rcv-{next(_ids)}"}).encode()
        else:
            reply = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, *args):
        """Silence the default stderr access log: _handle prints its own line."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8070)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), ReceiverHandler)
    server.daemon_threads = True
    print(f"[receiver] listening on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
