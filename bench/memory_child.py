"""B5 child: run one scheduled full sync and report its peak RSS growth as JSON.

A fresh process per run, so the baseline is clean: open the registry, warm up
(build and send one page, rolled back), take the baseline RSS, then run
``config._sync_all('cron')`` while a thread samples the RSS every 10 ms.

    python3 memory_child.py DB CONFIG_ID -- <odoo options>
"""

import gc
import json
import resource
import sys
import threading
import time

import psutil


def main():
    dbname, config_id = sys.argv[1], int(sys.argv[2])
    odoo_args = sys.argv[sys.argv.index("--") + 1 :]

    from odoo import SUPERUSER_ID, api
    from odoo.modules.registry import Registry
    from odoo.tools import config

    config.parse_config(odoo_args, setup_logging=True)
    registry = Registry(dbname)
    process = psutil.Process()
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        sync_config = env["bj.api.sync.config"].browse(config_id)
        # Warm-up: imports, code paths, the HTTP session; nothing is kept.
        first = sync_config._get_matching_records(limit=sync_config.page_size)
        sync_config._make_outbound_http_request(first)
        cr.rollback()
        env.invalidate_all()
        last_log = env["bj.api.log"].search([], order="id desc", limit=1).id or 0
        gc.collect()
        baseline = process.memory_info().rss
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.wait(0.01):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        ok = sync_config._sync_all("cron")
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss_after > maxrss_before:
            peak[0] = max(peak[0], maxrss_after)
        logs = env["bj.api.log"].search_read(
            [("config_id", "=", config_id), ("id", ">", last_log)],
            ["state", "res_ids"],
        )
        sent = sum(len(log["res_ids"].split(",")) for log in logs)
        errors = sum(log["state"] != "success" for log in logs)
        cr.rollback()
    print(
        json.dumps(
            {
                "ok": ok,
                "seconds": elapsed,
                "baseline_mb": baseline / 2**20,
                "peak_mb": peak[0] / 2**20,
                "growth_mb": (peak[0] - baseline) / 2**20,
                "records_sent": sent,
                "requests": len(logs),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
