"""Requests of a configuration: records, units, headers, sending, logs.

``bj.api.sync.request.mixin`` is inherited by ``bj.api.sync.config`` only. It
turns records into requests (one per record, or per page) with the mapping
engine (``mapping.py``), sends them through the transport (``tools/transport.py``)
and logs each exchange. Hooks other mixins override (calling ``super()``):

* ``_prepare_request(unit, timeout)``: the transport request of one unit;
* ``_get_secrets()``: secret values to scrub from anything stored;
* ``_get_auth_headers_<auth_type>()``: the authentication headers;
* ``_after_send(jobs, results)``: react to results (renew a token, resend);
* ``_concurrency_limit()``: requests of one configuration in flight at once.
"""

import functools
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from requests.structures import CaseInsensitiveDict

from odoo import api, fields, models, release, tools
from odoo.exceptions import UserError, ValidationError
from odoo.fields import Domain
from odoo.modules.module import get_manifest
from odoo.tools.safe_eval import safe_eval
from odoo.tools.safe_eval import time as safe_time

from ..exceptions import SyncError
from ..mapping import Mapping
from ..tools import jsonenc, sandbox, transport
from ..tools.redact import redact_headers, redact_text, redact_url

_logger = logging.getLogger(__name__)

#: Records whose objects are built together when each is sent on its own.
BUILD_CHUNK = 100
#: Events fired by automation rules and scheduled syncs: their payloads are
#: built with the rights of the configuration's Run As user when it has one.
UNATTENDED_EVENTS = ("create", "write", "create_or_write", "unlink", "cron")


@functools.cache
def _module_version():
    """The addon's version from its manifest, for the User-Agent header."""
    manifest = get_manifest("bj_api_sync") or {}
    return manifest.get("version") or release.major_version


@dataclass
class Unit:
    """One request to send: its records and body (or the error that keeps it
    from being sent), its URL and, once prepared, its Idempotency-Key."""

    records: object
    body: object = None
    url: str | None = None
    error: str | None = None
    body_text: str | None = None
    idempotency_key: str | None = None
    extra: dict = field(default_factory=dict)


class BjApiSyncRequestMixin(models.AbstractModel):
    _name = "bj.api.sync.request.mixin"
    _description = "BJ API: requests of a configuration"

    # ------------------------------------------------------------------
    # Record selection
    # ------------------------------------------------------------------

    def _get_domain_eval_context(self):
        """Names a filter domain may use: values only. No record (such as
        ``user``) is offered, whose methods a domain could call: BJ API Managers
        who are not Settings admins write domains (SPEC §9)."""
        return {
            "datetime": datetime,
            "date": date,
            "timedelta": timedelta,
            "relativedelta": relativedelta,
            "time": safe_time,
            "context_today": lambda: fields.Date.context_today(self),
            "uid": self.env.uid,
        }

    def _get_records_domain(self):
        """Return the evaluated and validated filter domain as a ``Domain``.

        :raises ValidationError: naming the configuration when the domain does not
            parse or names an unknown field
        """
        self.ensure_one()
        text = (self.filter_domain or "").strip() or "[]"
        try:
            value = safe_eval(text, self._get_domain_eval_context())
            domain = Domain(value)
            if self.model_name:
                domain.validate(self.env[self.model_name])
        except Exception as error:  # noqa: BLE001 - any failure is a bad domain
            raise ValidationError(
                self.env._(
                    "Filter Domain of %(name)r is not valid: %(error)s",
                    name=self.name,
                    error=error,
                )
            ) from None
        return domain

    def _get_matching_records(self, limit=None):
        """Return the records of the configuration's model matching its domain."""
        self.ensure_one()
        return self.env[self.model_name].search(self._get_records_domain(), limit=limit)

    def _filter_records(self, records):
        """Keep the given records that match the domain, in their original order."""
        domain = self._get_records_domain()
        if domain.is_true():
            return records
        matching = set(
            records.with_context(active_test=False)
            .search(Domain("id", "in", records.ids) & domain)
            .ids
        )
        return records.filtered(lambda r: r.id in matching)

    def _records_for_build(self, records, event):
        """``records`` in the environment whose rights read them and run the
        mapping code (SPEC §9), after checking that it may read them.

        Automation rules and scheduled syncs use the configuration's Run As user
        when set; everything else uses the caller. Never the superuser flag: a
        caller in ``sudo()`` (automation rules run their actions so) is brought
        back to its own user's rights.

        :raises AccessError: when that user may not read every record
        """
        self.ensure_one()
        run_as = self.sudo().run_as_user_id
        if run_as and event in UNATTENDED_EVENTS:
            env = records.env(user=run_as.id, su=False)
        else:
            env = records.env(su=False)
        records = records.with_env(env)
        if records:
            records.check_access("read")
        return records

    # ------------------------------------------------------------------
    # Requests: units, headers, prepared requests
    # ------------------------------------------------------------------

    def _unit_size(self):
        return self.page_size if self.is_paginated else 1

    def _iter_pages(self, records, size=None):
        """Yield the records in chunks with their own prefetch set (request-sized
        pages by default): each field is then read once per chunk."""
        size = size or self._unit_size()
        for start in range(0, len(records), size):
            page = records[start : start + size]
            yield page.with_prefetch(page._ids)

    def _prepare_units(self, records):
        """Yield one :class:`Unit` per request to send.

        Not paginated: one unit per record, body = its object. Paginated: one
        unit per page, body = the array of the page's objects; records whose
        object failed get a unit of their own carrying the error. Records are
        read, and code runs, with the rights of ``records``' environment.
        """
        self.ensure_one()
        model = records.browse()
        mapping = Mapping(self, records.env)
        placeholders = transport.url_placeholders(self.request_url or "")
        # One request per record still builds the objects by chunks, so that the
        # ORM reads each field once per chunk, not once per record.
        size = None if self.is_paginated else BUILD_CHUNK
        for page in self._iter_pages(records, size):
            objects, errors = mapping.build_objects_isolated(page)
            if self.is_paginated:
                good = page.browse(
                    [r.id for r, err in zip(page, errors, strict=True) if not err]
                )
                for record, error in zip(page, errors, strict=True):
                    if error:
                        yield Unit(record, error=str(error))
                if good:
                    body = [
                        o for o, err in zip(objects, errors, strict=True) if not err
                    ]
                    yield self._finish_unit(
                        mapping, model, good, body, self.request_url
                    )
                continue
            for record, obj, error in zip(page, objects, errors, strict=True):
                if error:
                    yield Unit(record, error=str(error))
                    continue
                url = self.request_url
                if placeholders:
                    url = transport.render_url(
                        url, mapping.placeholder_values(record, placeholders)
                    )
                yield self._finish_unit(mapping, model, record, obj, url)

    def _finish_unit(self, mapping, model, records, body, url):
        """The unit of one request: the script applied, the body encoded once
        (a body JSON cannot carry, NaN or a non-text key, is this unit's error
        rather than anybody's failed transaction)."""
        unit = Unit(records, body=body, url=url)
        if self.python_script:
            context = mapping.script_context(model, records)
            context["request_data"] = body
            try:
                result = sandbox.run(self.python_script, context, evaluate=True)
            except Exception as error:  # noqa: BLE001
                unit.error = self.env._("Python Script failed: %s", error)
                return unit
            if result is not sandbox.NO_RESULT and result is not None:
                unit.body = result
        try:
            unit.body_text = jsonenc.dumps(unit.body)
        except (ValueError, TypeError, RecursionError) as error:
            unit.error = self.env._("The payload cannot be sent as JSON: %s", error)
        return unit

    def _prepare_headers(self, idempotency_key):
        """Default headers, then custom headers (override), then authentication
        (override), names compared without case."""
        self.ensure_one()
        headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"bj_api_sync/{_module_version()}",
                "Idempotency-Key": idempotency_key,
            }
        )
        for header in self.sudo().header_ids:
            headers[header.key.strip()] = header.value or ""
        headers.update(getattr(self, f"_get_auth_headers_{self.auth_type}")())
        return dict(headers.items())

    @api.model
    def _module_version(self):
        return _module_version()

    def _get_secrets(self):
        """Secret values of this configuration, to scrub from anything stored
        (here: secret-looking header and parameter values)."""
        self.ensure_one()
        return list(self._get_static_secrets())

    @tools.ormcache("self.id")
    def _get_static_secrets(self):
        """The secret-looking header and parameter values, cached until a
        header or parameter changes."""
        config = self.sudo()
        secrets = [h.value for h in config.header_ids if h.is_secret]
        secrets += [p.value for p in config.param_ids if p.is_secret]
        return tuple(s for s in secrets if s)

    def _prepare_request(self, unit, timeout=None):
        """Turn a unit into a transport request (plain data). GET sends no body:
        its query string is the parameters plus, when not paginated, the object's
        top-level scalar values (the transport writes booleans as true/false)."""
        self.ensure_one()
        method = self.http_method_ids.name
        unit.idempotency_key = unit.idempotency_key or str(uuid.uuid4())
        params = [(p.key, p.value or "") for p in self.sudo().param_ids]
        body = None
        if method == "GET":
            data = unit.body
            if data is None and unit.body_text:
                data = json.loads(unit.body_text)
            if not self.is_paginated and isinstance(data, dict):
                params += [
                    (name, value)
                    for name, value in data.items()
                    if isinstance(value, (str, int, float))
                ]
        else:
            body = (unit.body_text or jsonenc.dumps(unit.body)).encode()
        return transport.OutboundRequest(
            method=method,
            url=unit.url,
            headers=self._prepare_headers(unit.idempotency_key),
            body=body,
            params=params or None,
            connect_timeout=self.connect_timeout,
            read_timeout=timeout or self.read_timeout,
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
        )

    def _session_key(self):
        # Sessions carry no configuration (headers, timeouts and retries are set
        # per call), so one per configuration and thread is enough.
        return (self.env.cr.dbname, self.id)

    def _concurrency_limit(self):
        """Requests of this configuration that may be in flight at once."""
        return 1

    def _get_session(self):
        return transport.DEFAULT_POOL.get(self._session_key())

    # ------------------------------------------------------------------
    # Sending and logging
    # ------------------------------------------------------------------

    def _check_sendable(self, records=None):
        """Raise a UserError naming what keeps this configuration from sending."""
        self.ensure_one()
        problems = []
        if self.request_type != "out":
            problems.append(self.env._("it is not an outbound (Out) configuration"))
        if not self.request_url:
            problems.append(self.env._("it has no Request URL"))
        if len(self.http_method_ids) != 1:
            problems.append(self.env._("it needs exactly one HTTP method"))
        if not self.line_ids:
            problems.append(self.env._("it has no field mappings"))
        if records is not None and records._name != self.model_name:
            problems.append(
                self.env._(
                    "it maps %(model)s records, not %(given)s",
                    model=self.model_name,
                    given=records._name,
                )
            )
        if problems:
            raise UserError(
                self.env._(
                    "Configuration %(name)r cannot send: %(problems)s.",
                    name=self.name,
                    problems="; ".join(problems),
                )
            )

    def _make_outbound_http_request(self, records, config_id=None, timeout=None):
        """Send ``records`` now, synchronously; return the ``bj.api.log`` rows.

        Keeps only the records matching the filter domain, sends one request per
        record (or per page when paginated) and logs each one. HTTP errors,
        timeouts and refused connections are logged, never raised.

        :param records: record or recordset of the configuration's model
        :param config_id: configuration id (or record) to use instead of ``self``
        :param timeout: read timeout (s) for this call, overriding the config's
        :raises UserError: when the configuration cannot send at all
        """
        config = self
        if config_id:
            config = (
                config_id
                if isinstance(config_id, models.BaseModel)
                else self.browse(config_id)
            )
        config.ensure_one()
        config._check_sendable(records)
        records = config._records_for_build(records, "manual")
        config = config.sudo()
        records = config._filter_records(records)
        log_vals = []
        for unit in config._prepare_units(records):
            log_vals.append(config._send_unit(unit, timeout=timeout))
        return self.env["bj.api.log"].sudo().create(log_vals).sudo(False)

    def _send_unit(self, unit, timeout=None):
        """Send one unit (or record its build error); return log values."""
        self.ensure_one()
        if not unit.error:
            try:
                request = self._prepare_request(unit, timeout=timeout)
            except SyncError as error:
                unit.error = str(error)
        if unit.error:
            return self._prepare_log_values(unit, None, None)
        [result] = self._send_prepared([(self, unit, request)])
        values = self._prepare_log_values(unit, request, result)
        if result.outcome == "success":
            problem = self._write_back(unit.records, result.response_text)
            if problem:
                values["write_back_error"] = problem
        return values

    def _write_back(self, records, response_text):
        """Hook: read a 2xx response back into ``records`` (the records of one
        request); return None or why it could not be done (see the import
        mixin)."""
        return None

    @api.model
    def _send_prepared(self, jobs):
        """Send prepared requests (concurrently when several); return results.

        :param jobs: list of ``(config, unit, request)``
        :return: one result per job, ``None`` for a request left unsent after a
            retryable failure of the same configuration (see ``send_many``)
        """
        results = transport.send_many(
            [(request, config._session_key()) for config, _unit, request in jobs],
            limits={
                config._session_key(): config._concurrency_limit()
                for config, _unit, _request in jobs
            },
        )
        results = self._after_send(jobs, results)
        for (config, _unit, request), result in zip(jobs, results, strict=True):
            if result and result.outcome != "success":
                _logger.info(
                    "bj_api_sync: %s %s for config %s: %s",
                    request.method,
                    redact_url(result.url or request.url),
                    config.id,
                    result.error,
                )
        return results

    @api.model
    def _after_send(self, jobs, results):
        """Hook to react to results (e.g. renew a token on 401 and send again)."""
        return results

    def _prepare_log_values(self, unit, request, result, secrets=None):
        """Values of the ``bj.api.log`` row for one request, secrets removed.

        :param secrets: this configuration's secrets when the caller has them
        """
        self.ensure_one()
        records = unit.records
        if secrets is None:
            secrets = self._get_secrets()
        values = {
            "config_id": self.id,
            "res_model": records._name,
            "res_ids": ",".join(str(i) for i in records.ids),
            "request_method": self.http_method_ids[:1].name,
            "request_url": unit.url or self.request_url,
        }
        if request is None:
            values.update(
                state="error",
                error_message=unit.error,
                attempts=0,
            )
            return self.env["bj.api.log"]._scrub_values(values, secrets)
        values.update(
            request_url=result.url or request.url,
            request_headers=request.headers,
            request_body=request.body.decode() if request.body else False,
            status_code=result.status_code or 0,
            response_body=result.response_text,
            duration_ms=result.elapsed_ms,
            attempts=result.attempts,
            state="success" if result.outcome == "success" else "error",
            error_message=result.error if result.outcome != "success" else False,
            idempotency_key=unit.idempotency_key,
            outcome=result.outcome,
            retry_after=result.retry_after or 0.0,
        )
        return self.env["bj.api.log"]._scrub_values(values, secrets)

    def _redacted_headers(self, headers):
        return redact_text(
            jsonenc.dumps_pretty(redact_headers(headers)), self._get_secrets()
        )

    def _prepare_preview_values(self, records):
        """What the first request would look like, secrets masked; nothing sent."""
        units = list(self._prepare_units(records)) if records else []
        values = {"config_id": self.id, "record_count": len(records)}
        if not units:
            values["error_message"] = self.env._(
                "No %(model)s record matches the filter domain.", model=self.model_name
            )
            return values
        unit = units[0]
        if unit.error:
            values["error_message"] = unit.error
            return values
        request = self._prepare_request(unit)
        secrets = self._get_secrets()
        url = transport.build_url(request.url, request.params)
        values.update(
            request_method=request.method,
            request_url=redact_text(redact_url(url), secrets),
            request_headers=self._redacted_headers(request.headers),
            request_body=redact_text(jsonenc.dumps_pretty(unit.body), secrets)
            if request.body is not None
            else False,
        )
        return values
