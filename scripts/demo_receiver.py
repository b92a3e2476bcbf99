#!/usr/bin/env python3
"""A tiny HTTP receiver for trying bj_api_sync by hand (stdlib only).

Listens on 127.0.0.1:<port> (default 8070), answers 200 {"ok": true} to every request
and prints each one to stdout: time, method, path, Idempotency-Key, then the body
(pretty JSON when it parses). Point an API configuration's URL at
http://127.0.0.1:8070/anything.
"""

import argparse
import json
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_print_lock = threading.Lock()


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
