"""B11: ``rate_limit_per_second`` across servers (SPEC §14).

One configuration limited to 20 requests a second, 4 lanes
(``max_concurrency``), a backlog of 400 queued deliveries, and two odoo-bin
servers on the same database draining it at once: each server runs the
delivery cron's method in two threads of JSON-RPC calls to a server action (the
cron job itself is one ``ir.cron`` row, which only one server runs at a time).
A receiver in this process notes when each request arrives. The line prints
the worst sliding second (target: at most the rate) and how long the backlog
took to drain, from the first request to the last (target: 400 / 20 = 20 s,
within 20 %).
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.odoo import JsonRpc, OdooServer

from cases import Result

PATH = "/b11"


class ArrivalReceiver:
    """Answers 200 to everything and notes when each request on ``PATH``
    arrived (monotonic clock) and its Idempotency-Key."""

    def __init__(self):
        self.arrivals = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return None

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.startswith(PATH):
                    with receiver.lock:
                        receiver.arrivals.append(
                            (time.monotonic(), self.headers.get("Idempotency-Key"))
                        )
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path=PATH):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


def worst_second(times):
    """The most arrivals in one sliding second (windows starting at each)."""
    times = sorted(times)
    worst, end = 0, 0
    for start, first in enumerate(times):
        while end < len(times) and times[end] < first + 1.0:
            end += 1
        worst = max(worst, end - start)
    return worst


def prepare(env, receiver_url, count, rate, lanes):
    """The configuration, ``count`` partners and their queued deliveries, and
    the server action that drains the queue; committed. Returns their ids."""
    from odoo import Command  # noqa: PLC0415

    config = env["bj.api.sync.config"].create(
        {
            "name": "Bench B11 rate limit",
            "request_type": "out",
            "model_id": env["ir.model"]._get("res.partner").id,
            "request_url": receiver_url,
            "http_method_ids": [
                Command.set(env.ref("bj_api_sync.http_method_post").ids)
            ],
            "delivery_mode": "queued",
            "max_concurrency": lanes,
            "rate_limit_per_second": rate,
            "max_retries": 0,
            "line_ids": [
                Command.create({"field_path": "name", "api_key": "name"}),
                Command.create({"field_path": "ref", "api_key": "ref"}),
            ],
        }
    )
    partners = env["res.partner"].create(
        [{"name": f"B11 partner {i}", "ref": f"B11-{i:04d}"} for i in range(count)]
    )
    deliveries = config._enqueue(partners, "manual")
    env.flush_all()
    env.cr.flush()  # pre-commit hooks: the buffered rows are written
    drain = env["ir.actions.server"].create(
        {
            "name": "Bench B11 drain",
            "model_id": env["ir.model"]._get("bj.api.sync.delivery").id,
            "state": "code",
            "code": "model._cron_send_deliveries()",
        }
    )
    env.cr.commit()
    queued = env["bj.api.sync.delivery"].search_count([("config_id", "=", config.id)])
    return config.id, drain.id, queued or len(deliveries)


def b11_rate_limit(odoo, dbname, env, count=400, rate=20, lanes=4, timeout=120):
    """Two servers drain ``count`` deliveries of a configuration limited to
    ``rate`` requests a second."""
    receiver = ArrivalReceiver().start()
    servers = []
    stop = threading.Event()
    calls = {"ok": 0, "failed": 0}
    try:
        config_id, drain_id, queued = prepare(env, receiver.url(), count, rate, lanes)
        servers = [
            OdooServer(odoo, dbname, extra=["--log-level=warn"]).start()
            for _s in range(2)
        ]
        lock = threading.Lock()

        def drain(url):
            rpc = JsonRpc(url, dbname)
            while not stop.is_set():
                try:
                    rpc.call("ir.actions.server", "run", [drain_id])
                    outcome = "ok"
                except Exception:  # noqa: BLE001 - counted, the loop goes on
                    outcome = "failed"
                with lock:
                    calls[outcome] += 1
                time.sleep(0.05)

        threads = [
            threading.Thread(target=drain, args=(server.url,), daemon=True)
            for server in servers
            for _t in range(2)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - started < timeout:
            with receiver.lock:
                if len(receiver.arrivals) >= queued:
                    break
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(60)
    finally:
        stop.set()
        for server in servers:
            server.stop()
        receiver.stop()
    times = [at for at, _key in receiver.arrivals]
    keys = {key for _at, key in receiver.arrivals}
    env.cr.rollback()  # a fresh snapshot: the servers' commits are seen
    env.invalidate_all()
    states = dict(
        env["bj.api.sync.delivery"]._read_group(
            [("config_id", "=", config_id)], ["state"], ["__count"]
        )
    )
    worst = worst_second(times)
    took = (max(times) - min(times)) if len(times) > 1 else 0.0
    expected = (queued - 1) / rate if queued > 1 else 0.0
    within = abs(took - expected) <= 0.2 * expected
    complete = len(times) == queued and len(keys) == queued
    ok = worst <= rate and within and complete and states.get("done") == queued
    return Result(
        "B11",
        f"rate_limit_per_second {rate:g}, {lanes} lanes, 2 threaded odoo-bin "
        f"servers x 2 drain loops, {queued} queued deliveries: worst sliding "
        f"second {worst} requests | target <= {rate:g} | drained in {took:.1f} s "
        f"(first to last request) | expected {expected:.1f} s +/- 20 % | "
        f"received {len(times)} ({len(keys)} distinct keys), deliveries "
        f"{dict(sorted(states.items()))} | drain calls {calls}",
        ok,
    )
