"""Odoo for the e2e and bench scripts: where it is, databases, servers, JSON-RPC.

``Odoo()`` asks ``scripts/devenv.sh`` where things are, so the scripts follow the
same conventions as ``make test`` (``ODOO_SRC`` or the importable ``odoo``
package; PostgreSQL reused on 127.0.0.1:``$PGPORT`` or started privately; role
``$BJ_DB_USER``; the addon mounted under ``.addons/``; ``$PYTHON``). Odoo itself
runs in ``odoo-bin`` child processes: nothing here imports it. ::

    odoo = Odoo()
    db = unique_db_name("bj_e2e")
    odoo.create_db(db)  # odoo-bin -i bj_api_sync, no demo data
    server = OdooServer(odoo, db, cron_threads=2).start()
    rpc = JsonRpc(server.url, db)  # admin / admin
    rpc.call("res.partner", "search_count", [])
    server.stop()
    odoo.drop_db(db)
"""

import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .processes import die_with_parent, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
DEVENV = ROOT / "scripts" / "devenv.sh"
RUN_DIR = ROOT / ".run"
ADDON = os.environ.get("BJ_ADDON_NAME", "bj_api_sync")
DB_HOST = "127.0.0.1"


class OdooError(RuntimeError):
    """Odoo or PostgreSQL could not be found, set up, started or reached."""


class RpcError(OdooError):
    """An error answered over JSON-RPC; ``name`` is the exception's dotted name."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def devenv(command):
    """Run ``scripts/devenv.sh <command>`` and return the last line it printed."""
    done = subprocess.run(
        ["bash", str(DEVENV), command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise OdooError(
            f"scripts/devenv.sh {command} failed ({done.returncode}): "
            f"{done.stderr.strip()}"
        )
    return lines[-1].strip()


def unique_db_name(prefix):
    """``<prefix>_<date>_<time>_<pid>_<random>``: no two runs share a database."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    return f"{prefix}_{stamp}_{os.getpid()}_{random.randrange(100_000)}"


class Odoo:
    """Where Odoo, PostgreSQL and the addon are, and the databases on that server."""

    def __init__(self, data_dir=None):
        self.tree = Path(devenv("find-odoo"))
        self.pg_port = int(devenv("ensure-pg"))
        self.addons_path = devenv("addons-path")
        self.db_user = os.environ.get("BJ_DB_USER", "odoo")
        self.data_dir = Path(data_dir or RUN_DIR / "odoo-data")
        python = os.environ.get("PYTHON") or sys.executable
        odoo_bin = self.tree / "odoo-bin"
        self.command = (
            [python, str(odoo_bin)] if odoo_bin.exists() else [python, "-m", "odoo"]
        )
        self.process_env = dict(os.environ)
        if os.environ.get("ODOO_SRC"):
            # devenv.sh found ODOO_SRC's tree: make `import odoo` resolve to it too.
            paths = [str(self.tree), os.environ.get("PYTHONPATH", "")]
            self.process_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)

    def flags(self, db=None):
        """``odoo-bin`` options for this PostgreSQL, addons path and data folder,
        HTTP on 127.0.0.1 only; with ``db``, that database only."""
        flags = [
            f"--db_host={DB_HOST}",
            f"--db_port={self.pg_port}",
            f"--db_user={self.db_user}",
            f"--addons-path={self.addons_path}",
            f"--data-dir={self.data_dir}",
            "--http-interface=127.0.0.1",
        ]
        if db:
            # --database alone exposes that database only, and answers
            # without listing the databases of the cluster at each request.
            flags += [f"--database={db}"]
        return flags

    def query(self, sql, params=(), db="postgres"):
        """Run one statement on ``db`` as the Odoo role (autocommit); its rows."""
        import psycopg2  # noqa: PLC0415 -- Odoo's driver: `--help` works without it

        try:
            conn = psycopg2.connect(
                host=DB_HOST, port=self.pg_port, user=self.db_user, dbname=db
            )
        except psycopg2.Error as error:
            raise OdooError(f"cannot connect to {db}: {error}") from error
        conn.autocommit = True
        try:
            with conn.cursor() as cr:
                cr.execute(sql, params)
                return cr.fetchall() if cr.description else []
        except psycopg2.Error as error:
            raise OdooError(f"PostgreSQL on {db}: {error}") from error
        finally:
            conn.close()

    def db_exists(self, db):
        """True when the database ``db`` exists."""
        return bool(self.query("SELECT 1 FROM pg_database WHERE datname = %s", [db]))

    def create_db(self, db, modules=ADDON, demo=False, log=None, timeout=900):
        """Create ``db`` and install ``modules`` (comma-separated) with ``odoo-bin
        -i``, without demo data unless ``demo``; fail unless the addon ends up
        installed. Returns the path of the install log."""
        if self.db_exists(db):
            raise OdooError(f"database {db} exists already")
        log = Path(log or RUN_DIR / f"odoo-install-{db}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *self.command,
            *self.flags(db),
            f"--init={modules}",
            "--stop-after-init",
            "--no-http",
            "--max-cron-threads=0",
            "--log-level=warn",
        ]
        if demo:
            command.append("--with-demo")
        with open(log, "wb") as out:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.process_env,
                timeout=timeout,
                check=False,
            )
        state = None
        if self.db_exists(db):
            sql = "SELECT state FROM ir_module_module WHERE name = %s"
            state = next(iter(self.query(sql, [ADDON], db=db)), [None])[0]
        if done.returncode or state != "installed":
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise OdooError(
                f"installing {modules} into {db} failed (exit {done.returncode}, "
                f"{ADDON} {state or 'absent'}): see {log}\n{tail}"
            )
        return log

    def drop_db(self, db):
        """Drop ``db`` (closing its connections) and its filestore."""
        quoted = '"' + db.replace('"', '""') + '"'
        self.query(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        shutil.rmtree(self.data_dir / "filestore" / db, ignore_errors=True)


class OdooServer:
    """One ``odoo-bin`` HTTP server on a free port of 127.0.0.1: threaded, or
    prefork with ``workers`` HTTP worker processes (``--workers``).

    Its output goes to ``log`` (``<log_dir>/server-<number>.log``); it runs in its
    own session (Ctrl-C reaches the script, which stops it) and gets SIGTERM if
    the script dies.
    """

    _numbers = itertools.count(1)

    def __init__(self, odoo, db, cron_threads=0, extra=(), log_dir=None, workers=0):
        self.odoo = odoo
        self.db = db
        self.cron_threads = cron_threads
        self.workers = workers
        self.extra = list(extra)
        self.number = next(self._numbers)
        log_dir = Path(log_dir or RUN_DIR / "servers" / db)
        self.log = log_dir / f"server-{self.number}.log"
        self.port = None
        self.process = None

    @property
    def url(self):
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self):
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout=120):
        """Start the server and wait until ``/web/health`` answers; returns it."""
        self.port = free_port()
        command = [
            *self.odoo.command,
            *self.odoo.flags(self.db),
            f"--http-port={self.port}",
            f"--gevent-port={free_port()}",
            f"--workers={self.workers}",
            f"--max-cron-threads={self.cron_threads}",
            # /jsonrpc is deprecated in Odoo 19 and says so on every call.
            "--log-handler=odoo.addons.rpc.controllers.jsonrpc:ERROR",
            *self.extra,
        ]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.odoo.process_env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OdooError(
                    f"Odoo server {self.number} exited with "
                    f"{self.process.returncode}: see {self.log}"
                )
            with contextlib.suppress(requests.RequestException):  # not up yet
                if requests.get(f"{self.url}/web/health", timeout=2).ok:
                    return self
            time.sleep(0.3)
        self.stop()
        raise OdooError(f"Odoo server {self.number} did not answer: see {self.log}")

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL if it does not stop within ``timeout`` seconds."""
        stop_process(self.process, timeout)

    def kill(self):
        """SIGKILL to its process group (prefork workers and all): no cleanup, no
        commit, like a crash."""
        if self.alive:
            # The server leads its own session: its group is its pid.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


class JsonRpc:
    """A ``/jsonrpc`` client logged in as one user; each call is one transaction,
    committed by Odoo, or rolled back when it answers an error (``RpcError``)."""

    def __init__(self, url, db, login="admin", password="admin", timeout=600):
        self.url = url.rstrip("/") + "/jsonrpc"
        self.db = db
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self.ids = itertools.count(1)
        self.uid = self._service("common", "login", db, login, password)
        if not self.uid:
            raise OdooError(f"login {login!r} refused on {db}")

    def _service(self, service, method, *args):
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

    def call(self, model, method, *args, **kwargs):
        """``model.method(*args, **kwargs)`` as the user (``execute_kw``)."""
        return self._service(
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
        return self.call("ir.model.data", "check_object_reference", module, name)[1]
