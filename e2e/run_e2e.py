#!/usr/bin/env python3
"""End-to-end check of the bj_api_sync outbox against real Odoo server processes.

    python3 e2e/run_e2e.py [--only 1,3] [--keep-db] [--db EXISTING_DB]

Creates a fresh database, installs bj_api_sync (no demo data), starts ``odoo-bin``
(threaded, with cron threads) and drives it from outside through ``/jsonrpc`` only,
each call one committed (or rolled back) transaction, while a controllable HTTP
receiver (``e2e/receiver.py``) plays the external API. Every scenario prints one
line::

    scenario N <name>: events=E received=R unique_keys=U lost=L unexpected=X \
result=PASS|FAIL

(scenario 3 adds ``duplicates=D in_flight=F``: requests sent again after the
SIGKILL, and requests in flight at that moment, i.e. sent and their outcome not
stored; D <= F), indented notes (lines
starting with ``  ``) say what happened and where the check shortened a delay.
Scenarios 10-12 drive the inbound endpoints (``/bj_api_sync/v1/<endpoint>``,
SPEC §11) over HTTP on a second, prefork server (``--workers 4``) and say in
their docstrings what their counters count. The run ends with
``e2e: N passed, M failed`` and exits non-zero if any failed. Odoo processes, the
receiver and the database are always cleaned up (also on failure or Ctrl-C);
server logs stay in ``.run/e2e/<database>/``. A run takes 8-11 minutes (about 1 for
the install; scenarios 1 and 3 wait for Odoo's own cron polling, up to 2 minutes;
scenarios 10-12 take about 3).
"""

import argparse
import json
import random
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
# The receiver beside this file; testkit (Odoo launcher, JSON-RPC) at the repo root.
sys.path[:0] = [str(HERE), str(HERE.parent)]

from receiver import Receiver  # noqa: E402

from testkit.odoo import (  # noqa: E402
    RUN_DIR,
    JsonRpc,
    Odoo,
    OdooError,
    OdooServer,
    RpcError,
    unique_db_name,
)

DELIVERY = "bj.api.sync.delivery"
CONFIG = "bj.api.sync.config"
OPEN_STATES = ("pending", "retrying")
# Config lines: the payload carries the record id, name, ref and a version field.
LINES = (("id", "id"), ("name", "name"), ("ref", "ref"), ("function", "version"))
WAKE_CODE = "env.ref('bj_api_sync.ir_cron_send_deliveries')._trigger()"
DRAIN_CODE = "env['bj.api.sync.delivery']._cron_send_deliveries(limit=40)"
ROLLBACK_CODE = """
n = env.context.get('e2e_n', 0)
partners = env['res.partner'].create([
    {'name': 'S2 %s-%s' % (n, i), 'ref': 'S2-%s-%s' % (n, i), 'function': 'v1'}
    for i in range(3)
])
mode = env.context.get('e2e_mode')
if mode == 'flush':
    # Run the pre-commit hooks: the outbox rows are written, then rolled back.
    env.cr.flush()
elif mode == 'constraint':
    partners[1].write({'function': 'v2'})
    partners[0].write({'parent_id': partners[0].id})  # recursion: ValidationError
raise UserError('e2e: roll back transaction %s' % n)
"""
COALESCE_CODE = """
partner = env['res.partner'].create(
    {'name': 'S7 a', 'ref': 'S7-a', 'function': 'v1'})
partner.write({'function': 'v2'})
partner.write({'name': 'S7 a final'})
partner.write({'function': 'v4', 'email': 's7a@example.com'})
"""
# Inbound configurations (scenarios 10-12): (field_path, api_key, direction,
# is_identifier). Answers carry the record id, so that duplicates show.
IN_LINES = (
    ("ref", "ref", "both", True),
    ("name", "name", "both", False),
    ("id", "id", "out", False),
)
IN_PREFIX = "/bj_api_sync/v1"
#: HTTP worker processes of the prefork server of scenarios 10-12.
IN_WORKERS = 4
#: What SPEC §11 answers that a client may send again: 503 (Odoo's retries of a
#: conflicting request ran out, with Retry-After) and 409 while the same
#: Idempotency-Key is in flight ("still in progress").
IN_PROGRESS = "still in progress"
LAST_VALUES_CODE = """
partner = env['res.partner'].search([('ref', '=', 'S7-b')])
partner.write({'name': 'S7 b last', 'function': 'v9'})
partner.unlink()
"""


def now_utc():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def odoo_datetime(value):
    return value.strftime("%Y-%m-%d %H:%M:%S")


def past():
    """A server-side timestamp safely in the past (same clock: loopback only)."""
    return odoo_datetime(now_utc() - timedelta(minutes=1))


class Aborted(Exception):
    pass


@dataclass
class Outcome:
    """What one scenario found; ``line()`` is its one-line verdict."""

    number: int
    name: str
    events: int = 0
    received: int = 0
    unique_keys: int = 0
    lost: int = 0
    unexpected: int = 0
    duplicates: int | None = None
    in_flight: int | None = None
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def passed(self):
        return not self.problems and not self.lost and not self.unexpected

    def check(self, condition, problem):
        if not condition:
            self.problems.append(problem)
        return condition

    def line(self):
        dup = "" if self.duplicates is None else f" duplicates={self.duplicates}"
        if self.in_flight is not None:
            dup += f" in_flight={self.in_flight}"
        return (
            f"scenario {self.number} {self.name}: events={self.events} "
            f"received={self.received} unique_keys={self.unique_keys} "
            f"lost={self.lost} unexpected={self.unexpected}{dup} "
            f"result={'PASS' if self.passed else 'FAIL'}"
        )


@dataclass
class Event:
    """One change that must reach the receiver exactly once (same key)."""

    res_id: int
    event: str
    expect: dict = field(default_factory=dict)  # body values it must carry


def tally(outcome, events, deliveries, requests, allow_duplicates=False):
    """Fill the counters of ``outcome`` from what the receiver accepted.

    A request is *unexpected* when its key is no delivery of the scenario, when its
    body differs from that delivery's snapshot, when it carries no event of the
    scenario, when a second key turns up for one event, or when it repeats a key
    and duplicates are not allowed. An event is *lost* when no accepted request
    carries it.
    """
    by_key = {d["idempotency_key"]: d for d in deliveries}
    wanted = {}
    for index, event in enumerate(events):
        wanted.setdefault((event.res_id, event.event), []).append((index, event))
    accepted = [r for r in requests if r.accepted]
    outcome.events = len(events)
    outcome.received = len(accepted)
    outcome.unique_keys = len({r.key for r in accepted})
    unexpected = Counter()
    keys_per_event = {}
    for request in accepted:
        delivery = by_key.get(request.key)
        if delivery is None:
            unexpected["unknown key"] += 1
            continue
        if request.body != json.loads(delivery["payload"] or "null"):
            unexpected["body differs from the delivery's snapshot"] += 1
            continue
        candidates = wanted.get((delivery["res_id"], delivery["event"]))
        if not candidates:
            unexpected[f"no such event ({delivery['event']})"] += 1
            continue
        body = request.body if isinstance(request.body, dict) else {}
        index = next(
            (
                index
                for index, event in candidates
                if all(body.get(k) == v for k, v in event.expect.items())
            ),
            None,
        )
        if index is None:
            unexpected["stale or wrong values"] += 1
            continue
        keys_per_event.setdefault(index, set()).add(request.key)
    for keys in keys_per_event.values():
        if len(keys) > 1:
            unexpected["several keys (deliveries) for one event"] += len(keys) - 1
    duplicates = outcome.received - outcome.unique_keys
    if duplicates and not allow_duplicates:
        unexpected["repeated key"] += duplicates
    outcome.lost = len(events) - len(keys_per_event)
    outcome.unexpected = sum(unexpected.values())
    for reason, count in unexpected.items():
        outcome.notes.append(f"unexpected: {count} x {reason}")
    return duplicates


@dataclass
class Answer:
    """What an inbound endpoint answered (``status`` None: no answer at all)."""

    status: int | None
    content: bytes = b""
    replayed: bool = False
    error: str | None = None

    @property
    def ok(self):
        return self.status in (200, 201)

    @property
    def json(self):
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    @property
    def retryable(self):
        """503, or 409 for an Idempotency-Key still in flight (SPEC §11)."""
        if self.status == 503:
            return True
        message = (self.json or {}).get("message", "") if self.status == 409 else ""
        return IN_PROGRESS in str(message)

    def label(self):
        if self.status is None:
            return self.error or "no answer"
        return f"{self.status} replayed" if self.replayed else str(self.status)


def post_json(session, url, token, body, key=None, timeout=300):
    """POST ``body`` as JSON with the bearer ``token`` (and ``key`` as
    Idempotency-Key); the :class:`Answer`, never an exception."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    try:
        response = session.post(
            url, data=json.dumps(body), headers=headers, timeout=timeout
        )
    except requests.RequestException as error:
        return Answer(None, error=type(error).__name__)
    return Answer(
        response.status_code,
        response.content,
        response.headers.get("Idempotent-Replayed") == "true",
    )


def post_retrying(session, url, token, body, key=None, tries=10, retried=None):
    """:func:`post_json`, sent again (same body and key) after a retryable answer
    (see :attr:`Answer.retryable`), waiting ``Retry-After``-ish; counts the
    retried statuses in the Counter ``retried``."""
    for _ in range(tries - 1):
        answer = post_json(session, url, token, body, key)
        if not answer.retryable:
            return answer
        if retried is not None:
            retried[answer.status] += 1
        time.sleep(1 + random.random() / 2)
    return post_json(session, url, token, body, key)


def race(url, token, body, key, delays):
    """One client per delay POSTs ``body`` with the Idempotency-Key ``key``,
    all released at once, each after its delay; their :class:`Answer` s."""
    barrier = threading.Barrier(len(delays))
    answers = [None] * len(delays)

    def client(n):
        session = requests.Session()
        barrier.wait(60)
        time.sleep(delays[n])
        answers[n] = post_json(session, url, token, body, key)

    threads = [
        threading.Thread(target=client, args=(n,), daemon=True)
        for n in range(len(delays))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return [a or Answer(None, error="client stopped") for a in answers]


class E2E:
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.db = args.db or unique_db_name("bj_e2e")
        self.own_db = not args.db
        self.log_dir = RUN_DIR / "e2e" / self.db
        self.odoo = None
        self.servers = []
        self.server = None
        self.rpc = None
        self.receiver = Receiver()
        self.kicks = 0
        # Tags of this run (refs, names, endpoints): `--db` may reuse a database.
        self.run_id = secrets.token_hex(3)
        self.inbound_server = None

    # -- plumbing -----------------------------------------------------------------

    def say(self, text):
        print(text, flush=True)

    def setup(self):
        self.odoo = Odoo()
        self.say(
            f"e2e: database {self.db}; Odoo {self.odoo.tree}; PostgreSQL "
            f"127.0.0.1:{self.odoo.pg_port}; logs in {self.log_dir}"
        )
        if self.own_db:
            started = time.monotonic()
            self.odoo.create_db(self.db, log=self.log_dir / "install.log")
            self.say(
                f"e2e: installed bj_api_sync (no demo) in "
                f"{time.monotonic() - started:.0f} s"
            )
        self.receiver.up()
        self.server = self.start_server()
        self.rpc = JsonRpc(self.server.url, self.db)
        rpc = self.rpc
        self.post_id = rpc.ref("bj_api_sync.http_method_post")
        self.partner_model_id = rpc.call(
            "ir.model", "search", [("model", "=", "res.partner")]
        )[0]
        cron_model_id = rpc.call("ir.model", "search", [("model", "=", "ir.cron")])[0]
        self.wake_action = self.code_action(
            "e2e: wake delivery cron", WAKE_CODE, cron_model_id
        )
        self.drain_action = self.code_action(
            "e2e: drain outbox", DRAIN_CODE, cron_model_id
        )

    def start_server(self, cron_threads=2):
        server = OdooServer(
            self.odoo, self.db, cron_threads=cron_threads, log_dir=self.log_dir
        )
        self.servers.append(server)
        return server.start()

    def prefork(self):
        """The prefork server of the inbound scenarios (``IN_WORKERS`` HTTP
        workers, no cron), started when none runs."""
        if self.inbound_server is None or not self.inbound_server.alive:
            server = OdooServer(
                self.odoo,
                self.db,
                workers=IN_WORKERS,
                log_dir=self.log_dir,
                # A bulk of 1000 objects takes 15-60 s here: Odoo's default
                # limits (60 s CPU, 120 s real per request) would kill the worker.
                extra=["--limit-time-cpu=600", "--limit-time-real=600"],
            )
            self.servers.append(server)
            self.inbound_server = server.start()
        return self.inbound_server

    def cleanup(self):
        for server in self.servers:
            try:
                server.stop()
            except Exception as error:  # noqa: BLE001
                self.say(f"e2e: could not stop Odoo server {server.number}: {error}")
        self.receiver.down()
        if self.odoo and self.own_db and not self.args.keep_db:
            try:
                self.odoo.drop_db(self.db)
                self.say(f"e2e: dropped database {self.db}")
            except Exception as error:  # noqa: BLE001
                self.say(f"e2e: could not drop database {self.db}: {error}")
        elif self.odoo:
            self.say(f"e2e: database {self.db} kept")

    def code_action(self, name, code, model_id=None):
        return self.rpc.call(
            "ir.actions.server",
            "create",
            [
                {
                    "name": name,
                    "model_id": model_id or self.partner_model_id,
                    "state": "code",
                    "code": code,
                }
            ],
        )[0]

    def run_action(self, action_id, rpc=None, **context):
        return (rpc or self.rpc).call(
            "ir.actions.server", "run", [action_id], context=context
        )

    def kick(self, rpc=None):
        """Wake the delivery cron now (ir.cron._trigger, via a server action)."""
        self.kicks += 1
        self.run_action(self.wake_action, rpc=rpc)

    def create_config(self, tag, path, automations=("on_create",), **values):
        vals = {
            "name": f"e2e {tag}",
            "model_id": self.partner_model_id,
            "request_url": self.receiver.url(path),
            "http_method_ids": [(6, 0, [self.post_id])],
            "delivery_mode": "queued",
            "filter_domain": f"[('ref', '=like', '{tag}-%')]",
            "max_retries": 0,
            "line_ids": [
                (0, 0, {"sequence": seq, "field_path": path, "api_key": key})
                for seq, (path, key) in enumerate(LINES)
            ],
        }
        vals.update(values)
        config_id = self.rpc.call(CONFIG, "create", [vals])[0]
        wizard = self.rpc.call(
            "bj.api.sync.automate",
            "create",
            [
                {
                    "config_id": config_id,
                    **{
                        t: t in automations
                        for t in ("on_create", "on_create_or_write", "on_unlink")
                    },
                }
            ],
        )[0]
        self.rpc.call("bj.api.sync.automate", "action_create_automations", [wizard])
        return config_id

    def create_in_config(self, tag, endpoint, filter_domain=None):
        """An In configuration (SPEC §11) at ``/bj_api_sync/v1/<endpoint>-<run>``:
        partners upserted by ``ref`` (lines ``IN_LINES``), seen through
        ``filter_domain`` (default: refs starting with ``<tag>-``), bearer auth,
        run as admin; POST and GET. Returns ``(config id, path, token)``."""
        endpoint = f"{endpoint}-{self.run_id}"
        token = secrets.token_urlsafe(24)
        methods = [
            self.rpc.ref(f"bj_api_sync.http_method_{m}") for m in ("post", "get")
        ]
        config_id = self.rpc.call(
            CONFIG,
            "create",
            [
                {
                    "name": f"e2e {tag} (in)",
                    "request_type": "in",
                    "endpoint": endpoint,
                    "model_id": self.partner_model_id,
                    "filter_domain": filter_domain or f"[('ref', '=like', '{tag}-%')]",
                    "http_method_ids": [(6, 0, methods)],
                    "auth_type": "bearer",
                    "bearer_token": token,
                    "run_as_user_id": self.rpc.uid,
                    "line_ids": [
                        (
                            0,
                            0,
                            {
                                "sequence": seq,
                                "field_path": path,
                                "api_key": key,
                                "direction": direction,
                                "is_identifier": ident,
                            },
                        )
                        for seq, (path, key, direction, ident) in enumerate(IN_LINES)
                    ],
                }
            ],
        )[0]
        return config_id, f"{IN_PREFIX}/{endpoint}", token

    def partners_like(self, field_name, pattern):
        """``(id, value)`` of the partners (archived ones too) whose
        ``field_name`` is ``=like pattern``."""
        rows = self.rpc.call(
            "res.partner",
            "search_read",
            [(field_name, "=like", pattern)],
            [field_name],
            context={"active_test": False},
        )
        return [(row["id"], row[field_name]) for row in rows]

    def retire(self, config_id):
        """Deactivate a scenario's configuration so it cannot leak into others."""
        self.rpc.call(CONFIG, "write", [config_id], {"active": False})

    def partners(self, tag, count, start=0, version="v1"):
        return [
            {"name": f"{tag} {i}", "ref": f"{tag}-{i}", "function": version}
            for i in range(start, start + count)
        ]

    def deliveries(self, config_id, rpc=None, fields=()):
        return (rpc or self.rpc).call(
            DELIVERY,
            "search_read",
            [("config_id", "=", config_id)],
            [
                "idempotency_key",
                "res_id",
                "event",
                "payload",
                "state",
                "attempt_count",
                *fields,
            ],
            order="id",
        )

    def states(self, config_id, rpc=None):
        rows = (rpc or self.rpc).call(
            DELIVERY, "search_read", [("config_id", "=", config_id)], ["state"]
        )
        return Counter(row["state"] for row in rows)

    def wait(self, what, predicate, timeout, interval=0.5):
        """Poll ``predicate`` until true; raise Aborted after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Aborted(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def wait_done(self, config_id, count, timeout, rpc=None):
        """Wait until ``count`` deliveries of the config are done; return seconds."""
        started = time.monotonic()

        def finished():
            states = self.states(config_id, rpc=rpc)
            return states.get("done", 0) >= count and not (
                states.get("pending") or states.get("retrying")
            )

        self.wait(f"{count} deliveries done", finished, timeout)
        return time.monotonic() - started

    def retry_now(self, config_id, rpc=None):
        """What an admin's "retry now" does: open rows due now, cron woken."""
        rpc = rpc or self.rpc
        ids = rpc.call(
            DELIVERY,
            "search",
            [("config_id", "=", config_id), ("state", "in", list(OPEN_STATES))],
        )
        if ids:
            rpc.call(DELIVERY, "write", ids, {"next_attempt_at": past()})
        self.kick(rpc=rpc)
        return len(ids)

    def config(self, config_id, fields):
        return self.rpc.call(CONFIG, "read", [config_id], fields)[0]

    def messages(self, config_id, word):
        return self.rpc.call(
            "mail.message",
            "search_read",
            [
                ("model", "=", CONFIG),
                ("res_id", "=", config_id),
                ("subject", "ilike", word),
            ],
            ["subject", "partner_ids"],
        )

    def logs(self, config_id, fields=("duration_ms", "status_code", "outcome")):
        return self.rpc.call(
            "bj.api.log",
            "search_read",
            [("config_id", "=", config_id)],
            list(fields),
            order="id",
        )

    def foreign_requests(self, outcome, prefixes):
        """Requests on paths of no configuration of this scenario are unexpected."""
        stray = [
            r
            for r in self.receiver.requests()
            if not any(r.path.startswith(p) for p in prefixes)
        ]
        if stray:
            outcome.unexpected += len(stray)
            outcome.notes.append(
                f"unexpected: {len(stray)} request(s) on other paths "
                f"({sorted({r.path for r in stray})})"
            )

    # -- scenarios --------------------------------------------------------------------

    def scenario_1(self, out):
        """1,000 creations while the receiver refuses connections for 60 s."""
        rcv = self.receiver
        rcv.down()
        down_at = time.monotonic()
        # Defaults kept here: 3 quick retries per attempt, circuit_threshold 20.
        config_id = self.create_config("S1", "/s1", max_retries=3)
        ids = []
        for start in range(0, 1000, 50):
            ids += self.rpc.call(
                "res.partner", "create", self.partners("S1", 50, start)
            )
        created_in = time.monotonic() - down_at
        try:
            paused = self.wait(
                "the configuration to pause",
                lambda: (
                    self.config(config_id, ["sync_state"])["sync_state"] == "paused"
                ),
                max(1.0, 60 - (time.monotonic() - down_at)),
            )
        except Aborted:
            paused = False
        paused_after = time.monotonic() - down_at
        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
        rcv.up()
        up_at = time.monotonic()
        out.notes.append(
            f"1000 partners created in 20 RPC calls ({created_in:.1f} s) while the "
            f"receiver refused connections (config defaults: 3 quick retries per "
            f"attempt, pause after 20 failures); paused after {paused_after:.1f} s"
        )
        # The probe comes by itself (60 s after pausing, at the next cron run).
        shortened = False

        def resumed():
            nonlocal shortened
            state = self.config(config_id, ["sync_state"])["sync_state"]
            if state == "paused" and time.monotonic() - up_at > 150 and not shortened:
                shortened = True
                self.rpc.call(CONFIG, "write", [config_id], {"next_probe_at": past()})
                self.kick()
            return state == "active"

        self.wait("the probe to resume the configuration", resumed, 240)
        probe_after = time.monotonic() - up_at
        if shortened:
            out.notes.append(
                "shortened: next_probe_at moved to the past and cron woken, "
                "still paused 150 s after the receiver came back"
            )
        self.wait_done(config_id, 1000, 300)
        out.notes.append(
            f"receiver up again after 60 s; probe resumed the config "
            f"{probe_after:.1f} s later (naturally: {not shortened}); all 1000 "
            f"done {time.monotonic() - up_at:.1f} s after the receiver came back"
        )
        out.check(paused, "the configuration did not pause during the outage")
        out.check(self.messages(config_id, "paused"), "no 'paused' message")
        out.check(self.messages(config_id, "resumed"), "no 'resumed' message")
        deliveries = self.deliveries(config_id)
        out.check(len(deliveries) == 1000, f"{len(deliveries)} deliveries, not 1000")
        events = [Event(pid, "create", {"id": pid}) for pid in ids]
        tally(out, events, deliveries, rcv.requests(path="/s1"))
        self.foreign_requests(out, ["/s1"])
        self.retire(config_id)

    def scenario_2(self, out):
        """100 transactions create partners and roll back: nothing is sent."""
        config_id = self.create_config(
            "S2", "/s2", automations=("on_create", "on_create_or_write")
        )
        action = self.code_action("e2e: create then roll back", ROLLBACK_CODE)
        modes = ("flush", "raise", "constraint")
        errors = Counter()
        for n in range(100):
            mode = modes[n % 3]
            try:
                self.run_action(action, e2e_n=n, e2e_mode=mode)
            except RpcError as error:
                errors[(mode, error.name.rsplit(".", 1)[-1])] += 1
            else:
                out.problems.append(f"transaction {n} ({mode}) did not fail")
        out.notes.append(
            "100 RPC calls each created 3 partners then failed: "
            + ", ".join(f"{n} x {m}->{e}" for (m, e), n in sorted(errors.items()))
        )
        out.check(
            set(errors)
            == {
                ("flush", "UserError"),
                ("raise", "UserError"),
                ("constraint", "ValidationError"),
            },
            f"the transactions failed otherwise than planned: {dict(errors)}",
        )
        self.kick()
        time.sleep(5)
        out.notes.append("then the cron was woken and 5 s of quiet followed")
        leftovers = self.rpc.call(
            DELIVERY, "search_count", [("config_id", "=", config_id)]
        )
        partners = self.rpc.call(
            "res.partner", "search_count", [("ref", "=like", "S2-%")]
        )
        out.check(not leftovers, f"{leftovers} deliveries survived the rollbacks")
        out.check(not partners, f"{partners} partners survived the rollbacks")
        out.events = 100
        requests = self.receiver.requests()
        out.received = len(requests)
        out.unique_keys = len({r.key for r in requests})
        out.unexpected = len(requests)
        self.retire(config_id)

    def scenario_3(self, out):
        """SIGKILL of Odoo while deliveries are in flight, then restart."""
        rcv = self.receiver
        rcv.slow(0.5, path="/s3")
        config_id = self.create_config("S3", "/s3")
        ids = []
        for start in range(0, 200, 50):
            ids += self.rpc.call(
                "res.partner", "create", self.partners("S3", 50, start)
            )

        def in_flight():
            accepted = rcv.requests(path="/s3", accepted=True)
            pending = [r for r in rcv.requests(path="/s3") if r.status is None]
            return len(accepted) >= 30 and pending

        self.wait("deliveries in flight", in_flight, 120, interval=0.05)
        self.server.kill()
        killed_at = time.monotonic()
        killed_wall = time.time()
        sent = [r for r in rcv.requests(path="/s3") if r.at <= killed_wall]
        unanswered = [
            r for r in sent if r.answered_at is None or r.answered_at > killed_wall
        ]
        before = sum(1 for r in sent if r.accepted and r.answered_at <= killed_wall)
        self.server = self.start_server()
        self.rpc = JsonRpc(self.server.url, self.db)
        # Right after the restart, before the cron's first poll (the killed
        # worker's rows wait for their lease to end): what was committed.
        stored = self.deliveries(config_id)
        states = Counter(d["state"] for d in stored)
        out.notes.append(
            f"after the restart the database had {dict(sorted(states.items()))}"
        )
        # In flight at the kill: sent, and no outcome stored. The receiver had
        # not answered some; it had answered the others a few milliseconds
        # before, the worker had not committed their result yet.
        done = {d["idempotency_key"] for d in stored if d["state"] == "done"}
        flying = [r for r in sent if r.key not in done]
        out.in_flight = len(flying)
        out.notes.append(
            f"SIGKILL with {len(flying)} request(s) in flight ({len(unanswered)} "
            f"not answered yet, {len(flying) - len(unanswered)} answered but not "
            f"stored yet) and {before} accepted; Odoo restarted"
        )
        recovered = self.wait_done(config_id, 200, 300)
        out.notes.append(
            f"restarted server delivered the rest without help in "
            f"{recovered:.1f} s ({time.monotonic() - killed_at:.1f} s after the kill)"
        )
        deliveries = self.deliveries(config_id)
        events = [Event(pid, "create", {"id": pid}) for pid in ids]
        out.duplicates = tally(
            out, events, deliveries, rcv.requests(path="/s3"), allow_duplicates=True
        )
        # Claims are committed (leased) before sending and each result right
        # after it came: only what was in flight goes again.
        out.check(
            out.duplicates <= out.in_flight,
            f"{out.duplicates} duplicate(s) for {out.in_flight} request(s) in "
            "flight at the kill",
        )
        flying_keys = {r.key for r in flying}
        resent = {
            r.key
            for r in rcv.requests(path="/s3", accepted=True)
            if r.key in flying_keys
        }
        out.check(
            resent == flying_keys,
            f"{len(flying_keys - resent)} in-flight request(s) never accepted later",
        )
        self.foreign_requests(out, ["/s3"])
        self.retire(config_id)

    def scenario_4(self, out):
        """Two Odoo servers (cron threads in both) on one database: no delivery sent
        twice, one record's deliveries still in order."""
        rcv = self.receiver
        rcv.slow(0.02, path="/s4")
        second = self.start_server()
        rpcs = [self.rpc, JsonRpc(second.url, self.db)]
        config_id = self.create_config("S4", "/s4", automations=("on_create_or_write",))
        # The delivery cron is one ir.cron job, serialized by its row lock: to make
        # rows race, 2 more workers per server run _cron_send_deliveries via RPC.
        stop = threading.Event()
        lock = threading.Lock()
        drained = Counter()

        def drain(rpc_url, name):
            rpc = JsonRpc(rpc_url, self.db)
            while not stop.is_set():
                try:
                    self.run_action(self.drain_action, rpc=rpc)
                    result = name
                except Exception as error:  # noqa: BLE001
                    result = f"{name} {type(error).__name__}"
                with lock:
                    drained[result] += 1
                time.sleep(0.2)

        threads = [
            threading.Thread(
                target=drain, args=(s.url, f"server{s.number}"), daemon=True
            )
            for s in (self.server, second)
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            # 250 creations, then an update of each: 500 deliveries, 2 per record.
            ids = []
            for n, start in enumerate(range(0, 250, 50)):
                batch = self.partners("S4", 50, start)
                ids += rpcs[n % 2].call("res.partner", "create", batch)
            for n in range(5):
                chunk = ids[n * 50 : (n + 1) * 50]
                rpcs[(n + 1) % 2].call(
                    "res.partner", "write", chunk, {"function": "v2"}
                )
            created = time.monotonic() - started
            self.wait_done(config_id, 500, 300)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        took = time.monotonic() - started
        attempts = len(self.logs(config_id, ("duration_ms",)))
        out.notes.append(
            f"250 partners created then updated, alternately through servers "
            f"{self.server.number} and {second.number} ({created:.1f} s); 500 "
            f"deliveries done {took:.1f} s after the start with {attempts} logged "
            f"attempts; RPC drain calls: {dict(sorted(drained.items()))}"
        )
        deliveries = self.deliveries(config_id)
        events = [Event(pid, "create", {"id": pid, "version": "v1"}) for pid in ids]
        events += [Event(pid, "write", {"id": pid, "version": "v2"}) for pid in ids]
        tally(out, events, deliveries, rcv.requests(path="/s4"))
        versions = {}
        for request in rcv.requests(path="/s4", accepted=True):
            versions.setdefault(request.body["id"], []).append(request.body["version"])
        disorder = [pid for pid in ids if versions.get(pid) != ["v1", "v2"]]
        out.check(
            not disorder,
            f"{len(disorder)} record(s) not received as v1 then v2, e.g. "
            f"{[(pid, versions.get(pid)) for pid in disorder[:3]]}",
        )
        self.foreign_requests(out, ["/s4"])
        self.retire(config_id)
        second.stop()

    def scenario_5(self, out):
        """400: dead after one attempt; fixed receiver + action_retry delivers."""
        rcv = self.receiver
        rcv.fail(400, path="/s5")
        config_id = self.create_config("S5", "/s5")
        [pid] = self.rpc.call("res.partner", "create", self.partners("S5", 1))
        self.wait(
            "the delivery to go dead",
            lambda: self.states(config_id).get("dead"),
            60,
        )
        [row] = self.deliveries(config_id)
        out.check(row["attempt_count"] == 1, f"{row['attempt_count']} attempts")
        attempts = rcv.requests(path="/s5")
        out.check(
            [r.status for r in attempts] == [400], f"receiver saw {len(attempts)}"
        )
        time.sleep(2)
        out.check(len(rcv.requests(path="/s5")) == 1, "a dead delivery was re-sent")
        rcv.ok(path="/s5")
        self.rpc.call(DELIVERY, "action_retry", [row["id"]])
        self.wait_done(config_id, 1, 60)
        out.notes.append(
            "dead after 1 attempt (HTTP 400); action_retry after the fix delivered it"
        )
        tally(
            out,
            [Event(pid, "create", {"id": pid})],
            self.deliveries(config_id),
            rcv.requests(path="/s5"),
        )
        keys = {r.key for r in rcv.requests(path="/s5")}
        out.check(len(keys) == 1, "the retry used another Idempotency-Key")
        self.foreign_requests(out, ["/s5"])
        self.retire(config_id)

    def scenario_6(self, out):
        """A hanging receiver: attempts end at the read timeout; others flow."""
        rcv = self.receiver
        rcv.hang(path="/s6/hang")
        timeout = 2.0
        hang_id = self.create_config(
            "S6H", "/s6/hang", read_timeout=timeout, connect_timeout=timeout
        )
        ok_id = self.create_config("S6K", "/s6/ok")
        hang_ids = self.rpc.call("res.partner", "create", self.partners("S6H", 4))
        ok_ids, created_at = [], {}
        for start in range(0, 30, 3):
            batch = self.rpc.call(
                "res.partner", "create", self.partners("S6K", 3, start)
            )
            ok_ids += batch
            created_at.update(dict.fromkeys(batch, time.time()))
            time.sleep(0.3)
        self.wait_done(ok_id, 30, 120)
        hang_states = self.states(hang_id)
        hang_attempts = len(self.logs(hang_id))
        latency = [
            r.at - created_at[r.body["id"]]
            for r in rcv.requests(path="/s6/ok", accepted=True)
        ]
        out.notes.append(
            f"healthy config: 30 deliveries done, latency max {max(latency):.1f} s, "
            f"while the hanging config had {dict(hang_states)} after "
            f"{hang_attempts} attempt(s)"
        )
        out.check(
            not hang_states.get("done") and hang_attempts,
            f"hanging config: {dict(hang_states)} after {hang_attempts} attempt(s)",
        )
        # Every hanging delivery gets its attempt, each cut at the read timeout.
        hang_logs = self.wait(
            "an attempt of each hanging delivery",
            lambda: (logs := self.logs(hang_id)) and len(logs) >= 4 and logs,
            60,
        )
        durations = [log["duration_ms"] for log in hang_logs]
        out.notes.append(
            f"hanging config: attempts of {durations} ms (read timeout {timeout:g} s)"
        )
        out.check(
            durations and all(1800 <= d <= 3500 for d in durations),
            f"attempt durations {durations} ms are not ~{timeout * 1000:.0f} ms",
        )
        # Recovery: the receiver answers again; retry now instead of waiting ~30 s.
        rcv.ok(path="/s6/hang")
        rcv.release_hangs()
        self.retry_now(hang_id)
        self.wait_done(hang_id, 4, 60)
        out.notes.append(
            "shortened: then receiver fixed, next_attempt_at moved to the past and "
            "cron woken; the 4 hanging deliveries went through"
        )
        events = [Event(pid, "create", {"id": pid}) for pid in hang_ids + ok_ids]
        deliveries = self.deliveries(hang_id) + self.deliveries(ok_id)
        tally(out, events, deliveries, rcv.requests(path="/s6"))
        self.foreign_requests(out, ["/s6/"])
        self.retire(hang_id)
        self.retire(ok_id)

    def scenario_7(self, out):
        """Create + 3 writes in one transaction: one request with the final values;
        write + delete in one transaction: one delete carrying the last values;
        3 updates in 3 transactions while the configuration is paused: the last
        one supersedes the others (compaction), one request."""
        rcv = self.receiver
        config_id = self.create_config(
            "S7", "/s7", automations=("on_create_or_write", "on_unlink")
        )
        self.run_action(self.code_action("e2e: create and write 3x", COALESCE_CODE))
        [a_id] = self.rpc.call("res.partner", "search", [("ref", "=", "S7-a")])
        [b_id] = self.rpc.call(
            "res.partner",
            "create",
            [{"name": "S7 b", "ref": "S7-b", "function": "v1"}],
        )
        self.wait_done(config_id, 2, 60)
        self.run_action(self.code_action("e2e: write then delete", LAST_VALUES_CODE))
        self.wait_done(config_id, 3, 60)
        [c_id] = self.rpc.call(
            "res.partner",
            "create",
            [{"name": "S7 c", "ref": "S7-c", "function": "v1"}],
        )
        self.wait_done(config_id, 4, 60)
        self.rpc.call(CONFIG, "action_pause", [config_id])
        for version in ("v2", "v3", "v4"):
            self.rpc.call("res.partner", "write", [c_id], {"function": version})
        c_states = [
            d["state"]
            for d in self.deliveries(config_id)
            if d["res_id"] == c_id and d["event"] == "write"
        ]
        out.check(
            c_states == ["superseded", "superseded", "pending"],
            f"updates of c queued while paused: {c_states}",
        )
        self.rpc.call(CONFIG, "action_resume", [config_id])
        self.wait_done(config_id, 5, 60)
        events = [
            Event(
                a_id,
                "create",
                {"id": a_id, "name": "S7 a final", "version": "v4", "ref": "S7-a"},
            ),
            Event(b_id, "create", {"id": b_id, "name": "S7 b", "version": "v1"}),
            Event(b_id, "unlink", {"id": b_id, "name": "S7 b last", "version": "v9"}),
            Event(c_id, "create", {"id": c_id, "version": "v1"}),
            Event(c_id, "write", {"id": c_id, "version": "v4"}),
        ]
        deliveries = self.deliveries(config_id)
        out.notes.append(
            "deliveries: "
            + ", ".join(f"{d['event']} #{d['res_id']}" for d in deliveries)
            + " (a: created and written 3x in one transaction; b: created, then "
            "written and deleted in one transaction; c: created, then updated in 3 "
            "transactions while paused: 2 superseded)"
        )
        tally(out, events, deliveries, rcv.requests(path="/s7"))
        a_requests = [
            r for r in rcv.requests(path="/s7") if (r.body or {}).get("id") == a_id
        ]
        out.check(len(a_requests) == 1, f"{len(a_requests)} requests for partner a")
        c_versions = [
            r.body["version"]
            for r in rcv.requests(path="/s7", accepted=True)
            if (r.body or {}).get("id") == c_id
        ]
        out.check(c_versions == ["v1", "v4"], f"partner c received {c_versions}")
        self.foreign_requests(out, ["/s7"])
        self.retire(config_id)

    def scenario_8(self, out):
        """20 failures pause the config (and say so); Resume sends the backlog,
        each record's deliveries in order (SPEC §6: per record, not across
        records). Compaction is off here: every update must arrive."""
        rcv = self.receiver
        rcv.fail(503, path="/s8")
        config_id = self.create_config(
            "S8",
            "/s8",
            automations=("on_create_or_write",),
            max_concurrency=1,
            coalesce_backlog=False,
        )
        ids = self.rpc.call("res.partner", "create", self.partners("S8", 25))
        expected = [(pid, "v1") for pid in ids]
        self.wait(
            "the configuration to pause",
            lambda: self.config(config_id, ["sync_state"])["sync_state"] == "paused",
            120,
        )
        failed = rcv.requests(path="/s8")
        out.check(len(failed) == 20, f"{len(failed)} failed attempts before pausing")
        notices = self.messages(config_id, "paused")
        out.check(notices, "no message whose subject mentions 'paused'")
        # While paused, the same records change: their deliveries must queue behind.
        for pid in ids[:5]:
            for version in ("v2", "v3"):
                self.rpc.call("res.partner", "write", [pid], {"function": version})
                expected.append((pid, version))
        self.kick()
        time.sleep(3)
        out.check(
            len(rcv.requests(path="/s8")) == 20, "requests were sent while paused"
        )
        rcv.ok(path="/s8")
        self.rpc.call(CONFIG, "action_resume", [config_id])
        self.wait_done(config_id, len(expected), 120)
        out.check(self.messages(config_id, "resumed"), "no 'resumed' message")
        accepted = rcv.requests(path="/s8", accepted=True)
        seen = [(r.body["id"], r.body["version"]) for r in accepted]
        per_record = all(
            [v for i, v in seen if i == pid] == ["v1", "v2", "v3"] for pid in ids[:5]
        )
        out.check(per_record, "one record's deliveries arrived out of order")
        out.check(
            sorted(seen) == sorted(expected),
            f"{len(seen)} deliveries arrived, {len(expected)} expected",
        )
        out.notes.append(
            f"paused after {len(failed)} x 503, notice "
            f"{notices[0]['subject'] if notices else None!r}; after action_resume "
            f"{len(accepted)} of {len(expected)} deliveries (25 creates, 10 updates "
            f"queued while paused) arrived; per-record order "
            f"{'kept' if per_record else 'BROKEN'}; across records "
            f"{'creation order' if seen == expected else 'not creation order'} "
            "(not required: a record's update waits for its own creation only)"
        )
        events = [
            Event(
                pid,
                "create" if version == "v1" else "write",
                {"id": pid, "version": version},
            )
            for pid, version in expected
        ]
        tally(out, events, self.deliveries(config_id), rcv.requests(path="/s8"))
        self.foreign_requests(out, ["/s8"])
        self.retire(config_id)

    def scenario_9(self, out):
        """A configuration whose every delivery raises beside a healthy one:
        the healthy one's 100 deliveries all arrive; the poisoned rows wait,
        marked, and nothing is lost."""
        rcv = self.receiver
        poison_id = self.create_config("S9P", "/s9/poison", sign_requests=True)
        # A signing secret that is not base64: signing raises for every row.
        self.rpc.call(CONFIG, "write", [poison_id], {"signing_secret": "whsec_%%%%"})
        healthy_id = self.create_config("S9H", "/s9/healthy")
        poison_ids = self.rpc.call("res.partner", "create", self.partners("S9P", 100))
        healthy_ids = []
        for start in range(0, 100, 10):  # interleaved with the poisoned rows
            healthy_ids += self.rpc.call(
                "res.partner", "create", self.partners("S9H", 10, start=start)
            )
        self.kick()
        self.wait_done(healthy_id, 100, 120)
        events = [Event(pid, "create", {"id": pid}) for pid in healthy_ids]
        tally(
            out,
            events,
            self.deliveries(healthy_id),
            rcv.requests(path="/s9/healthy"),
        )
        poisoned = self.deliveries(poison_id, fields=("last_error",))
        marked = [
            d
            for d in poisoned
            if d["state"] == "retrying" and "Internal error" in (d["last_error"] or "")
        ]
        out.check(
            len(poisoned) == len(poison_ids),
            f"{len(poisoned)} poisoned deliveries for {len(poison_ids)} creations",
        )
        out.check(
            len(marked) == len(poisoned),
            f"only {len(marked)} of {len(poisoned)} poisoned rows marked retrying",
        )
        out.check(not rcv.requests(path="/s9/poison"), "a poisoned delivery was sent")
        out.notes.append(
            f"poisoned config: {len(marked)}/{len(poisoned)} rows retrying with "
            "'Internal error while sending', none sent, none lost"
        )
        self.foreign_requests(out, ["/s9/"])
        self.retire(poison_id)
        self.retire(healthy_id)

    # Scenarios 10-12: inbound endpoints (SPEC §11) on a prefork server. The issue
    # that asked for them numbered them 9-11; 9 was taken by poison_row.

    def scenario_10(self, out):
        """8 clients POST the same 200 identifiers at once, each all 200 in its
        own shuffled order, as single objects or arrays of 2-5, to a prefork
        server: exactly one partner per identifier, every request answered
        200/201 (503 and 409 "in progress" are sent again by the client).

        events: identifiers; received: requests answered 200/201; unique_keys:
        identifiers with a partner; lost: identifiers without one; unexpected:
        extra partners, final answers other than 200/201, answers whose objects
        are not the posted ones or name another record than the one kept."""
        server = self.prefork()
        mark = self.log_mark(server)
        tag = f"S10-{self.run_id}"
        config_id, path, token = self.create_in_config(tag, "s10")
        url = server.url + path
        refs = [f"{tag}-{i:03d}" for i in range(200)]
        seed = random.randrange(1_000_000)
        clients = 8
        barrier = threading.Barrier(clients)
        lock = threading.Lock()
        finals, retried, shapes = Counter(), Counter(), Counter()
        answered_ids = {}  # ref -> {ids the answers named}
        bad = Counter()

        def client(n):
            rng = random.Random(seed * 100 + n)
            order = refs[:]
            rng.shuffle(order)
            chunks, start = [], 0
            while start < len(order):
                size = rng.choice((1, 1, 2, 3, 5))
                chunks.append(order[start : start + size])
                start += size
            session = requests.Session()
            barrier.wait(60)
            for chunk in chunks:
                items = [{"ref": ref, "name": f"S10 {ref} c{n}"} for ref in chunk]
                body = items[0] if len(items) == 1 else items
                mine = Counter()
                answer = post_retrying(session, url, token, body, retried=mine)
                data = (answer.json or {}).get("data") if answer.ok else None
                objects = data if isinstance(data, list) else [data]
                with lock:
                    retried.update(mine)
                    finals[answer.label()] += 1
                    shapes["object" if len(items) == 1 else "array"] += 1
                    if not answer.ok:
                        bad[f"answer {answer.label()}"] += 1
                        continue
                    if [
                        o.get("ref") if isinstance(o, dict) else None for o in objects
                    ] != chunk:
                        bad["answer's objects are not the posted ones"] += 1
                        continue
                    for obj in objects:
                        answered_ids.setdefault(obj["ref"], set()).add(obj.get("id"))

        def run_client(n):
            try:
                client(n)
            except Exception as error:  # noqa: BLE001 -- counted, reported
                with lock:
                    bad[f"client {n} stopped: {type(error).__name__}: {error}"] += 1

        threads = [
            threading.Thread(target=run_client, args=(n,), daemon=True)
            for n in range(clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        took = time.monotonic() - started
        rows = self.partners_like("ref", f"{tag}-%")
        ids_by_ref = {}
        for pid, ref in rows:
            ids_by_ref.setdefault(ref, []).append(pid)
        out.events = len(refs)
        out.received = finals["200"] + finals["201"]
        out.unique_keys = len(set(ids_by_ref) & set(refs))
        out.lost = len(set(refs) - set(ids_by_ref))
        extra = len(rows) - out.unique_keys
        if extra:
            bad["extra partners (same ref twice, or a ref never posted)"] += extra
        for ref, ids in answered_ids.items():
            if ids != set(ids_by_ref.get(ref, ())):
                bad["answers named another record than the one kept"] += 1
        out.check(not any(t.is_alive() for t in threads), "a client was still running")
        out.unexpected = sum(bad.values())
        for reason, count in bad.items():
            out.notes.append(f"unexpected: {count} x {reason}")
        out.notes.append(
            f"{clients} clients x {len(refs)} identifiers (seed {seed}) in "
            f"{sum(shapes.values())} requests ({shapes['object']} single objects, "
            f"{shapes['array']} arrays of 2-5) to server {server.number} "
            f"({IN_WORKERS} workers) in {took:.1f} s; final answers "
            f"{dict(sorted(finals.items()))}; sent again after "
            f"{dict(sorted(retried.items())) or 'none'}; {len(rows)} partners, "
            f"{out.unique_keys} distinct refs"
        )
        out.notes.append(
            f"Odoo ran requests again after a conflict: {self.reruns(server, mark)}"
        )
        self.foreign_requests(out, [])
        self.retire(config_id)

    def scenario_11(self, out):
        """4 clients POST the same request with the same Idempotency-Key at
        once (10 rounds, a new key each): one effect; one original answer, the
        others identical replays (Idempotent-Replayed: true) or 409 in flight;
        a replay after completion is identical. The objects carry no
        identifier (`ref`), so every run of the request would create a partner:
        only the key keeps it to one.

        events: rounds; received: original (not replayed) answers; unique_keys:
        keys with a stored answer; lost: rounds without a partner; unexpected:
        extra partners, extra originals, replays that differ, other answers."""
        server = self.prefork()
        mark = self.log_mark(server)
        tag = f"S11-{self.run_id}"
        config_id, path, token = self.create_in_config(
            tag, "s11", filter_domain=f"[('name', '=like', '{tag}-%')]"
        )
        url = server.url + path
        rounds, clients = 10, 4
        kinds, bad = Counter(), Counter()
        for round_no in range(rounds):
            key = f"e2e-{tag}-{round_no}"
            body = {"name": f"{tag}-{round_no:02d}"}
            # Even rounds: all at once (duplicates find the key in flight: 409).
            # Odd rounds: the others 0-250 ms later, around the original's commit
            # (replays, and snapshots that predate the commit).
            delays = [0.0] + [
                0.0 if round_no % 2 == 0 else random.uniform(0, 0.25)
                for _ in range(clients - 1)
            ]
            answers = race(url, token, body, key, delays)
            originals = [a for a in answers if a.ok and not a.replayed]
            if len(originals) != 1:
                bad[f"{len(originals)} original answers in one round"] += 1
            original = originals[0] if originals else None
            for answer in answers:
                if answer is original:
                    kinds["original"] += 1
                elif answer.replayed:
                    kinds["replay"] += 1
                    if original and (answer.status, answer.content) != (
                        original.status,
                        original.content,
                    ):
                        bad["replay differs from the original answer"] += 1
                elif answer.status == 409 and answer.retryable:
                    kinds["409 in flight"] += 1
                elif answer.ok:
                    kinds["another original"] += 1  # counted above
                else:
                    kinds[answer.label()] += 1
                    bad[f"answer {answer.label()}"] += 1
            # After completion: the same request again is replayed, identical.
            late = post_json(requests.Session(), url, token, body, key)
            kinds["late replay" if late.replayed else f"late {late.label()}"] += 1
            if original and not (
                late.replayed
                and (late.status, late.content) == (original.status, original.content)
            ):
                bad["late replay not identical to the original answer"] += 1
            if original and original.status != 201:
                bad[f"original answered {original.status}, not 201"] += 1
        rows = self.partners_like("name", f"{tag}-%")
        names = Counter(name for _pid, name in rows)
        expected = {f"{tag}-{r:02d}" for r in range(rounds)}
        stored = self.rpc.call(
            "bj.api.sync.inbound.request",
            "search_read",
            [("config_id", "=", config_id)],
            ["idempotency_key"],
        )
        out.events = rounds
        out.received = kinds["original"]
        out.unique_keys = len({row["idempotency_key"] for row in stored})
        out.lost = len(expected - set(names))
        extra = len(rows) - len(set(names) & expected)
        if extra:
            bad["extra partners (the request took effect twice)"] += extra
        out.check(
            len(stored) == rounds, f"{len(stored)} stored answers for {rounds} keys"
        )
        out.unexpected = sum(bad.values())
        for reason, count in bad.items():
            out.notes.append(f"unexpected: {count} x {reason}")
        out.notes.append(
            f"{rounds} rounds of {clients} simultaneous POSTs with one key each, "
            f"then one more after completion, to server {server.number} "
            f"({IN_WORKERS} workers): {dict(sorted(kinds.items()))}; "
            f"{len(rows)} partners for {rounds} keys"
        )
        out.notes.append(
            f"Odoo ran requests again after a conflict: {self.reruns(server, mark)}"
        )
        self.foreign_requests(out, [])
        self.retire(config_id)

    def log_mark(self, server):
        return server.log.stat().st_size if server.log.exists() else 0

    def reruns(self, server, mark):
        """Requests Odoo ran again after a conflict (``odoo.service.model``
        retrying: "<error>, N tries left" / "maximum number of tries reached"),
        by error, from ``server``'s log after ``mark``; as text for a note.
        Each conflict's query also logs an ERROR "bad query" line (Odoo's)."""
        with open(server.log, "rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        found = Counter()
        for line in text.splitlines():
            if "odoo.service.model:" not in line:
                continue
            message = line.split("odoo.service.model:", 1)[1].strip()
            if "tries left" in message:
                found[message.split("(")[0].split(",")[0]] += 1
            elif "maximum number of tries" in message:
                found["gave up (503)"] += 1
        return ", ".join(f"{n} x {k}" for k, n in sorted(found.items())) or "none"

    def partner_sequence(self):
        """Last value of res.partner's id sequence: it moves as a transaction
        inserts partners, before (and whether or not) it commits."""
        [(value,)] = self.odoo.query(
            "SELECT last_value FROM res_partner_id_seq", db=self.db
        )
        return value

    def scenario_12(self, out):
        """A bulk POST of 1000 objects; the prefork server (master and workers)
        is SIGKILLed while the request inserts them; after a restart the 1000
        partners are all there or none is; the client's retry then makes all
        1000.

        events: objects in the bulk; received: partners of the bulk found after
        the restart (0 or 1000); unique_keys: refs found after the client's
        retry; lost: refs missing after the retry; unexpected: partners of a
        partial bulk after the restart, plus extra partners after the retry."""
        server = self.prefork()
        tag = f"S12-{self.run_id}"
        config_id, path, token = self.create_in_config(tag, "s12")
        refs = [f"{tag}-{i:04d}" for i in range(1000)]
        items = [{"ref": ref, "name": f"S12 {ref}"} for ref in refs]
        before = self.partner_sequence()
        answers = []
        thread = threading.Thread(
            target=lambda: answers.append(
                post_json(requests.Session(), server.url + path, token, items)
            ),
            daemon=True,
        )
        sent_at = time.monotonic()
        thread.start()
        # Kill once the transaction has inserted 300 of the 1000 (uncommitted).
        self.wait(
            "the bulk to insert 300 partners",
            lambda: self.partner_sequence() - before >= 300 or answers,
            120,
            interval=0.02,
        )
        inserted = self.partner_sequence() - before
        killed = server.number
        server.kill()
        killed_after = time.monotonic() - sent_at
        thread.join(60)
        [answer] = answers or [Answer(None, error="client still waiting")]
        out.check(
            answer.status is None,
            f"the bulk was answered ({answer.label()}) before the kill: the kill "
            "came too late to test anything",
        )
        server = self.prefork()
        found = self.partners_like("ref", f"{tag}-%")
        listed = requests.get(
            f"{server.url}{path}?limit=1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).json()
        out.events = len(items)
        out.received = len(found)
        all_or_nothing = len(found) in (0, len(items))
        if not all_or_nothing:
            out.unexpected += len(found)
            out.problems.append(
                f"partial bulk: {len(found)} of {len(items)} partners after the crash"
            )
        out.check(
            listed.get("total") == len(found),
            f"the restarted endpoint lists {listed.get('total')} partners, the "
            f"database has {len(found)}",
        )
        out.notes.append(
            f"bulk POST of {len(items)} objects; server {killed} ({IN_WORKERS} "
            f"workers) SIGKILLed {killed_after:.1f} s after sending, when its "
            f"transaction had inserted {inserted} partners (id sequence); client got "
            f"{answer.label()}; after the restart {len(found)} partners "
            f"({'none' if not found else 'all' if all_or_nothing else 'PARTIAL'}), "
            f"endpoint total {listed.get('total')}"
        )
        # The client sends the bulk again: now it goes through, once.
        again = post_retrying(requests.Session(), server.url + path, token, items)
        rows = self.partners_like("ref", f"{tag}-%")
        distinct = {ref for _pid, ref in rows} & set(refs)
        out.unique_keys = len(distinct)
        out.lost = len(refs) - len(distinct)
        out.unexpected += len(rows) - len(distinct)
        out.check(again.ok, f"the client's retry got {again.label()}")
        out.notes.append(
            f"the client's retry on the restarted server {server.number} got "
            f"{again.label()}: {len(rows)} partners, {len(distinct)} distinct refs"
        )
        self.foreign_requests(out, [])
        self.retire(config_id)

    SCENARIOS = (
        (1, "outage_1000_creates", scenario_1),
        (2, "rollback_100_transactions", scenario_2),
        (3, "sigkill_in_flight", scenario_3),
        (4, "two_servers_one_db", scenario_4),
        (5, "permanent_400_then_retry", scenario_5),
        (6, "hanging_receiver", scenario_6),
        (7, "coalesce_and_delete", scenario_7),
        (8, "circuit_breaker_resume_order", scenario_8),
        (9, "poison_row", scenario_9),
        (10, "inbound_concurrent_upsert", scenario_10),
        (11, "inbound_idempotency", scenario_11),
        (12, "inbound_kill_during_bulk", scenario_12),
    )

    def run(self):
        outcomes = []
        for number, name, method in self.SCENARIOS:
            if self.args.only and number not in self.args.only:
                continue
            out = Outcome(number, name)
            self.receiver.reset()
            self.receiver.up()
            self.kicks = 0
            started = time.monotonic()
            log_marks = self.log_marks()
            try:
                if not self.server.alive:
                    self.server = self.start_server()
                    self.rpc = JsonRpc(self.server.url, self.db)
                method(self, out)
            except Exception as error:  # noqa: BLE001 -- reported, next scenario
                out.problems.append(f"{type(error).__name__}: {error}")
            for note in out.notes:
                self.say(f"  {note}")
            errors = self.new_log_errors(log_marks)
            if errors:
                self.say(
                    f"  server logs: {len(errors)} ERROR line(s), first: {errors[0]}"
                )
            if self.kicks:
                self.say(
                    f"  cron woken by RPC (ir.cron._trigger) {self.kicks} time(s) "
                    "in this scenario"
                )
            for problem in out.problems:
                self.say(f"  problem: {problem}")
            self.say(f"  ({time.monotonic() - started:.1f} s)")
            self.say(out.line())
            outcomes.append(out)
        return outcomes

    def log_marks(self):
        return {
            server.log: server.log.stat().st_size
            for server in self.servers
            if server.log.exists()
        }

    def new_log_errors(self, marks):
        """ERROR/CRITICAL lines the servers logged since ``marks`` (cut short)."""
        found = []
        for server in self.servers:
            if not server.log.exists():
                continue
            with open(server.log, "rb") as log:
                log.seek(marks.get(server.log, 0))
                text = log.read().decode(errors="replace")
            for line in text.splitlines():
                parts = line.split(" ", 5)
                if len(parts) > 5 and parts[3] in ("ERROR", "CRITICAL"):
                    found.append(f"{server.log.name}: {parts[5][:160]}")
        return found

    def server_log_summary(self):
        errors = Counter()
        for server in self.servers:
            if not server.log.exists():
                continue
            for line in server.log.read_text(errors="replace").splitlines():
                parts = line.split(" ", 5)
                if len(parts) > 4 and parts[3] in ("ERROR", "CRITICAL"):
                    errors[server.log.name] += 1
        if errors:
            self.say(f"e2e: ERROR lines in server logs: {dict(errors)}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        type=lambda s: {int(n) for n in s.split(",") if n},
        default=None,
        help="comma-separated scenario numbers to run (default: all)",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop the database at the end"
    )
    parser.add_argument(
        "--db",
        help="use this existing database, bj_api_sync installed (kept at the end)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # also when started with SIGINT ignored
    check = E2E(args)
    outcomes = []
    failed_setup = None
    try:
        check.setup()
        outcomes = check.run()
    except KeyboardInterrupt:
        failed_setup = "interrupted"
    except (OdooError, Aborted, OSError) as error:
        failed_setup = f"{type(error).__name__}: {error}"
    finally:
        # Cleaning up must not be cut short by a second Ctrl-C or SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        check.server_log_summary()
        check.cleanup()
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    if failed_setup:
        check.say(f"e2e: stopped: {failed_setup}")
        failed += 1
    check.say(f"e2e: total runtime {time.monotonic() - check.started:.0f} s")
    check.say(f"e2e: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
