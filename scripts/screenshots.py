#!/usr/bin/env python3
"""Take the screenshots of static/description/ (and the README) from a live Odoo.

Creates a database with demo data (or reuses ``--db``), starts Odoo with one cron
thread and the demo receiver on a free port, gives the demo configurations
something to show (Send Now, Import Now, a few requests to the inbound endpoint,
one of them refused), then opens the Overview, the demo configuration's form and
the logs in headless Chromium, logged in as admin, and saves one PNG of each.

    python3 scripts/screenshots.py                  # fresh database, dropped after
    python3 scripts/screenshots.py --db my_db --keep

Chromium is driven over the DevTools protocol through a pipe
(``--remote-debugging-pipe``: JSON commands on its fd 3, answers on its fd 4,
each ending with a NUL byte), so no port and no websocket library are needed.
Odoo and PostgreSQL are found as ``make test`` finds them (``testkit/odoo.py``).
"""

import argparse
import base64
import contextlib
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.odoo import (  # noqa: E402
    JsonRpc,
    Odoo,
    OdooError,
    OdooServer,
    unique_db_name,
)
from testkit.processes import free_port, stop_process, wait_for_port  # noqa: E402

DEMO_PORT = 8070  # where the demo configurations send (scripts/demo_receiver.py)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# file name, URL path (after the server's URL), element that shows the page is ready.
SHOTS = (
    (
        "screenshot_dashboard.png",
        "/odoo/action-bj_api_sync.bj_api_sync_config_action_overview",
        ".o_kanban_view .o_kanban_record",
    ),
    (
        "screenshot_form.png",
        "/odoo/action-bj_api_sync.bj_api_sync_config_action/{partner_config}",
        ".o_form_view div[name=line_ids] .o_data_row",
    ),
    (
        "screenshot_logs.png",
        "/odoo/action-bj_api_sync.bj_api_log_action",
        ".o_list_view .o_data_row",
    ),
)


def say(message):
    print(f"[screenshots] {message}", file=sys.stderr, flush=True)


class CdpError(RuntimeError):
    """Chromium answered a DevTools command with an error, or went away."""


class Chromium:
    """A headless Chromium and one page, driven over the DevTools pipe."""

    def __init__(self, executable, width, height):
        self.width = width
        self.height = height
        self.profile = tempfile.TemporaryDirectory(prefix="bj_screenshots_")
        to_chrome, self.writer = os.pipe()
        self.reader, from_chrome = os.pipe()
        flags = [
            "--headless=new",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile.name}",
            f"--window-size={width},{height}",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--lang=en-US",
            "about:blank",
        ]
        if os.geteuid() == 0:
            flags.insert(0, "--no-sandbox")  # Chromium refuses to run as root with it
        # bash puts the pipe ends where Chromium expects them (fds 3 and 4).
        script = 'exec "$@" 3<&"$BJ_CDP_IN" 4>&"$BJ_CDP_OUT"'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "chromium", executable, *flags],
            pass_fds=(to_chrome, from_chrome),
            env={
                **os.environ,
                "BJ_CDP_IN": str(to_chrome),
                "BJ_CDP_OUT": str(from_chrome),
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self.buffer = b""
        self.next_id = 0
        self.session = None

    def close(self):
        """Stop Chromium and remove its profile."""
        with contextlib.suppress(CdpError, OSError):
            self.send("Browser.close", timeout=5)
        stop_process(self.process, timeout=10)
        for fd in (self.reader, self.writer):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.profile.cleanup()

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("Chromium did not answer in time")
            ready, _, _ = select.select([self.reader], [], [], left)
            if ready:
                chunk = os.read(self.reader, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, timeout=30, browser=False):
        """Run one DevTools command (on the page unless ``browser``); its result."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") != self.next_id:
                continue  # an event, or the answer of a command given up on
            if "error" in answer:
                raise CdpError(f"{method}: {answer['error'].get('message')}")
            return answer.get("result", {})

    def open_page(self):
        """Open a tab of the configured size and talk to it from now on."""
        target = self.send("Target.createTarget", {"url": "about:blank"})
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.session = attached["sessionId"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": self.width,
                "height": self.height,
                "deviceScaleFactor": 1,
                "mobile": False,
            },
        )

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        return result.get("result", {}).get("value")

    def set_cookie(self, url, name, value):
        self.send("Network.setCookie", {"url": url, "name": name, "value": value})

    def load(self, url, ready_selector, timeout=60):
        """Go to ``url`` and wait until ``ready_selector`` shows and Odoo is idle."""
        self.evaluate("window.bjOldPage = true")
        self.send("Page.navigate", {"url": url})
        check = (
            "!window.bjOldPage && document.readyState === 'complete'"
            f" && !!document.querySelector({json.dumps(ready_selector)})"
            " && !document.querySelector('.o_loading_indicator, .o_blockUI')"
        )
        deadline = time.monotonic() + timeout
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                raise CdpError(f"{url}: {ready_selector} did not show")
            time.sleep(0.2)
        time.sleep(1.5)  # fonts, icons and the last renders

    def screenshot(self):
        """The page as PNG bytes."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)


def find_chromium(explicit=None):
    """The Chromium or Chrome executable: ``--chromium``, ``ODOO_BROWSER_BIN`` or
    the PATH."""
    for candidate in (explicit, os.environ.get("ODOO_BROWSER_BIN")):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit(
        "error: no Chromium or Chrome found (apt-get install chromium, or --chromium)"
    )


def optimized_png(raw):
    """``raw`` PNG as a 256-colour palette PNG (a third of the size for UI pages);
    the original when Pillow is missing."""
    try:
        from PIL import Image  # noqa: PLC0415 -- Odoo's dependency, optional here
    except ImportError:
        return raw
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=0)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(raw) else raw


def wait_until(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise OdooError(f"timed out waiting for {what}")
        time.sleep(0.5)


def port_is_free(port):
    """True when nothing listens on 127.0.0.1:``port`` (a bind succeeds)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def point_demo_configs(rpc, config_ids, old_host, new_host):
    """Replace ``old_host`` by ``new_host`` in the demo configurations' URLs."""
    for config in rpc.call(
        "bj.api.sync.config", "read", config_ids, fields=["request_url"]
    ):
        url = (config["request_url"] or "").replace(old_host, new_host)
        rpc.call("bj.api.sync.config", "write", [config["id"]], {"request_url": url})


def fill_demo(server, rpc, receiver_port):
    """Give the demo configurations logs, deliveries and figures to show."""
    Config = "bj.api.sync.config"
    partner_config = rpc.ref("bj_api_sync.demo_config_partner")
    import_config = rpc.ref("bj_api_sync.demo_config_people_import")
    outbound = [partner_config, import_config]
    # The demo URLs name port 8070; another receiver port is used for the sends
    # only, so that the form shows the URL the demo data has.
    demo_host, receiver_host = f"127.0.0.1:{DEMO_PORT}", f"127.0.0.1:{receiver_port}"
    point_demo_configs(rpc, outbound, demo_host, receiver_host)
    try:
        say("Send Now: Demo: Contacts to local receiver (queued, the cron sends)")
        rpc.call(Config, "action_send_now", [partner_config])
        waiting = [
            ("config_id", "=", partner_config),
            ("state", "in", ["pending", "retrying"]),
        ]
        wait_until(
            lambda: not rpc.call("bj.api.sync.delivery", "search_count", waiting),
            "the demo deliveries",
        )
        say("Import Now: Demo: Import people from local receiver")
        rpc.call(Config, "action_import_now", [import_config])
    finally:
        point_demo_configs(rpc, outbound, receiver_host, demo_host)

    say("Requests to the inbound endpoint /bj_api_sync/v1/partners")
    url = f"{server.url}/bj_api_sync/v1/partners"
    auth = {"Authorization": "Bearer demo-partners-token"}
    people = [
        ("API-1", "Ada Lovelace", "ada@example.com"),
        ("API-2", "Alan Turing", "alan@example.com"),
        ("API-3", "Grace Hopper", "grace@example.com"),
    ]
    with requests.Session() as http:
        for ref, name, email in people:
            body = {"ref": ref, "name": name, "email": email}
            http.post(url, json=body, headers=auth, timeout=30)
        http.patch(
            f"{url}/API-1", json={"phone": "+32 2 555 01 01"}, headers=auth, timeout=30
        )
        http.get(url, params={"limit": 10}, headers=auth, timeout=30)
        http.get(f"{url}/API-2", headers=auth, timeout=30)
        http.get(url, headers={"Authorization": "Bearer wrong-token"}, timeout=30)
    return {"partner_config": partner_config}


def take_screenshots(server, db, chromium_bin, out_dir, values, width, height):
    """Log in as admin and save one PNG per entry of ``SHOTS``; their paths."""
    login = requests.post(
        f"{server.url}/web/session/authenticate",
        json={
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"db": db, "login": "admin", "password": "admin"},
        },
        timeout=60,
    )
    login.raise_for_status()
    session_id = login.cookies.get("session_id")
    if not session_id or login.json().get("error"):
        raise OdooError(f"admin could not log in: {login.text[:300]}")
    saved = []
    browser = Chromium(chromium_bin, width, height)
    try:
        browser.open_page()
        browser.set_cookie(server.url, "session_id", session_id)
        for name, path, ready in SHOTS:
            url = server.url + path.format(**values)
            say(f"{name}: {url}")
            browser.load(url, ready)
            target = out_dir / name
            target.write_bytes(optimized_png(browser.screenshot()))
            saved.append(target)
    finally:
        browser.close()
    return saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        help="database to use; when missing it is created with demo data (default:"
        " a new bj_screenshots_<date>_… database)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the database when this script created it (else it is dropped)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "static" / "description",
        help="folder of the PNGs (default: static/description)",
    )
    parser.add_argument("--chromium", help="Chromium or Chrome executable")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)

    chromium_bin = find_chromium(args.chromium)
    odoo = Odoo()
    db = args.db or unique_db_name("bj_screenshots")
    created = not odoo.db_exists(db)
    if created:
        say(f"Creating {db} with demo data (a few minutes)")
        odoo.create_db(db, demo=True)
    receiver = server = None
    try:
        receiver_port = DEMO_PORT if port_is_free(DEMO_PORT) else free_port()
        receiver = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo_receiver.py"),
                "--port",
                str(receiver_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        if not wait_for_port(receiver_port) or receiver.poll() is not None:
            raise OdooError(f"the demo receiver did not start on {receiver_port}")
        server = OdooServer(odoo, db, cron_threads=1).start()
        say(f"Odoo on {server.url} (log: {server.log})")
        rpc = JsonRpc(server.url, db)
        values = fill_demo(server, rpc, receiver_port)
        args.out.mkdir(parents=True, exist_ok=True)
        saved = take_screenshots(
            server, db, chromium_bin, args.out, values, args.width, args.height
        )
    finally:
        if server:
            server.stop()
        stop_process(receiver)
        if created and not args.keep:
            odoo.drop_db(db)
    for path in saved:
        say(
            f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
            f" ({path.stat().st_size // 1024} KiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
