"""B9: importing paginated JSON into partners (an Out GET config, ``import_response``).

The fast receiver (nginx, see ``receivers.py``) serves static pages
``GET /import/<set>/?page=N`` = ``people-N.json`` = ``{"data": [...]}``; the
page after the last one is empty (``{"data": []}``), which ends the walk
(``pull_pagination="page"``, no page size parameter). Each object has six keys,
read by six ``in`` lines of the same names on res.partner (``ref`` is the
identifier, the others plain lines).

Timed, in the bench process, as the admin user (not the superuser): the first
run of ``_import_run`` over 10,000 objects in pages of 100 creates them all, the
second one (other values in every field but ``ref``) updates them all; both
commit after each page, as the scheduled run does. The ceilings, in the same run
and with the same user: ``create()`` of the same value dicts in chunks of 100,
commit after each chunk; ``write()`` of the same new values record by record
(each record has values of its own, as in an import), commit after each 100.
The ceilings write partners of their own (``ref`` ``B9C-…`` instead of
``B9-…``, otherwise the same values), so that both sides create and update
alike. Each run is cut into :data:`ROUNDS` interleaved rounds (one walk of
2,000 objects, 20 pages and the empty one, against 2,000 records of the
ceiling; which side goes first alternates), so that drift of a shared machine
hits both sides alike: the ratio is the median round's, the rates are over all
10,000 records.

SQL queries per page: two smaller sets, in pages of 10 and of 100, each imported
twice (creates, then updates), untimed. A query hook of the thread
(``threading.current_thread().query_hooks``, which ``Cursor.execute`` calls for
every statement it counts in ``sql_log_count``) sees each statement; a page's
count is everything between the end of one commit and the end of the next (the
fetch, the identifier lookup, the creates or updates, the page's log row, the
commit's flush). Pages 2 to the last full one are averaged: page 1 also reads
the configuration, and the empty last page has no objects.

*Per-record* statements are the ones run by the import's update step, found on
the Python stack of the statement (:data:`PER_RECORD_FUNCTIONS`): the writes of
the page's found records, in one savepoint flushed once (and, should that fail,
each again alone in a savepoint of its own, so that a bad object fails alone).
That is where Odoo's own ``res.partner.write()`` work happens: its ``UPDATE``,
the searches of recompute triggers, mail's tracking messages (two ``INSERT`` a
record); it grows with the number of updated objects by design. Everything else
is *fixed*: the fetch, the identifier lookup, the creates (one ``create()`` of
the page), reads for the mapping, the page's log row, the commit. Target:
fixed(100) <= fixed(10) + 1, for the create run and for the update run. The
line also gives the per-record statements per updated record, and the
statements per record of the timed update runs next to those of the write
ceiling (``sql_log_count`` over each timed run).
"""

import json
import os
import re
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

from odoo import Command

from cases import Result, pages_of, rate

#: The keys of the JSON objects, and the res.partner fields their lines map.
IMPORT_FIELDS = ("ref", "name", "email", "phone", "city", "zip")
PAGE_SIZE = 100
ROUNDS = 5
QUERY_SETS = ((10, 300), (100, 1000))  # (page size, objects) of the query counts

#: The functions of the import whose statements are per record (see above):
#: the updates of a page together, and one by one when that fails.
PER_RECORD_FUNCTIONS = ("_import_update_batch", "_import_write")

_STATEMENT = re.compile(
    r"^\s*(?:(SAVEPOINT|RELEASE|ROLLBACK)\b|(INSERT\s+INTO|UPDATE|DELETE\s+FROM)"
    r'\s+"?(\w+)"?|(SELECT|WITH)\b)',
    re.IGNORECASE,
)


def log(message):
    print(f"bench: [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def people(prefix, run, count):
    """Objects of run ``run`` (1, 2, …): ``ref`` ``<prefix>-<n>`` stays, every
    other value changes from one run to the next."""
    return [
        {
            "ref": f"{prefix}-{i:05d}",
            "name": f"{prefix} person {i} v{run}",
            "email": f"{prefix.lower()}.{i}.v{run}@example.com",
            "phone": f"+1 555 {run}{i:06d}",
            "city": f"City {run}-{i % 50}",
            "zip": f"{run}{i % 10000:04d}",
        }
        for i in range(count)
    ]


def write_pages(import_dir, name, objects, size):
    """Write ``objects`` as ``<import_dir>/<name>/people-<n>.json``, ``size``
    a page, then an empty page; return the number of full pages."""
    folder = os.path.join(import_dir, name)
    os.makedirs(folder, exist_ok=True)
    pages = list(pages_of(objects, size))
    for number, page in enumerate([*pages, []], start=1):
        with open(os.path.join(folder, f"people-{number}.json"), "w") as handle:
            json.dump({"data": page}, handle)
    return len(pages)


def make_import_config(env, name, url, size):
    """An Out GET configuration importing partners page by page."""
    get = env.ref("bj_api_sync.http_method_get")
    return env["bj.api.sync.config"].create(
        {
            "name": name,
            "request_type": "out",
            "model_id": env["ir.model"]._get("res.partner").id,
            "request_url": url,
            "http_method_ids": [Command.set(get.ids)],
            "import_response": True,
            "response_data_path": "data",
            "pull_pagination": "page",
            "pull_page_param": "page",
            "pull_page_start": 1,
            "pull_size_param": "",
            "page_size": size,
            "max_retries": 0,
            "backoff_factor": 0.0,
            "line_ids": [
                Command.create(
                    {
                        "sequence": sequence,
                        "field_path": field,
                        "api_key": field,
                        "value_type": "plain",
                        "direction": "in",
                        "is_identifier": field == "ref",
                    }
                )
                for sequence, field in enumerate(IMPORT_FIELDS)
            ],
        }
    )


def statement_kind(query):
    """``savepoint``, ``UPDATE res_partner``, ``INSERT INTO bj_api_log``,
    ``SELECT``… of one statement."""
    if isinstance(query, bytes):
        query = query.decode(errors="replace")
    match = _STATEMENT.match(str(query))
    if not match:
        return "other"
    if match[1]:
        return "savepoint"
    if match[2]:
        return f"{' '.join(match[2].upper().split())} {match[3]}"
    return "SELECT"


def in_function(frame, names):
    """Whether ``frame`` or one of its callers runs a function named in ``names``."""
    while frame is not None:
        if frame.f_code.co_name in names:
            return True
        frame = frame.f_back
    return False


class QueryTape:
    """Counts the statements of this thread (a ``query_hooks`` hook) by
    ``(per record, kind)``."""

    def __init__(self):
        self.kinds = Counter()
        self._thread = None
        self._saved = None

    def _hook(self, _cr, query, _params, _start, _depth):
        per_record = in_function(sys._getframe(1), PER_RECORD_FUNCTIONS)
        self.kinds[per_record, statement_kind(query)] += 1

    def take(self):
        """The counts since the last take, and start again."""
        kinds, self.kinds = self.kinds, Counter()
        return kinds

    def __enter__(self):
        self._thread = threading.current_thread()
        self._saved = getattr(self._thread, "query_hooks", None)
        self._thread.query_hooks = (*(self._saved or ()), self._hook)
        return self

    def __exit__(self, *_exc):
        if self._saved is None:
            del self._thread.query_hooks
        else:
            self._thread.query_hooks = self._saved


def check_outcome(outcome, created, updated, pages):
    got = (outcome.created, outcome.updated, outcome.failed, outcome.pages)
    if got != (created, updated, 0, pages) or outcome.errors or outcome.warning:
        raise AssertionError(
            f"import outcome {got} (created, updated, failed, pages), expected "
            f"{(created, updated, 0, pages)}; errors {outcome.errors[:3]}, "
            f"warning {outcome.warning}"
        )


@dataclass
class PageQueries:
    """Statements per page (mean over pages 2 to the last full one)."""

    total: float
    fixed: float
    per_record: float  # per page: inside PER_RECORD_FUNCTIONS
    sample: Counter  # the last full page, by (per record, kind)


def counted_run(env, config, created, updated, pages):
    """Import once, counting the statements of each page: a :class:`PageQueries`."""
    per_page = []
    with QueryTape() as tape:

        def commit():
            env.cr.commit()
            per_page.append(tape.take())
            return True  # go on with the next page

        outcome = config._import_run(env, commit=commit)
    check_outcome(outcome, created, updated, pages + 1)
    steady = per_page[1:pages]
    per_record = sum(n for kinds in steady for (inner, _k), n in kinds.items() if inner)
    total = sum(sum(kinds.values()) for kinds in steady)
    return PageQueries(
        total=total / len(steady),
        fixed=(total - per_record) / len(steady),
        per_record=per_record / len(steady),
        sample=steady[-1],
    )


def query_counts(env, receiver):
    """:class:`PageQueries` for pages of each size of :data:`QUERY_SETS`:
    ``{(size, "create" | "update"): PageQueries}``."""
    counts = {}
    for size, count in QUERY_SETS:
        name = f"q{size}"
        prefix = f"B9Q{size}"
        config = make_import_config(
            env, f"Bench B9 queries {size}", receiver.url(f"/import/{name}/"), size
        )
        env.cr.commit()
        for run, action in ((1, "create"), (2, "update")):
            pages = write_pages(
                receiver.import_dir, name, people(prefix, run, count), size
            )
            env.invalidate_all()
            counts[size, action] = counted_run(
                env,
                config,
                count if action == "create" else 0,
                count if action == "update" else 0,
                pages,
            )
    if not counts[10, "update"].per_record:
        raise AssertionError(
            f"no statement ran inside {' or '.join(PER_RECORD_FUNCTIONS)}: "
            "renamed? (update the bench)"
        )
    return counts


def ceiling_create(env, vals_list):
    """``create()`` in chunks of :data:`PAGE_SIZE`, commit after each; return
    (seconds, the records)."""
    Partner = env["res.partner"]
    env.invalidate_all()
    ids = []
    start = time.perf_counter()
    for chunk in pages_of(vals_list, PAGE_SIZE):
        ids += Partner.create(chunk).ids
        env.cr.commit()
    return time.perf_counter() - start, Partner.browse(ids)


def ceiling_write(env, records, vals_list):
    """``write()`` record by record, commit after each :data:`PAGE_SIZE`;
    return (seconds, statements)."""
    env.invalidate_all()
    queries = env.cr.sql_log_count
    start = time.perf_counter()
    for chunk in pages_of(list(zip(records, vals_list, strict=True)), PAGE_SIZE):
        for record, vals in chunk:
            record.write(vals)
        env.cr.commit()
    return time.perf_counter() - start, env.cr.sql_log_count - queries


def timed_import(env, config, created, updated, pages):
    """One import run, commit after each page; return (seconds, statements)."""

    def commit():
        env.cr.commit()
        return True  # go on with the next page (False: the cron's time is up)

    env.invalidate_all()
    queries = env.cr.sql_log_count
    start = time.perf_counter()
    outcome = config._import_run(env, commit=commit)
    seconds = time.perf_counter() - start
    check_outcome(outcome, created, updated, pages + 1)
    return seconds, env.cr.sql_log_count - queries


def interleaved(rounds, measure_import, measure_ceiling):
    """Run both sides once per round, alternating which goes first; return
    ``(import seconds, ceiling seconds)`` of each round."""
    timings = []
    for number in range(rounds):
        if number % 2:
            ceiling_s = measure_ceiling(number)
            import_s = measure_import(number)
        else:
            import_s = measure_import(number)
            ceiling_s = measure_ceiling(number)
        timings.append((round(import_s, 2), round(ceiling_s, 2)))
    return timings


def summary(timings, count):
    """``(import rec/s, ceiling rec/s, median round ratio, round ratios)``."""
    ratios = [ceiling_s / import_s for import_s, ceiling_s in timings]
    return (
        rate(count, sum(import_s for import_s, _c in timings)),
        rate(count, sum(ceiling_s for _i, ceiling_s in timings)),
        statistics.median(ratios),
        ", ".join(f"{ratio:.2f}" for ratio in ratios),
    )


def b9_import(renv, receiver, count=10_000, rounds=ROUNDS):
    """Import ``count`` objects twice (creates, then updates) vs create()/write()."""
    env = renv(user=renv.ref("base.user_admin").id)
    assert not env.su
    counts = query_counts(env, receiver)  # also the warm-up
    for (size, action), queries in sorted(counts.items()):
        shown = ", ".join(
            f"{'per-record ' if inner else ''}{kind} {n}"
            for (inner, kind), n in sorted(queries.sample.items())
        )
        log(f"B9 one {action} page of {size}: {shown}")

    share = count // rounds
    pages = share // PAGE_SIZE
    ceiling_values = people("B9C", 1, count)
    ceiling_new_values = people("B9C", 2, count)
    config = make_import_config(
        env, "Bench B9 import", receiver.url("/import/b9-0/"), PAGE_SIZE
    )
    env.cr.commit()
    ceiling_records = {}
    queries = {"import": 0, "write": 0}

    def share_of(values, number):
        return values[number * share : (number + 1) * share]

    def serve(values):
        for number in range(rounds):
            folder = f"b9-{number}"
            chunk = share_of(values, number)
            assert write_pages(receiver.import_dir, folder, chunk, PAGE_SIZE) == pages

    def measure_import(action):
        def measure(number):
            config.request_url = receiver.url(f"/import/b9-{number}/")
            env.cr.commit()
            created, updated = (share, 0) if action == "create" else (0, share)
            seconds, statements = timed_import(env, config, created, updated, pages)
            queries["import"] += statements if action == "update" else 0
            return seconds

        return measure

    def measure_create(number):
        seconds, records = ceiling_create(env, share_of(ceiling_values, number))
        ceiling_records[number] = records
        return seconds

    def measure_write(number):
        values = share_of(ceiling_new_values, number)
        seconds, statements = ceiling_write(env, ceiling_records[number], values)
        queries["write"] += statements
        return seconds

    # run 1: creates
    serve(people("B9", 1, count))
    creates = interleaved(rounds, measure_import("create"), measure_create)
    log(f"B9 creates, seconds by round (import, create()): {creates}")
    # run 2: updates
    new_values = people("B9", 2, count)
    serve(new_values)
    updates = interleaved(rounds, measure_import("update"), measure_write)
    log(f"B9 updates, seconds by round (import, write()): {updates}")

    env.invalidate_all()
    partners = (
        env["res.partner"]
        .with_context(active_test=False)
        .search([("ref", "in", [vals["ref"] for vals in new_values])])
    )
    current = {
        tuple(row[field] for field in IMPORT_FIELDS)
        for row in partners.read(list(IMPORT_FIELDS))
    }
    expected = {tuple(vals[field] for field in IMPORT_FIELDS) for vals in new_values}
    matching = len(current & expected)
    partners_ok = len(partners) == count and matching == count

    create_rate, ceiling_rate, create_ratio, create_rounds = summary(creates, count)
    update_rate, write_rate, update_ratio, update_rounds = summary(updates, count)
    c10, c100 = counts[10, "create"], counts[100, "create"]
    u10, u100 = counts[10, "update"], counts[100, "update"]
    fixed_ok = c100.fixed <= c10.fixed + 1 and u100.fixed <= u10.fixed + 1
    ok = create_ratio >= 0.5 and update_ratio >= 0.5 and fixed_ok and partners_ok
    return Result(
        "B9",
        f"import {count} objects, {len(IMPORT_FIELDS)} in lines (ref identifier), "
        f"GET pages of {PAGE_SIZE} from {receiver.name}, commit per page, admin "
        f"user: first run (creates) {create_rate:.0f} rec/s | ceiling create() "
        f"chunks of {PAGE_SIZE} + commit {ceiling_rate:.0f} rec/s | ratio "
        f"{create_ratio:.2f} | target >= 0.5 | second run (updates) "
        f"{update_rate:.0f} rec/s | ceiling write() per record + commit per "
        f"{PAGE_SIZE} {write_rate:.0f} rec/s | ratio {update_ratio:.2f} | target "
        f">= 0.5 | median of {rounds} interleaved rounds of {share} (creates "
        f"{create_rounds}; updates {update_rounds}) | SQL/page, size 10 / size "
        f"100: creates {c10.total:.1f} / {c100.total:.1f} (fixed {c10.fixed:.1f} / "
        f"{c100.fixed:.1f}), updates "
        f"{u10.total:.1f} / {u100.total:.1f} (fixed {u10.fixed:.1f} / "
        f"{u100.fixed:.1f}, per updated record {u10.per_record / 10:.1f} / "
        f"{u100.per_record / 100:.1f}) | target fixed(100) <= fixed(10) + 1 | "
        f"SQL/record over the timed runs: updates {queries['import'] / count:.1f}, "
        f"write() {queries['write'] / count:.1f} | outcome {count} created, then "
        f"{count} updated, 0 failed, walks of {pages} pages + 1 empty | partners "
        f"with the new values {matching}/{count}",
        ok,
    )
