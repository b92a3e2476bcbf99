#!/usr/bin/env python3
"""Benchmarks of bj_api_sync: ``python3 bench/run_bench.py`` from the checkout.

Creates one fresh, uniquely named database, installs bj_api_sync, runs B0–B11,
prints one line per benchmark, drops the database (always) and writes
bench/RESULTS.md. Exit status: 0 when every target is met, 1 when one is not,
2 when the bench itself could not run.

Each target compares two figures measured in the same run (a ceiling: read() of
the same data, one plain requests.Session, the sequential rate, Odoo's own
webhook action, Odoo's own /json/2 on the same server, in-process create() and
write()) because absolute times drift on a shared machine.

Environment: ODOO_SRC / PYTHON / PGPORT / BJ_DB_USER as for scripts/devenv.sh.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
# The modules beside this file; testkit (Odoo launcher, JSON-RPC) at the repo root.
sys.path[:0] = [BENCH_DIR, ROOT]

from testkit.odoo import JsonRpc, Odoo, OdooServer, unique_db_name  # noqa: E402
from testkit.processes import die_with_parent  # noqa: E402

import receivers  # noqa: E402

ALL = ("B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11")


def log(message):
    print(
        f"bench: [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True
    )


def odoo_args(env):
    """Options of Odoo in this process and in the B5 child (no database)."""
    return [*env.flags(), "--log-level=warn"]


def create_database(env, dbname):
    log(f"creating database {dbname} and installing bj_api_sync (~1-2 min)")
    start = time.monotonic()
    env.create_db(dbname)
    log(f"database ready in {time.monotonic() - start:.0f} s")


def drop_database(env, dbname):
    """Close this process's registry and connections of ``dbname``, then drop it."""
    try:
        import odoo.sql_db  # noqa: PLC0415
        from odoo.modules.registry import Registry  # noqa: PLC0415

        Registry.delete(dbname)
        odoo.sql_db.close_db(dbname)
    except Exception:  # noqa: BLE001 - dropping must go on regardless
        pass
    try:
        env.drop_db(dbname)
        log(f"dropped database {dbname}")
    except RuntimeError as error:
        log(f"could not drop database {dbname}: {error}")


def module_revision():
    """The checkout's commit, marked dirty when the module has local changes."""

    def git(*args):
        done = subprocess.run(
            ["git", "-C", ROOT, *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", ".", ":!bench", ":!e2e")
    return f"{commit}{' + local changes' if dirty else ''}"


def machine_info(env):
    mem = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20
    import odoo.release  # noqa: PLC0415

    [(pg_version,)] = env.query("SHOW server_version")
    load = os.getloadavg()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "memory": f"{mem:.1f} GiB",
        "python": platform.python_version(),
        "odoo": odoo.release.version,
        "postgresql": pg_version,
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, at the end)",
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------
# B5 and B6: other processes
# ----------------------------------------------------------------------------


def memory_run(env, dbname, config_id):
    command = [
        sys.executable,
        os.path.join(BENCH_DIR, "memory_child.py"),
        dbname,
        str(config_id),
        "--",
        *odoo_args(env),
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=die_with_parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def b5_memory(env, dbname, registry_env, config, fast, total):
    import dataset  # noqa: PLC0415
    from cases import Result  # noqa: PLC0415

    runs = {}
    for label, domain in (("10k", dataset.G10K_DOMAIN), ("100k", dataset.ALL_DOMAIN)):
        config.write(
            {
                "filter_domain": domain,
                "delivery_mode": "immediate",
                "is_paginated": True,
                "page_size": 100,
                "sync_mode": "all",
                "request_url": fast.url("/b5"),
            }
        )
        registry_env.cr.commit()
        log(f"B5 {label}: child process running _sync_all('cron')")
        runs[label] = memory_run(env, dbname, config.id)
        log(f"B5 {label}: {runs[label]}")
    small, big = runs["10k"], runs["100k"]
    growth_ratio = big["growth_mb"] / max(small["growth_mb"], 1.0)
    complete = (
        big["records_sent"] == total
        and small["records_sent"] == 10_000
        and not big["errors"]
        and big["ok"]
    )
    ok = big["growth_mb"] <= 50 and growth_ratio <= 1.5 and complete
    return Result(
        "B5",
        f"scheduled full sync, _sync_all('cron'), immediate, pages of 100, "
        f"{fast.name}: peak RSS growth {big['growth_mb']:.1f} MB for "
        f"{big['records_sent']} records ({big['records_sent'] / big['seconds']:.0f} "
        f"rec/s) | 10k run {small['growth_mb']:.1f} MB | ratio {growth_ratio:.2f} "
        f"(10k floored at 1 MB) | target <= 50 MB and ratio <= 1.5 | "
        f"{big['requests']} requests, {big['errors']} failed",
        ok,
    )


def b6_prepare(renv, slow):
    import dataset  # noqa: PLC0415

    config = dataset.make_config(
        renv,
        "Bench B6 queued",
        slow.url("/slow/b6"),
        filter_domain="[('ref', '=like', 'B6-%')]",
        delivery_mode="queued",
    )
    ours = dataset.automate_on_create(renv, config)
    ours.active = False
    webhook = dataset.webhook_automation(
        renv,
        slow.url("/slow/b6-webhook"),
        "[('ref', '=like', 'B6-%')]",
        ["name", "email", "phone", "ref"],
    )
    renv.cr.commit()
    return ours.id, webhook.id


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------


def run(args, env, dbname, fast, slow):
    from odoo import SUPERUSER_ID, api  # noqa: PLC0415
    from odoo.modules.registry import Registry  # noqa: PLC0415
    from odoo.tools import config as odoo_config  # noqa: PLC0415

    odoo_config.parse_config(odoo_args(env), setup_logging=True)
    registry = Registry(dbname)
    # Only now is the addon importable (odoo.addons.bj_api_sync, used by cases).
    import cases  # noqa: PLC0415
    import dataset  # noqa: PLC0415
    import endpoints  # noqa: PLC0415
    import hotrecord  # noqa: PLC0415
    import imports  # noqa: PLC0415
    import ratelimit  # noqa: PLC0415

    results = []
    selected = set(args.only or ALL)

    def attempt(key, function, *fargs):
        if key not in selected:
            return None
        log(f"{key} running")
        start = time.monotonic()
        try:
            outcome = function(*fargs)
        except Exception as error:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            renv.cr.rollback()
            outcome = cases.Result(key, f"ERROR {type(error).__name__}: {error}", False)
        result = outcome[0] if isinstance(outcome, tuple) else outcome
        results.append(result)
        print(result.line, flush=True)
        log(f"{key} took {time.monotonic() - start:.0f} s")
        return outcome

    with registry.cursor() as cr:
        renv = api.Environment(cr, SUPERUSER_ID, {})
        log(f"inserting {args.partners} partners with SQL")
        start = time.monotonic()
        ids = dataset.insert_partners(renv, args.partners)
        cr.commit()
        log(f"partners ready in {time.monotonic() - start:.0f} s")
        g10k = renv["res.partner"].search([("function", "=", "g10k")], order="id").ids
        others = sorted(set(ids) - set(g10k))
        payload_config = dataset.make_config(
            renv,
            "Bench payload",
            fast.url("/b1"),
            filter_domain=dataset.G10K_DOMAIN,
            is_paginated=True,
            page_size=100,
        )
        cr.commit()

        attempt("B0", cases.b0_automation_overhead, renv, slow)
        read_rate = None
        outcome = attempt("B1", cases.b1_payload_build, renv, payload_config, g10k)
        if isinstance(outcome, tuple):
            read_rate = outcome[1]
        if read_rate is None and ({"B3"} & selected):
            read_rate = cases.rate(len(g10k), cases.read_pages(renv, g10k, 100)[0])
        attempt(
            "B2",
            cases.b2_cron_drain,
            renv,
            fast,
            [others[start : start + 2000] for start in (0, 2000, 4000)],
        )
        attempt(
            "B3", cases.b3_send_now, renv, payload_config, fast, len(g10k), read_rate
        )
        attempt(
            "B4",
            cases.b4_concurrency,
            renv,
            slow,
            others[6000:6500],
            others[6500:6600],
        )
        attempt("B5", b5_memory, env, dbname, renv, payload_config, fast, len(ids))
        attempt(
            "B10",
            hotrecord.b10_hot_record,
            renv,
            slow,
            others[6900],
            others[7000 : 7000 + hotrecord.DISTINCT],
            args.b10_hot,
        )
        # B9 needs no Odoo HTTP server: before the server-based B6-B8.
        attempt("B9", imports.b9_import, renv, fast)
        served = [key for key in ("B6", "B7", "B8") if key in selected]
        if served:
            if "B6" in selected:
                ours, webhook = b6_prepare(renv, slow)
            api_key = None
            if {"B7", "B8"} & selected:
                api_key = endpoints.prepare(renv, dataset.G10K_DOMAIN, dataset.G10K_SQL)
            # One server for B6-B8: B7 and B8 compare two routes of the same one.
            server = OdooServer(env, dbname, extra=["--log-level=warn"])
            try:
                log(f"starting odoo-bin (log: {server.log})")
                server.start()
                if "B6" in selected:
                    rpc = JsonRpc(server.url, dbname)
                    attempt("B6", cases.b6_user_request, rpc, slow, ours, webhook)
                attempt(
                    "B7",
                    endpoints.b7_list,
                    server.url,
                    api_key,
                    dataset.G10K_DOMAIN,
                    len(g10k),
                )
                attempt("B8", endpoints.b8_upsert, renv, server.url, api_key)
            except Exception as error:  # noqa: BLE001
                traceback.print_exc()
                done = {result.key for result in results}
                for key in served:
                    if key not in done:
                        result = cases.Result(key, f"ERROR {error}", False)
                        results.append(result)
                        print(result.line, flush=True)
            finally:
                server.stop()
        cr.rollback()
        # Two servers of their own, started and stopped by the benchmark.
        attempt("B11", ratelimit.b11_rate_limit, env, dbname, renv)
    return results


def write_results(results, info, fast, started, path):
    lines = [
        "# bj_api_sync benchmarks",
        "",
        "Written by `python3 bench/run_bench.py` (each ratio compares two figures of "
        "the same run).",
        "",
        "```",
        *(r.line for r in results),
        "```",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        f"| fast receiver | {fast} |",
        f"| slow receiver | Python ThreadingHTTPServer, HTTP/1.1, "
        f"{int(receivers.SLOW_DELAY * 1000)} ms per request |",
        f"| whole run | {time.monotonic() - started:.0f} s |",
        "",
    ]
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=ALL, help="run these only")
    parser.add_argument(
        "--partners", type=int, default=100_000, help="partners for B5 (100,000)"
    )
    parser.add_argument(
        "--results", default=os.path.join(BENCH_DIR, "RESULTS.md"), help="output"
    )
    parser.add_argument(
        "--b10-hot",
        type=int,
        default=20_000,
        help="queued updates of B10's hot record (20,000; without compaction "
        "they go one after the other: about 20 minutes)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install nginx"
    )
    args = parser.parse_args()
    # SIGTERM (a killed `make bench`) still drops the database and stops servers.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(143))
    started = time.monotonic()
    revision = module_revision()  # before the run: the checkout may move meanwhile
    try:
        env = Odoo()
    except RuntimeError as error:
        log(str(error))
        return 2
    dbname = unique_db_name("bjbench")
    fast = slow = None
    results = []
    try:
        fast = receivers.start_fast_receiver(install=not args.no_install)
        slow = receivers.PythonReceiver().start()
        log(f"fast receiver: {fast.name} on port {fast.port}; slow: port {slow.port}")
        create_database(env, dbname)
        results = run(args, env, dbname, fast, slow)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 2
    finally:
        drop_database(env, dbname)
        for receiver in (fast, slow):
            if receiver:
                receiver.stop()
    fast_text = (
        "nginx (private config, `return 200`, no access log)"
        if fast.name == "nginx"
        else "Python ThreadingHTTPServer (nginx unavailable)"
    )
    info = dict(machine_info(env), bj_api_sync=revision)
    write_results(results, info, fast_text, started, args.results)
    log(f"wrote {os.path.relpath(args.results)} ({time.monotonic() - started:.0f} s)")
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
