"""HTTP receivers of the benchmarks, on 127.0.0.1.

* :class:`Nginx` — the fast receiver: a private nginx answering ``200 {"ok":true}`` to
  every method, no access log. Installed with apt-get when missing and allowed.
* :class:`PythonReceiver` — a ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive) run as a
  separate process so that it never competes with the measured code for the GIL.
  Paths starting with ``/slow`` answer after :data:`SLOW_DELAY` seconds, others at
  once. It records what it received; ``GET /_received?path=P`` returns the bodies
  received on ``P`` (in arrival order) and ``POST /_reset`` forgets them. It also is
  the fast receiver's fallback when nginx cannot be had.

Both also serve static JSON pages for the import benchmark (B9):
``GET /import/<set>/?page=N`` answers the file ``<import_dir>/<set>/people-N.json``
(404 when there is none); ``import_dir`` is a temporary folder of the receiver.

Run as a script it serves: ``python3 receivers.py [IMPORT_DIR]`` prints its port on
stdout.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

# Run as a script too (the receiver process): make the repository's testkit importable.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from testkit.processes import (  # noqa: E402
    die_with_parent,
    free_port,
    stop_process,
    wait_for_port,
)

SLOW_DELAY = 0.05
OK_BODY = b'{"ok":true}'
#: ``/import/<set>/`` of the B9 pages (the same pattern as nginx's location).
IMPORT_PATH = re.compile(r"^/import/([A-Za-z0-9_-]+)/$")

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/json;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 '{{"ok":true}}'; }}
        # B9: GET /import/<set>/?page=N serves {tmp}/import/<set>/people-N.json.
        location ~ ^/import/([A-Za-z0-9_-]+)/$ {{
            root {tmp}/import;
            try_files /$1/people-$arg_page.json =404;
        }}
    }}
}}
"""


def find_nginx(install=True):
    """Path of the nginx binary; installs Debian's nginx-light when allowed."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("bench: nginx missing, installing nginx-light with apt-get", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "install", "-y", "-qq", "nginx-light"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "nginx-light"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        if done.returncode == 0 and command[1] == "install":
            break
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


class Nginx:
    """A private nginx answering 200 to everything on 127.0.0.1:<port>."""

    name = "nginx"

    def __init__(self, binary):
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="bj_bench_nginx_")
        self.import_dir = os.path.join(self.tmp, "import")
        os.mkdir(self.import_dir)
        self.port = free_port()
        self.process = None

    def start(self):
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as handle:
            handle.write(NGINX_CONF.format(tmp=self.tmp, port=self.port))
        self.process = subprocess.Popen(
            [self.binary, "-p", self.tmp, "-e", f"{self.tmp}/error.log", "-c", conf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError("nginx did not start")
        return self

    def stop(self):
        stop_process(self.process, timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"


class PythonReceiver:
    """Client side of the receiver process started from this file."""

    name = "python"

    def __init__(self):
        self.process = None
        self.port = None
        self.import_dir = tempfile.mkdtemp(prefix="bj_bench_import_")

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), self.import_dir],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.port = int(self.process.stdout.readline())
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError("python receiver did not start")
        self.control = requests.Session()
        return self

    def stop(self):
        stop_process(self.process, timeout=5)
        shutil.rmtree(self.import_dir, ignore_errors=True)

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path):
        """Bodies received on ``path``, decoded as JSON, in arrival order."""
        response = self.control.get(self.url("/_received"), params={"path": path})
        response.raise_for_status()
        return response.json()

    def reset(self):
        self.control.post(self.url("/_reset")).raise_for_status()


def start_fast_receiver(install=True):
    """nginx when it can be had, else the Python receiver (say which)."""
    binary = find_nginx(install=install)
    if binary:
        try:
            return Nginx(binary).start()
        except (OSError, RuntimeError) as error:
            print(f"bench: nginx failed ({error}), falling back", file=sys.stderr)
    return PythonReceiver().start()


# ----------------------------------------------------------------------------
# The receiver process
# ----------------------------------------------------------------------------


def serve(import_dir=None):
    received = defaultdict(list)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # One write per response and no Nagle: else delayed ACKs add 40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def _reply(self, payload, status=200):
            self.wfile.write(
                b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, len(payload), payload)
            )

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            served = IMPORT_PATH.match(parts.path) if import_dir else None
            if served and self.command == "GET":
                page = parse_qs(parts.query).get("page", [""])[0]
                name = os.path.join(import_dir, served[1], f"people-{page}.json")
                if not page.isdigit() or not os.path.isfile(name):
                    return self._reply(b'{"error":"not found"}', status=404)
                with open(name, "rb") as handle:
                    return self._reply(handle.read())
            if parts.path == "/_received":
                path = parse_qs(parts.query).get("path", [""])[0]
                with lock:
                    bodies = list(received.get(path, ()))
                payload = "[" + ",".join(b.decode() or "null" for b in bodies) + "]"
                return self._reply(payload.encode())
            if parts.path == "/_reset":
                with lock:
                    received.clear()
                return self._reply(OK_BODY)
            with lock:
                received[parts.path].append(body)
            if parts.path.startswith("/slow"):
                time.sleep(SLOW_DELAY)
            try:
                self._reply(OK_BODY)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    ThreadingHTTPServer.request_queue_size = 128
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(0))
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else None)
