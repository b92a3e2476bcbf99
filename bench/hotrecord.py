"""B10: one hot record in front of a long backlog (SPEC §6, per-record order).

One configuration sends to the 50 ms receiver with ``max_concurrency`` 16. Its
queue starts with 20,000 updates of one record, queued one transaction at a
time, then 10,000 deliveries of distinct records. The ceiling is the same
10,000 distinct deliveries drained alone, measured in the same run. Targets:

* the distinct records drain at >= 0.8 x the ceiling, with compaction
  (``coalesce_backlog``, the default) and without it: the hot record holds
  none of them back;
* with compaction the hot record sends at most 2 deliveries in all (its other
  updates are superseded);
* without compaction its 20,000 updates all arrive, in the order they were
  queued (one after the other: about 20,000 x 50 ms, the longest part of B10).

The distinct records' drain time is when the last of them is done, watched
from a second connection while the cron method runs.
"""

import threading
import time

from odoo.sql_db import db_connect

from odoo.addons.bj_api_sync.models.bj_api_sync_outbox import TXN_KEY

import dataset
from cases import Result, count_states, rate

HOT_UPDATES = 20_000
DISTINCT = 10_000
CONCURRENCY = 16
LINES = (("id", "id", "plain"), ("name", "name", "plain"))
#: Queued updates of the hot record committed together; each is queued as in
#: a transaction of its own (the transaction's own coalescing is reset).
COMMIT_EVERY = 200


class DoneWatcher:
    """Polls, from its own connection, how many deliveries of a configuration
    other than the hot record's are done; notes when ``target`` is reached."""

    def __init__(self, dbname, config_id, hot_id, target):
        self.dbname = dbname
        self.config_id = config_id
        self.hot_id = hot_id
        self.target = target
        self.reached_at = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def watch(self):
        with db_connect(self.dbname).cursor() as cr:
            while not self.stop.is_set():
                cr.execute(
                    """SELECT count(*) FROM bj_api_sync_delivery
                        WHERE config_id = %s AND state = 'done' AND res_id <> %s""",
                    (self.config_id, self.hot_id),
                )
                done = cr.fetchone()[0]
                cr.rollback()  # a fresh snapshot for the next look
                if done >= self.target:
                    self.reached_at = time.perf_counter()
                    return
                self.stop.wait(0.1)


def queue_hot_updates(env, config, hot, count):
    """Queue ``count`` updates of ``hot`` (name ``hot v<n>``), each as its own
    transaction would (the update is built from the record's state)."""
    cr = env.cr
    for n in range(count):
        hot.name = f"hot v{n:05d}"
        config._create_deliveries(hot, "write")
        cr.postcommit.data.pop(TXN_KEY, None)
        if n % COMMIT_EVERY == COMMIT_EVERY - 1:
            cr.commit()
    cr.commit()


def drain(env, config, partners, hot=None, hot_updates=0):
    """Queue (hot updates, then) one delivery per partner, drain with the
    cron method; return ``(seconds until the distinct ones were done, whole
    drain seconds, seconds to queue)``."""
    start = time.perf_counter()
    if hot is not None:
        queue_hot_updates(env, config, hot, hot_updates)
    config._enqueue(partners, "manual")
    env.cr.commit()
    queued = time.perf_counter() - start
    Delivery = env["bj.api.sync.delivery"]
    with DoneWatcher(
        env.cr.dbname, config.id, hot.id if hot else 0, len(partners)
    ) as watcher:
        start = time.perf_counter()
        Delivery._cron_send_deliveries()
        end = time.perf_counter()
        watcher.thread.join(5)
    distinct = (watcher.reached_at or end) - start
    return distinct, end - start, queued


def b10_hot_record(env, slow, hot_id, ids, hot_updates=HOT_UPDATES):
    """The three runs of B10 (ceiling, with compaction, without); see the
    module docstring."""
    Partner = env["res.partner"]
    partners = Partner.browse(ids[:DISTINCT])
    hot = Partner.browse(hot_id)

    def config(name, path, **values):
        config = dataset.make_config(
            env,
            f"Bench B10 {name}",
            slow.url(path),
            LINES,
            max_concurrency=CONCURRENCY,
            **values,
        )
        env.cr.commit()
        return config

    alone = config("alone", "/slow/b10a")
    seconds, _whole, _queued = drain(env, alone, partners)
    ceiling = rate(len(partners), seconds)

    compact = config("compaction", "/slow/b10c")
    seconds, _whole, queued_c = drain(env, compact, partners, hot, hot_updates)
    with_compaction = rate(len(partners), seconds)
    states_c = count_states(env, compact)
    hot_sent_c = sum(1 for b in slow.received("/slow/b10c") if b["id"] == hot.id)

    keep = config("no compaction", "/slow/b10k", coalesce_backlog=False)
    seconds, whole, queued_k = drain(env, keep, partners, hot, hot_updates)
    without = rate(len(partners), seconds)
    states_k = count_states(env, keep)
    hot_names = [b["name"] for b in slow.received("/slow/b10k") if b["id"] == hot.id]
    in_order = hot_names == [f"hot v{n:05d}" for n in range(hot_updates)]

    ratio_c, ratio_k = with_compaction / ceiling, without / ceiling
    expected = len(partners) + hot_updates
    ok = (
        ratio_c >= 0.8
        and ratio_k >= 0.8
        and hot_sent_c <= 2
        and in_order
        and states_c.get("done", 0) + states_c.get("superseded", 0) == expected
        and states_k.get("done", 0) == expected
    )
    return Result(
        "B10",
        f"hot record ({hot_updates} queued updates of one record, then "
        f"{len(partners)} deliveries of distinct records), 50 ms receiver, "
        f"max_concurrency {CONCURRENCY}: distinct records {with_compaction:.0f} "
        f"deliveries/s with compaction, {without:.0f} without | ceiling: the "
        f"{len(partners)} alone {ceiling:.0f} deliveries/s | ratios "
        f"{ratio_c:.2f}, {ratio_k:.2f} | target >= 0.8 | hot record with "
        f"compaction: {hot_sent_c} sent, {states_c.get('superseded', 0)} "
        f"superseded (target <= 2 sent) | without: {len(hot_names)}/{hot_updates} "
        f"arrived, {'in order' if in_order else 'OUT OF ORDER'}, whole drain "
        f"{whole:.0f} s | queuing the updates: {queued_c:.0f} s with compaction, "
        f"{queued_k:.0f} s without | done {states_k.get('done', 0)}/{expected}",
        ok,
    )
