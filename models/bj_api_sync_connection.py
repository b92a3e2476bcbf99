"""Mutual TLS and the Test Connection button of a configuration (SPEC §14).

``bj.api.sync.connection.mixin`` is inherited by ``bj.api.sync.config`` only:

* mutual TLS: ``client_cert`` / ``client_key`` (PEM, manager-only secrets) and
  ``ca_bundle`` (PEM, verifies the server instead of the default store),
  checked at save with ``cryptography`` (``tools/tls.py``) and written to
  private files (0600 in a 0700 directory of the data dir) that every request
  of the configuration uses: immediate, queued, import pages, OAuth2 token
  requests and Test Connection;
* Test Connection: resolve, connect, TLS handshake (``tools/probe.py``), then
  the configured method (GET/HEAD, else OPTIONS) with the authentication
  headers and no record data; the outcome in a notification and a log row.

Hooks it overrides: ``_prepare_request`` (TLS options of the request),
``_session_key`` (a pooled session per TLS setting), ``_get_secrets`` (its
PEM). It provides ``_attach_tls(request)``, which the OAuth2 token request
calls too.
"""

import contextlib
import logging
import os
import tempfile
import time
from collections import namedtuple
from datetime import datetime, timezone

from odoo import api, fields, models, tools
from odoo.exceptions import UserError, ValidationError
from odoo.tools import config as odoo_config

from ..exceptions import SyncError
from ..tools import probe, signing, tls, transport
from ..tools.redact import redact_text, redact_url
from .bj_api_sync_auth import SECRET_GROUP
from .bj_api_sync_request import Unit

_logger = logging.getLogger(__name__)

TLS_FIELDS = ("client_cert", "client_key", "ca_bundle")
#: Folder of the data dir (or, failing that, of the temporary dir) holding the
#: PEM files, one private subfolder per database.
TLS_DIR = "bj_api_sync_tls"
#: Characters of the server's answer shown in the Test Connection notification.
ANSWER_PREVIEW = 300
#: Methods Test Connection sends as configured; any other is replaced by OPTIONS.
SAFE_METHODS = ("GET", "HEAD")

#: The files of one configuration's TLS settings: ``fingerprint`` tells them
#: apart, ``client_cert`` is ``(cert path, key path)`` or None, ``ca_bundle``
#: a path or None.
TlsFiles = namedtuple("TlsFiles", "fingerprint client_cert ca_bundle")


class BjApiSyncConnectionMixin(models.AbstractModel):
    _name = "bj.api.sync.connection.mixin"
    _description = "BJ API: TLS settings and connection test of a configuration"

    client_cert = fields.Text(
        string="Client Certificate",
        groups=SECRET_GROUP,
        copy=False,
        help="PEM certificate presented to the server (mutual TLS), optionally "
        "followed by its intermediate certificates. Requires the Client Key.",
    )
    client_key = fields.Text(
        groups=SECRET_GROUP,
        copy=False,
        help="PEM private key of the Client Certificate, unencrypted.",
    )
    ca_bundle = fields.Text(
        string="CA Bundle",
        help="PEM certificates of the authorities that signed the server's "
        "certificate: the server is verified against these instead of the "
        "system's store (a private CA). Empty: the system's store.",
    )

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains(*TLS_FIELDS)
    def _check_tls_material(self):
        """PEM that parses, a key that matches its certificate, never one
        without the other (refused at save, naming the field)."""
        for config in self.sudo():
            cert, key, ca = config.client_cert, config.client_key, config.ca_bundle
            checks = [
                ("client_cert", cert, tls.load_certificates),
                ("client_key", key, tls.load_private_key),
                ("ca_bundle", ca, tls.load_certificates),
            ]
            for name, text, load in checks:
                if text:
                    try:
                        load(text)
                    except tls.PemError as error:
                        config._raise_tls_error(name, str(error))
            if cert and not key:
                config._raise_tls_error(
                    "client_key", self.env._("is required with a Client Certificate")
                )
            if key and not cert:
                config._raise_tls_error(
                    "client_cert", self.env._("is required with a Client Key")
                )
            if cert and key:
                try:
                    tls.check_client_pair(cert, key)
                except tls.PemError as error:
                    config._raise_tls_error("client_key", str(error))

    def _raise_tls_error(self, name, problem):
        raise ValidationError(
            self.env._(
                "Configuration %(name)r: %(field)s: %(problem)s.",
                name=self.name,
                field=self._fields[name]._description_string(self.env),
                problem=problem,
            )
        )

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------

    @api.model
    def _normalize_tls_values(self, vals):
        """PEM in its canonical form (a PEM pasted into a one-line password
        input lost its line breaks); text that is no PEM is left for the
        constraint to refuse, naming the field."""
        for name in TLS_FIELDS:
            if vals.get(name):
                with contextlib.suppress(tls.PemError):
                    vals[name] = tls.normalize_pem(vals[name])
            elif name in vals:
                vals[name] = False

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._normalize_tls_values(vals)
        configs = super().create(vals_list)
        if any(vals.get(name) for vals in vals_list for name in TLS_FIELDS):
            configs._sync_tls_files()
        return configs

    def write(self, vals):
        self._normalize_tls_values(vals)
        result = super().write(vals)
        if set(TLS_FIELDS) & set(vals):
            self.env.registry.clear_cache()  # _get_tls_files
            self._sync_tls_files()
        return result

    def unlink(self):
        ids = self.ids
        result = super().unlink()
        try:
            store = self._tls_store()
        except SyncError:
            return result
        for config_id in ids:
            store.purge(config_id)
        return result

    def _sync_tls_files(self):
        """Write the current PEM files and remove the stale ones (a PEM
        changed or cleared). A file system problem never prevents saving: the
        next request writes the files again, or fails with the reason."""
        for config in self:
            try:
                config._write_tls_files()
            except SyncError as error:
                _logger.warning("bj_api_sync: config %s: %s", config.id, error)
        try:
            store = self._tls_store()
        except SyncError:
            return
        ids = self.ids

        def purge():
            # Rolled back: no file of a PEM the database does not hold (the
            # ones it holds are written again on first use).
            for config_id in ids:
                store.purge(config_id)

        self.env.cr.postrollback.add(purge)

    # ------------------------------------------------------------------
    # TLS files
    # ------------------------------------------------------------------

    @api.model
    def _tls_store(self):
        """The :class:`~..tools.tls.PemFileStore` of this database: a private
        folder of the data dir, else of the temporary dir.

        :raises SyncError: when neither can be made private
        """
        dbname = self.env.cr.dbname
        bases = [
            os.path.join(odoo_config["data_dir"], TLS_DIR),
            os.path.join(tempfile.gettempdir(), f"{TLS_DIR}-{os.geteuid()}"),
        ]
        problems = []
        for base in bases:
            root = os.path.join(base, dbname)
            try:
                # both levels ours and 0700: nobody else can swap the folder
                tls.private_dir(base)
                tls.private_dir(root)
            except OSError as error:
                problems.append(str(error))
                continue
            return tls.PemFileStore(root)
        raise SyncError(
            self.env._("No private folder for the TLS files: %s", "; ".join(problems))
        )

    def _write_tls_files(self):
        """Write this configuration's PEM files as needed (mode 0600), remove
        its stale ones; return :data:`TlsFiles`, or None without TLS settings.

        :raises SyncError: when the files cannot be written
        """
        self.ensure_one()
        config = self.sudo()
        cert, key, ca = config.client_cert, config.client_key, config.ca_bundle
        try:
            store = self._tls_store()
            client = None
            if cert and key:
                client = (
                    store.save(self.id, "cert", cert),
                    store.save(self.id, "key", key),
                )
            else:
                store.purge(self.id, "cert")
                store.purge(self.id, "key")
            if ca:
                ca_path = store.save(self.id, "ca", ca)
            else:
                ca_path = None
                store.purge(self.id, "ca")
        except OSError as error:
            raise SyncError(
                self.env._(
                    "Configuration %(name)r: the TLS files cannot be written: "
                    "%(error)s",
                    name=self.name,
                    error=error,
                )
            ) from None
        if not client and not ca_path:
            return None
        return TlsFiles(tls.fingerprint(cert, key, ca), client, ca_path)

    @tools.ormcache("self.id")
    def _get_tls_files(self):
        """:data:`TlsFiles` of this configuration (files written on first
        use), or None; cached until a TLS field changes."""
        return self._write_tls_files()

    def _attach_tls(self, request):
        """Give ``request`` (a ``transport.OutboundRequest``) this
        configuration's client certificate and CA bundle; return it."""
        self.ensure_one()
        files = self._get_tls_files()
        if files and not all(
            os.path.exists(path)
            for path in (*(files.client_cert or ()), files.ca_bundle)
            if path
        ):
            files = self._write_tls_files()  # removed behind our back
        if files:
            request.client_cert = files.client_cert
            request.ca_bundle = files.ca_bundle
        return request

    # ------------------------------------------------------------------
    # Request hooks
    # ------------------------------------------------------------------

    def _prepare_request(self, unit, timeout=None):
        return self._attach_tls(super()._prepare_request(unit, timeout=timeout))

    def _session_key(self):
        # requests keeps a client certificate and CA bundle on a session's
        # connection pools: one pooled session per TLS setting.
        key = super()._session_key()
        files = self._get_tls_files()
        return (*key, files.fingerprint) if files else key

    def _get_secrets(self):
        secrets = super()._get_secrets()
        config = self.sudo()
        secrets += [config.client_key, config.client_cert]
        return [s for s in secrets if s]

    # ------------------------------------------------------------------
    # Test Connection
    # ------------------------------------------------------------------

    def action_test_connection(self):
        """Resolve the host, connect and send the configured method (GET or
        HEAD, else OPTIONS) to the Request URL with the authentication headers
        and no record data; show the outcome (status, latency, TLS certificate
        expiry, the server's answer) in a notification and log it. BJ API
        Managers only."""
        self.ensure_one()
        self._check_manager_access()
        config = self.sudo()
        config._check_testable()
        report = config._test_connection()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": self.env._("Test Connection: %s", config.name),
                "message": report["message"],
                "type": report["level"],
                "sticky": report["level"] != "success",
            },
        }

    def _check_testable(self):
        """Raise a UserError naming what keeps this configuration from being
        tested (mapping lines are not needed)."""
        self.ensure_one()
        problems = self._request_problems()
        if problems:
            raise UserError(
                self.env._(
                    "Configuration %(name)r cannot be tested: %(problems)s.",
                    name=self.name,
                    problems="; ".join(problems),
                )
            )

    def _test_connection_url(self):
        """The Request URL up to its first ``{placeholder}`` (no record fills
        it in)."""
        url = self.request_url or ""
        if transport.url_placeholders(url):
            url = url[: url.index("{")]
        return url

    def _test_connection(self):
        """Run the test; return a report (dict): ``ok``, ``level``
        (success/warning/danger), ``message``, ``method``, ``status_code``,
        ``elapsed_ms``, ``probe`` (``tools.probe.ProbeResult`` or None),
        ``answer``, ``error`` and ``log`` (the ``bj.api.log`` row)."""
        self.ensure_one()
        configured = self.http_method_ids[:1].name
        method = configured if configured in SAFE_METHODS else "OPTIONS"
        unit = Unit(self, body=None, url=self._test_connection_url(), body_text="")
        report = {
            "ok": False,
            "level": "danger",
            "method": method,
            "url": redact_url(unit.url),
            "status_code": None,
            "elapsed_ms": 0,
            "probe": None,
            "answer": "",
            "error": None,
        }
        Log = self.env["bj.api.log"].sudo()
        try:
            # Headers, parameters, authentication (an OAuth2 token is fetched
            # when needed), the host allow-list and TLS, as for a real request.
            request = self._prepare_request(unit)
        except SyncError as error:
            unit.error = str(error)
            values = self._prepare_log_values(unit, None, None)
            values["request_method"] = method
            report.update(error=values["error_message"], log=Log.create(values))
            report["message"] = self._test_connection_message(report)
            return report
        self._prepare_test_request(request, unit, method)
        url = transport.build_url(request.url, request.params)
        checked = probe.probe(
            url,
            request.connect_timeout,
            cert=request.client_cert,
            verify=request.ca_bundle or True,
        )
        report["probe"] = checked
        if checked.ok:
            # A fresh session: a kept-alive connection would hide a problem.
            [result] = self._after_send(
                [(self, unit, request)], [transport.send(request)]
            )
        else:
            permanent = checked.error.startswith("SSL certificate verification")
            result = transport.OutboundResult(
                status_code=None,
                attempts=1,
                elapsed_ms=checked.resolve_ms + checked.connect_ms + checked.tls_ms,
                outcome=transport.PERMANENT if permanent else transport.RETRYABLE,
                error=checked.error,
                url=url,
            )
        values = self._prepare_log_values(unit, request, result)
        values["request_method"] = method
        secrets = self._get_secrets()
        # masked before the whitespace is folded: a secret may span lines
        answer = redact_text(result.response_text or "", secrets)
        answer = " ".join(answer.split())
        if len(answer) > ANSWER_PREVIEW:
            answer = answer[: ANSWER_PREVIEW - 1] + "…"
        status = result.status_code
        report.update(
            ok=result.outcome == transport.SUCCESS,
            status_code=status,
            elapsed_ms=result.elapsed_ms,
            answer=answer,
            error=values.get("error_message") or None,
            log=Log.create(values),
        )
        if report["ok"]:
            report["level"] = "success"
        elif status and status not in (401, 403):
            report["level"] = "warning"  # the server answered: it is reachable
        report["message"] = self._test_connection_message(report)
        return report

    def _prepare_test_request(self, request, unit, method):
        """Turn a prepared request into the test's: ``method``, no body, one
        attempt, signed again for the empty body when signing is on."""
        request.method = method
        request.body = None
        request.max_retries = 0
        for name in [k for k in request.headers if k.lower() == "content-type"]:
            del request.headers[name]
        if self.sign_requests:
            request.headers.update(
                signing.signature_headers(
                    self._signing_secrets(),
                    unit.idempotency_key,
                    int(time.time()),
                    b"",
                )
            )

    def _test_connection_message(self, report):
        """The notification text of a Test Connection report."""
        parts = []
        status, target = report["status_code"], f"{report['method']} {report['url']}"
        if status in (401, 403):
            parts.append(
                self.env._(
                    "%(target)s: HTTP %(status)s in %(ms)s ms, the server refused "
                    "the credentials: check the authentication settings.",
                    target=target,
                    status=status,
                    ms=report["elapsed_ms"],
                )
            )
        elif status:
            parts.append(
                self.env._(
                    "%(target)s: HTTP %(status)s in %(ms)s ms.",
                    target=target,
                    status=status,
                    ms=report["elapsed_ms"],
                )
            )
            if not report["ok"] and report["error"]:
                parts.append(report["error"] + ".")
        else:
            parts.append(
                self.env._(
                    "%(target)s failed: %(error)s.",
                    target=target,
                    error=report["error"],
                )
            )
        checked = report["probe"]
        if checked and checked.proxy:
            parts.append(self.env._("Through the proxy %s.", checked.proxy))
        elif checked and checked.addresses:
            steps = self.env._(
                "%(host)s resolved to %(addresses)s in %(resolve)s ms",
                host=checked.host,
                addresses=", ".join(checked.addresses[:4]),
                resolve=checked.resolve_ms,
            )
            if checked.address:
                steps += self.env._("; connected in %s ms", checked.connect_ms)
            if checked.tls_version:
                steps += self.env._(
                    "; %(version)s handshake in %(ms)s ms",
                    version=checked.tls_version,
                    ms=checked.tls_ms,
                )
            parts.append(steps + ".")
        cert = checked and checked.peer_cert
        if cert:
            now = datetime.now(timezone.utc)
            when = cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
            if cert.is_expired(now):
                text = self.env._("Server certificate EXPIRED on %(date)s", date=when)
            else:
                text = self.env._(
                    "Server certificate valid until %(date)s (%(days)s days left)",
                    date=when,
                    days=cert.days_left(now),
                )
            parts.append(
                self.env._(
                    "%(text)s; subject %(subject)s, issuer %(issuer)s.",
                    text=text,
                    subject=cert.subject,
                    issuer=cert.issuer,
                )
            )
        client_cert = self.client_cert
        if client_cert:
            try:
                info = tls.certificate_info(client_cert)
            except (tls.PemError, ValueError):
                info = None
            if info:
                parts.append(
                    self.env._(
                        "Client certificate %(subject)s valid until %(date)s.",
                        subject=info.subject,
                        date=info.not_after.strftime("%Y-%m-%d %H:%M UTC"),
                    )
                )
        if report["answer"]:
            parts.append(self.env._("Answer: %s", report["answer"]))
        return " ".join(parts)
