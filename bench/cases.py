"""The benchmarks B0–B4 and B6, each returning a :class:`Result`.

They run in the bench process through the ORM (B6 through a running odoo-bin). Each
ratio compares two figures measured in the same run, on the same machine: absolute
times drift on shared machines, ratios much less.
"""

import statistics
import time
import uuid
from dataclasses import dataclass

import requests

from odoo import Command

from odoo.addons.bj_api_sync.mapping import Mapping

import dataset


@dataclass
class Result:
    key: str
    text: str
    passed: bool

    @property
    def line(self):
        return f"{self.key} {self.text} | {'PASS' if self.passed else 'FAIL'}"


def rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


def pages_of(ids, size):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def count_states(env, config):
    env.invalidate_all()
    groups = env["bj.api.sync.delivery"]._read_group(
        [("config_id", "=", config.id)], ["state"], ["__count"]
    )
    return dict(groups)


# ----------------------------------------------------------------------------
# B0: cost of an on-create automation on a queued configuration
# ----------------------------------------------------------------------------


def b0_automation_overhead(env, receiver, records=1000, reps=3):
    """Create ``records`` partners in one transaction, with and without the rule.

    Time per record of ``create()`` + ``commit()`` (the pre-commit hook builds the
    deliveries). Between the two, ask the receiver what it saw: nothing may be
    sent before the commit. Then drain the last run's deliveries with the cron
    and check that they all arrived.
    """
    cr = env.cr
    path = "/b0"
    config = dataset.make_config(
        env,
        "Bench B0 on-create",
        receiver.url(path),
        filter_domain="[('ref', '=like', 'B0-%')]",
        delivery_mode="queued",
    )
    automations = dataset.automate_on_create(env, config)
    automations.active = False
    cr.commit()
    tags = env["res.partner.category"].search([], limit=2).ids
    countries = env["res.country"].search([("code", "in", ("BE", "FR"))]).ids
    before_commit = []
    run_no = [0]

    def create_batch(with_rule):
        run_no[0] += 1
        vals_list = [
            dict(
                vals,
                country_id=countries[i % len(countries)],
                category_id=[Command.set(tags[: i % 3])],
            )
            for i, vals in enumerate(dataset.partner_values("B0", run_no[0], records))
        ]
        start = time.perf_counter()
        env["res.partner"].create(vals_list)
        env.flush_all()
        created = time.perf_counter() - start
        if with_rule:
            before_commit.append(len(receiver.received(path)))
        start = time.perf_counter()
        cr.commit()
        return created + time.perf_counter() - start

    def set_rule(active):
        automations.active = active
        cr.commit()

    create_batch(False)  # warm-up: caches, sequences, plans
    timings = {False: [], True: []}
    for _rep in range(reps):
        for with_rule in (False, True):
            set_rule(with_rule)
            timings[with_rule].append(create_batch(with_rule))
    set_rule(False)
    queued = count_states(env, config).get("pending", 0)
    # Send the last run's deliveries (the others are cancelled to save time).
    rows = env["bj.api.sync.delivery"].search(
        [("config_id", "=", config.id)], order="id"
    )
    rows[:-records].action_cancel()
    cr.commit()
    sent = env["bj.api.sync.delivery"]._cron_send_deliveries()
    received = len(receiver.received(path))
    base = min(timings[False]) / records * 1000
    auto = min(timings[True]) / records * 1000
    overhead = auto - base
    expected = records * reps
    ok = (
        overhead <= 1.0
        and not any(before_commit)
        and queued == expected
        and received == records
    )
    return Result(
        "B0",
        f"on-create automation, queued config: +{overhead:.2f} ms/rec "
        f"({auto:.2f} vs {base:.2f} ms/rec, {records} partners + commit, best of "
        f"{reps}) | HTTP before commit {max(before_commit)} | deliveries "
        f"{queued}/{expected}, last run's received after commit {received}/{sent} "
        f"| target <= +1 ms/rec and 0 requests before commit",
        ok,
    )


# ----------------------------------------------------------------------------
# B1: payload building vs read()
# ----------------------------------------------------------------------------


def time_pages(env, ids, size, work):
    """Run ``work(page)`` on pages of ``size`` partners, each with a cold cache;
    return (seconds spent in ``work``, SQL queries per page)."""
    Partner = env["res.partner"]
    elapsed = 0.0
    queries = pages = 0
    for page_ids in pages_of(ids, size):
        env.invalidate_all()
        page = Partner.browse(page_ids).with_prefetch(page_ids)
        count = env.cr.sql_log_count
        start = time.perf_counter()
        work(page)
        elapsed += time.perf_counter() - start
        queries += env.cr.sql_log_count - count
        pages += 1
    return elapsed, queries / pages


def build_pages(env, config, ids, size):
    """Time the mapping engine page by page, as sending builds payloads
    (``Mapping.build_objects_isolated``); return (seconds, queries/page)."""
    mapping = Mapping(config)

    def build(page):
        objects, errors = mapping.build_objects_isolated(page)
        if any(errors):
            raise AssertionError(f"payload errors: {[e for e in errors if e][:3]}")
        assert len(objects) == len(page)

    return time_pages(env, ids, size, build)


def read_pages(env, ids, size):
    """The ceiling R: read() the same stored data, with the same invalidation."""
    Tag = env["res.partner.category"]
    Country = env["res.country"]

    def read(page):
        rows = page.read(dataset.READ_FIELDS)
        tag_ids = sorted({tag for row in rows for tag in row["category_id"]})
        Tag.browse(tag_ids).read(["name"])
        country_ids = sorted(
            {row["country_id"][0] for row in rows if row["country_id"]}
        )
        Country.browse(country_ids).read(["code", "name"])

    return time_pages(env, ids, size, read)


def b1_payload_build(env, config, ids, reps=2):
    """Build payloads of ``ids`` in pages of 100 vs read() of the same data."""
    build, read = [], []
    for _rep in range(reps):
        build.append(build_pages(env, config, ids, 100)[0])
        read.append(read_pages(env, ids, 100)[0])
    build_rate = rate(len(ids), min(build))
    read_rate = rate(len(ids), min(read))
    _t, q10 = build_pages(env, config, ids[:1000], 10)
    _t, q100 = build_pages(env, config, ids[:3000], 100)
    _t, r10 = read_pages(env, ids[:1000], 10)
    ratio = build_rate / read_rate
    ok = ratio >= 0.5 and abs(q10 - q100) <= 1
    result = Result(
        "B1",
        f"payload build ({len(config.line_ids)} lines, pages of 100): "
        f"{build_rate:.0f} rec/s | ceiling R read() {read_rate:.0f} rec/s | ratio "
        f"{ratio:.2f} | target >= 0.5 | SQL/page {q10:.1f} (size 10) "
        f"{q100:.1f} (size 100), read() {r10:.1f}",
        ok,
    )
    return result, read_rate


# ----------------------------------------------------------------------------
# B2: delivery cron throughput vs one requests.Session
# ----------------------------------------------------------------------------


def post_sequentially(url, bodies):
    """The ceiling H: one keep-alive session posting the bodies one by one."""
    session = requests.Session()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    session.post(url, data=b"{}", headers=headers, timeout=10)
    start = time.perf_counter()
    for body in bodies:
        headers["Idempotency-Key"] = str(uuid.uuid4())
        response = session.post(url, data=body, headers=headers, timeout=10)
        response.raise_for_status()
    elapsed = time.perf_counter() - start
    session.close()
    return rate(len(bodies), elapsed)


def b2_cron_drain(env, receiver, id_sets):
    """Drain queued single-record deliveries with the cron, once per id set.

    Each round enqueues its records and commits, then times H on their bodies,
    the cron draining them, and H again: the round's ratio is the cron's rate
    over the mean of the two H, so drift of the machine cancels out. The median
    round is reported.
    """
    cr = env.cr
    config = dataset.make_config(
        env, "Bench B2 queued", receiver.url("/b2"), delivery_mode="queued"
    )
    Delivery = env["bj.api.sync.delivery"]
    url = receiver.url("/b2")
    rounds, enqueues = [], []
    done = expected = 0
    for ids in id_sets:
        start = time.perf_counter()
        rows = config._enqueue(env["res.partner"].browse(ids), "manual")
        cr.commit()
        enqueues.append(rate(len(ids), time.perf_counter() - start))
        bodies = [payload.encode() for payload in rows.mapped("payload")]
        before = post_sequentially(url, bodies)
        start = time.perf_counter()
        sent = Delivery._cron_send_deliveries()
        drain = rate(sent, time.perf_counter() - start)
        ceiling = (before + post_sequentially(url, bodies)) / 2
        rounds.append((drain / ceiling, drain, ceiling))
        expected += len(ids)
        done = count_states(env, config).get("done", 0)
    ratio, drain_rate, ceiling = sorted(rounds)[len(rounds) // 2]
    ok = ratio >= 0.6 and done == expected
    detail = ", ".join(f"{r:.2f}" for r, _d, _h in rounds)
    return Result(
        "B2",
        f"delivery cron ({len(id_sets[0])} queued single-record deliveries, "
        f"max_concurrency {config.max_concurrency}, {receiver.name}): "
        f"{drain_rate:.0f} deliveries/s | ceiling H one requests.Session "
        f"{ceiling:.0f} req/s | ratio {ratio:.2f} | target >= 0.6 | median of "
        f"{len(rounds)} rounds ({detail}) | done {done}/{expected} | enqueue "
        f"(build + insert) {max(enqueues):.0f} rec/s",
        ok,
    )


# ----------------------------------------------------------------------------
# B3: Send Now, immediate, paginated
# ----------------------------------------------------------------------------


def b3_send_now(env, config, receiver, count, read_rate):
    """``action_send_now()`` on ``count`` matching records, pages of 100."""
    config.write(
        {
            "delivery_mode": "immediate",
            "is_paginated": True,
            "page_size": 100,
            "filter_domain": dataset.G10K_DOMAIN,
            "request_url": receiver.url("/b3"),
        }
    )
    env.cr.commit()
    env.invalidate_all()
    start = time.perf_counter()
    action = config.action_send_now()
    env.cr.commit()
    send_rate = rate(count, time.perf_counter() - start)
    message = action["params"]["message"]
    ratio = send_rate / read_rate
    expected = f"{count // 100} succeeded"
    ok = ratio >= 0.4 and expected in message
    return Result(
        "B3",
        f"Send Now, immediate, pages of 100 ({count} records, {receiver.name}): "
        f"{send_rate:.0f} rec/s | ceiling R {read_rate:.0f} rec/s | ratio "
        f"{ratio:.2f} | target >= 0.4 | {message!r}",
        ok,
    )


# ----------------------------------------------------------------------------
# B4: concurrent sending to a slow receiver, per-record order
# ----------------------------------------------------------------------------


def b4_concurrency(env, slow, ids, seq_ids, concurrency=16, reordered=50):
    """Drain queued deliveries to the 50 ms receiver, sequentially then
    concurrently; some records get a second delivery that must arrive after."""
    cr = env.cr
    Delivery = env["bj.api.sync.delivery"]
    lines = (("id", "id", "plain"), ("name", "name", "plain"))

    def drain(config, partners, second=()):
        config._enqueue(partners, "manual")
        for partner in second:
            partner.name = f"{partner.name} v2"
        if second:
            config._enqueue(second, "manual")
        cr.commit()
        start = time.perf_counter()
        sent = Delivery._cron_send_deliveries()
        return sent, time.perf_counter() - start

    seq = dataset.make_config(
        env, "Bench B4 sequential", slow.url("/slow/b4s"), lines, max_concurrency=1
    )
    sent_seq, seconds_seq = drain(seq, env["res.partner"].browse(seq_ids))
    seq_rate = rate(sent_seq, seconds_seq)
    conc = dataset.make_config(
        env,
        "Bench B4 concurrent",
        slow.url("/slow/b4c"),
        lines,
        max_concurrency=concurrency,
    )
    partners = env["res.partner"].browse(ids)
    second = partners[:: max(len(ids) // reordered, 1)][:reordered]
    names = {p.id: p.name for p in second}
    sent, seconds = drain(conc, partners, second)
    conc_rate = rate(sent, seconds)
    arrivals = slow.received("/slow/b4c")
    order_ok = True
    for partner_id, name in names.items():
        seen = [body["name"] for body in arrivals if body["id"] == partner_id]
        order_ok &= seen == [name, f"{name} v2"]
    states = count_states(env, conc)
    expected = len(ids) + len(second)
    speedup = conc_rate / seq_rate
    ok = speedup >= 5 and order_ok and states.get("done") == expected
    return Result(
        "B4",
        f"cron to the 50 ms receiver, max_concurrency {concurrency}: "
        f"{conc_rate:.0f} deliveries/s ({len(ids)} records + {len(second)} second "
        f"deliveries) | sequential (max_concurrency 1, {len(seq_ids)}) "
        f"{seq_rate:.1f} deliveries/s | speed-up {speedup:.1f} | target >= 5 | "
        f"per-record order {'kept' if order_ok else 'BROKEN'}, done "
        f"{states.get('done', 0)}/{expected}",
        ok,
    )


# ----------------------------------------------------------------------------
# B6: a user request through JSON-RPC, queued config vs Odoo's webhook action
# ----------------------------------------------------------------------------


def b6_user_request(rpc, slow, ours, webhook, count=100, reps=3):
    """Time ``create`` of ``count`` partners over JSON-RPC with each rule."""
    counter = [0]

    def create(prefix):
        counter[0] += 1
        vals_list = dataset.partner_values("B6", counter[0], count)
        start = time.perf_counter()
        ids = rpc.call("res.partner", "create", vals_list)
        elapsed = time.perf_counter() - start
        assert len(ids) == count
        return elapsed

    def activate(rule):
        rpc.call("base.automation", "write", [ours, webhook], {"active": False})
        if rule:
            rpc.call("base.automation", "write", [rule], {"active": True})

    activate(ours)
    create("warm-up")
    timings = {"ours": [], "webhook": [], "none": []}
    for _rep in range(reps):
        for name, rule in (("ours", ours), ("webhook", webhook), ("none", None)):
            activate(rule)
            timings[name].append(create(name))
    activate(None)
    ours_s = statistics.median(timings["ours"])
    webhook_s = statistics.median(timings["webhook"])
    none_s = statistics.median(timings["none"])
    webhook_calls = len(slow.received("/slow/b6-webhook"))
    ours_calls = len(slow.received("/slow/b6"))
    speedup = webhook_s / ours_s
    ok = speedup >= 10 and webhook_calls == count * reps and ours_calls == 0
    return Result(
        "B6",
        f"JSON-RPC create of {count} partners, on-create rule, 50 ms receiver: "
        f"{ours_s:.3f} s with the queued config | baseline N Odoo webhook action "
        f"{webhook_s:.3f} s | speed-up {speedup:.1f} | target >= 10 | no rule "
        f"{none_s:.3f} s | requests during the calls: webhook {webhook_calls}, "
        f"queued {ours_calls} (median of {reps})",
        ok,
    )
