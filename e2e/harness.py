"""Odoo side of the end-to-end check: database, server processes, JSON-RPC.

Everything goes through the project's tooling (``scripts/devenv.sh``) and real
processes: ``odoo-bin`` installs the addon into a fresh database, then serves it
over HTTP with its cron threads running; the check talks to it only through
``/jsonrpc`` (each call is one transaction, committed or rolled back by Odoo).
"""

import itertools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DEVENV = ROOT / "scripts" / "devenv.sh"
RUN_DIR = ROOT / ".run"
PYTHON = os.environ.get("PYTHON", "python3")
DB_USER = os.environ.get("BJ_DB_USER", "odoo")
DB_HOST = "127.0.0.1"


class HarnessError(RuntimeError):
    pass


class RpcError(RuntimeError):
    """An error answered by Odoo (``name`` is the exception's dotted name)."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def devenv(command):
    """Run ``scripts/devenv.sh <command>`` and return its last stdout line."""
    done = subprocess.run(
        ["bash", str(DEVENV), command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode:
        raise HarnessError(
            f"scripts/devenv.sh {command} failed ({done.returncode}): "
            f"{done.stderr.strip()}"
        )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise HarnessError(f"scripts/devenv.sh {command} printed nothing")
    return lines[-1].strip()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psql(port, sql):
    """Run one statement on the ``postgres`` database as the Odoo role."""
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-w",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            DB_HOST,
            "-p",
            str(port),
            "-U",
            DB_USER,
            "-d",
            "postgres",
            "-tAc",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        raise HarnessError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


class OdooEnv:
    """Where Odoo is and how to run it against one database."""

    def __init__(self, db, log_dir):
        self.db = db
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.tree = Path(devenv("find-odoo"))
        self.pg_port = int(devenv("ensure-pg"))
        self.addons_path = devenv("addons-path")
        self.data_dir = RUN_DIR / "odoo-data"
        odoo_bin = self.tree / "odoo-bin"
        self.command = (
            [PYTHON, str(odoo_bin)] if odoo_bin.exists() else [PYTHON, "-m", "odoo"]
        )
        self.process_env = dict(os.environ)
        if os.environ.get("ODOO_SRC"):
            # devenv.sh finds ODOO_SRC's tree; make `import odoo` resolve to it too.
            paths = [str(self.tree), os.environ.get("PYTHONPATH", "")]
            self.process_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)

    def base_flags(self):
        return [
            "-d",
            self.db,
            "--db_host",
            DB_HOST,
            "--db_port",
            str(self.pg_port),
            "--db_user",
            DB_USER,
            "--addons-path",
            self.addons_path,
            "--data-dir",
            str(self.data_dir),
        ]

    def db_exists(self):
        found = psql(
            self.pg_port, f"SELECT 1 FROM pg_database WHERE datname = '{self.db}'"
        )
        return found == "1"

    def install(self, module="bj_api_sync", timeout=900):
        """Create the database and install ``module`` (no demo data)."""
        log = self.log_dir / "install.log"
        with open(log, "wb") as out:
            done = subprocess.run(
                [
                    *self.command,
                    *self.base_flags(),
                    "-i",
                    module,
                    "--stop-after-init",
                    "--no-http",
                    "--max-cron-threads",
                    "0",
                    "--log-level",
                    "warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.process_env,
                timeout=timeout,
                check=False,
            )
        if done.returncode:
            raise HarnessError(f"installing {module} failed: see {log}")
        return log

    def drop_db(self):
        psql(self.pg_port, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        filestore = self.data_dir / "filestore" / self.db
        if filestore.is_dir():
            subprocess.run(["rm", "-rf", str(filestore)], check=False)


class OdooServer:
    """One ``odoo-bin`` server process (threaded, with cron threads)."""

    _numbers = itertools.count(1)

    def __init__(self, env: OdooEnv, cron_threads=2, extra=()):
        self.env = env
        self.cron_threads = cron_threads
        self.extra = list(extra)
        self.number = next(self._numbers)
        self.port = None
        self.process = None
        self.log = env.log_dir / f"server-{self.number}.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=120):
        self.port = free_port()
        flags = [
            *self.env.base_flags(),
            "--db-filter",
            f"^{self.env.db}$",
            "--http-interface",
            "127.0.0.1",
            "--http-port",
            str(self.port),
            "--gevent-port",
            str(free_port()),
            "--workers",
            "0",
            "--max-cron-threads",
            str(self.cron_threads),
            # /jsonrpc is deprecated in Odoo 19 and says so on every call.
            "--log-handler",
            "odoo.addons.rpc.controllers.jsonrpc:ERROR",
            *self.extra,
        ]
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*self.env.command, *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env.process_env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(
                    f"Odoo server {self.number} exited with "
                    f"{self.process.returncode}: see {self.log}"
                )
            try:
                if requests.get(self.url + "/web/version", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise HarnessError(f"Odoo server {self.number} did not answer: see {self.log}")

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        """SIGKILL: no cleanup, no commit, like a crash."""
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if not self.alive:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class Rpc:
    """``/jsonrpc`` client: ``execute_kw`` as a user (one transaction per call)."""

    def __init__(self, url, db, login="admin", password="admin", timeout=300):
        self.url = url.rstrip("/") + "/jsonrpc"
        self.db = db
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self.ids = itertools.count(1)
        self.uid = self.call("common", "login", db, login, password)
        if not self.uid:
            raise HarnessError(f"login {login!r} refused on {db}")

    def call(self, service, method, *args):
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": args},
            "id": next(self.ids),
        }
        response = self.session.post(self.url, json=payload, timeout=self.timeout)
        response.raise_for_status()
        data = response.json()
        if data.get("error"):
            error = data["error"].get("data") or {}
            raise RpcError(
                error.get("name", "error"),
                error.get("message") or data["error"].get("message"),
            )
        return data.get("result")

    def __call__(self, model, method, *args, **kwargs):
        return self.call(
            "object",
            "execute_kw",
            self.db,
            self.uid,
            self.password,
            model,
            method,
            list(args),
            kwargs,
        )

    def ref(self, xmlid):
        """Database id of ``xmlid`` (``_xmlid_to_res_id`` is private over RPC)."""
        module, name = xmlid.split(".", 1)
        return self("ir.model.data", "check_object_reference", module, name)[1]
