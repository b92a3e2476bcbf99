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

import ast
import functools
import hashlib
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
from ..tools import bodyenc, jsonenc, ratelimit, sandbox, transport
from ..tools.redact import redact_headers, redact_text, redact_url

_logger = logging.getLogger(__name__)

#: Records whose objects are built together when each is sent on its own.
BUILD_CHUNK = 100
#: Events fired by automation rules and scheduled syncs: their payloads are
#: built with the rights of the configuration's Run As user when it has one.
UNATTENDED_EVENTS = ("create", "write", "create_or_write", "unlink", "cron")
#: Body formats as messages name them.
FORMAT_NAMES = {"json": "JSON", "form": "a form", "xml": "XML"}


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

    body_format = fields.Selection(
        [("json", "JSON"), ("form", "Form (URL-encoded)"), ("xml", "XML")],
        required=True,
        default="json",
        help="How POST, PUT, PATCH and DELETE bodies are written. JSON: "
        "application/json. Form: application/x-www-form-urlencoded, nested keys "
        "as a[b], list items as a[0] (a[0][b]...), true/false, null as empty. "
        "XML: application/xml, under the root tag, list items as <item>. The "
        "Content-Type header follows, unless a custom header sets it. GET sends "
        "no body.",
    )
    xml_root_tag = fields.Char(
        string="XML Root Tag",
        default=bodyenc.DEFAULT_ROOT_TAG,
        help="Root element of XML bodies (an XML name: letters, digits, '-', "
        "'_', '.', not starting with a digit).",
    )

    @api.constrains("body_format", "xml_root_tag")
    def _check_xml_root_tag(self):
        for config in self:
            tag = config.xml_root_tag
            if (tag or config.body_format == "xml") and not bodyenc.is_xml_name(tag):
                raise ValidationError(
                    self.env._(
                        "XML Root Tag of %(name)r: %(tag)r is not a valid XML "
                        "element name (letters, digits, '-', '_', '.'; no space "
                        "or ':'; not starting with a digit, '-' or '.').",
                        name=config.name,
                        tag=tag or "",
                    )
                )

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
            domain = self._constant_domain(self.model_name or "", text)
            if domain is None:
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

    @api.model
    @tools.ormcache("model_name", "text")
    def _constant_domain(self, model_name, text):
        """The validated ``Domain`` of a filter domain made of literals only
        (``[]``, ``[("active", "=", True)]``…), the same for every user and
        moment: parsed once per process. None when ``text`` uses a name
        (``uid``, ``context_today()``…) and must be evaluated each time.

        :raises ValueError: for a literal domain that is not valid
        """
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        domain = Domain(value)
        if model_name:
            domain.validate(self.env[model_name])
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

    def _prepare_units(self, records, changes=None):
        """Yield one :class:`Unit` per request to send.

        Not paginated: one unit per record, body = its object. Paginated: one
        unit per page, body = the array of the page's objects; records whose
        object failed get a unit of their own carrying the error. Records are
        read, and code runs, with the rights of ``records``' environment.

        :param changes: ``{record id: {field name: value before}}`` of records
            whose object keeps only its identifier lines, Python lines and the
            lines whose fields changed (``payload_scope = changed``), plus
            ``previous`` with ``include_previous``; such a record none of whose
            mapped fields changed gets no unit at all (see
            ``Mapping.change_scope``). Other records: their whole object.
        """
        self.ensure_one()
        model = records.browse()
        mapping = Mapping(self, records.env)
        placeholders = transport.url_placeholders(self.request_url or "")
        # One request per record still builds the objects by chunks, so that the
        # ORM reads each field once per chunk, not once per record.
        size = None if self.is_paginated else BUILD_CHUNK
        for page in self._iter_pages(records, size):
            keep = changed = None
            if changes:
                page, keep, changed = mapping.change_scope(page, changes)
                if not page:
                    continue
            objects, errors = mapping.build_objects_isolated(page, keep=keep)
            if changed and self.include_previous:
                mapping.add_previous(page, objects, errors, changed, changes)
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
        in the Body Format (a body the format cannot carry, NaN, a non-text key
        or, in XML, a key that is no element name, is this unit's error rather
        than anybody's failed transaction)."""
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
            unit.body_text = self._encode_body(unit.body)
        except (ValueError, TypeError, RecursionError) as error:
            unit.error = self.env._(
                "The payload cannot be sent as %(format)s: %(error)s",
                format=FORMAT_NAMES.get(self._sent_body_format(), "JSON"),
                error=error,
            )
        return unit

    def _sent_body_format(self):
        """The format of the text of bodies: the Body Format, but JSON for GET,
        which sends no body (its query string is read from the JSON text)."""
        if self.http_method_ids[:1].name == "GET":
            return "json"
        return self.body_format or "json"

    def _encode_body(self, body):
        """The text sent for ``body`` (see ``tools/bodyenc.py``): what
        immediate requests send, and what queued deliveries store and send."""
        return bodyenc.encode(
            body,
            self._sent_body_format(),
            self.xml_root_tag or bodyenc.DEFAULT_ROOT_TAG,
        )

    def _prepare_headers(self, idempotency_key):
        """Default headers, then custom headers (override), then authentication
        (override), names compared without case."""
        self.ensure_one()
        headers = CaseInsensitiveDict(
            {
                "Content-Type": bodyenc.content_type(self.body_format),
                "Accept": "application/json",
                "User-Agent": f"bj_api_sync/{_module_version()}",
                "Idempotency-Key": idempotency_key,
            }
        )
        for key, value in self._get_request_constants()[2]:
            headers[key] = value
        headers.update(getattr(self, f"_get_auth_headers_{self.auth_type}")())
        return dict(headers.items())

    @tools.ormcache("self.id")
    def _get_request_constants(self):
        """``(method, parameters, custom headers)`` that every request of this
        configuration repeats, read once and cached until one of them changes
        (the delivery cron prepares thousands of requests a minute); the
        method is None unless there is exactly one."""
        config = self.sudo()
        methods = config.http_method_ids
        return (
            methods.name if len(methods) == 1 else None,
            tuple((p.key, p.value or "") for p in config.param_ids),
            tuple((h.key.strip(), h.value or "") for h in config.header_ids),
        )

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
        method, params, _headers = self._get_request_constants()
        method = method or self.http_method_ids.name  # raises unless exactly one
        unit.idempotency_key = unit.idempotency_key or str(uuid.uuid4())
        params = list(params)
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
            text = unit.body_text
            if text is None:
                text = self._encode_body(unit.body)
            body = text.encode()
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
            before_attempt=self._rate_gate(),
        )

    def _rate_gate(self):
        """The gate that keeps this configuration under its
        ``rate_limit_per_second`` (None without a limit)."""
        self.ensure_one()
        interval = ratelimit.interval_for(self.sudo().rate_limit_per_second)
        if not interval:
            return None
        reserve = self.env["bj.api.sync.send.slot"].sudo()._reserver(self.id, interval)
        return ratelimit.SlotGate(reserve, interval)

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

    def _request_problems(self):
        """What keeps this configuration from making any request at all."""
        self.ensure_one()
        problems = []
        if self.request_type != "out":
            problems.append(self.env._("it is not an outbound (Out) configuration"))
        if not self.request_url:
            problems.append(self.env._("it has no Request URL"))
        if len(self.http_method_ids) != 1:
            problems.append(self.env._("it needs exactly one HTTP method"))
        return problems

    def _check_sendable(self, records=None):
        """Raise a UserError naming what keeps this configuration from sending."""
        self.ensure_one()
        problems = self._request_problems()
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

    def _make_outbound_http_request(
        self,
        records=None,
        config_id=None,
        timeout=None,
        *,
        record_ids=None,
        config_id_ref=None,
    ):
        """Send ``records`` now, synchronously; return the ``bj.api.log`` rows.

        Keeps only the records matching the filter domain, sends one request per
        record (or per page when paginated) and logs each one. HTTP errors,
        timeouts and refused connections are logged, never raised. The rows
        also answer BJET's ``result.get('success')`` (see ``bj.api.log.get``).

        Both the seed's form, ``config._make_outbound_http_request(record,
        config.id, timeout=60)``, and BJET's, ``env['bj.api.sync.config']
        ._make_outbound_http_request(record_ids=records, config_id_ref=ref)``
        (on the empty model), are accepted (SPEC §5, §13).

        :param records: record or recordset of the configuration's model, or
            ids of such records (``record_ids`` is the same, by BJET's name)
        :param config_id: configuration record, id or XML id to use instead of
            ``self`` (``config_id_ref`` is the same, by BJET's name)
        :param timeout: read timeout (s) for this call, overriding the config's
        :raises UserError: when the configuration cannot send at all, is
            unknown, or the records are not of its model
        """
        if record_ids is not None:
            if records is not None:
                raise UserError(
                    self.env._("Give either records or record_ids, not both.")
                )
            records = record_ids
        if config_id_ref is not None:
            if config_id:
                raise UserError(
                    self.env._("Give either config_id or config_id_ref, not both.")
                )
            config_id = config_id_ref
        config = self._resolve_config_ref(config_id) if config_id else self
        if not config:
            raise UserError(
                self.env._(
                    "No API configuration to send with: call this method on a "
                    "configuration or give config_id_ref."
                )
            )
        config.ensure_one()
        if records is None:
            raise UserError(self.env._("No records to send were given."))
        if not isinstance(records, models.BaseModel):
            records = config._browse_record_ids(records)
        return config._send_records(records, timeout=timeout)

    def _send_records(self, records, timeout=None, changes=None):
        """Send ``records`` of this configuration now (the work of
        :meth:`_make_outbound_http_request`); return the ``bj.api.log`` rows.

        :param changes: records sent by their changes only, as in
            :meth:`_prepare_units` (immediate automation rules, see
            ``bj_api_sync_changes.py``)
        """
        self.ensure_one()
        self._check_sendable(records)
        records = self._records_for_build(records, "manual")
        config = self.sudo()
        records = config._filter_records(records)
        units = config._prepare_units(records, changes=changes)
        if self.env.context.get("bj_api_sync_send_once"):
            units = config._units_not_sent(units)
        log_vals = [config._send_unit(unit, timeout=timeout) for unit in units]
        return self.env["bj.api.log"].sudo().create(log_vals).sudo(False)

    def _units_not_sent(self, units):
        """``units`` less those this transaction already sent, the same (same
        records, URL and body): automation rules fired again by their own
        side effects send nothing new."""
        # Post-commit data: kept until the transaction ends, savepoints or not.
        sent = self.env.cr.postcommit.data.setdefault("bj_api_sync.sent_units", set())
        for unit in units:
            if unit.error:
                yield unit
                continue
            key = (
                self.id,
                tuple(unit.records.ids),
                unit.url,
                hashlib.sha256((unit.body_text or "").encode()).hexdigest(),
            )
            if key in sent:
                continue
            sent.add(key)
            yield unit

    @api.model
    def _resolve_config_ref(self, ref):
        """The configuration ``ref`` names, in the caller's environment: a
        configuration record, an id (int or digits) or an XML id
        (``"module.name"``).

        :raises UserError: naming ``ref`` when it names no configuration
        """
        Config = self.env["bj.api.sync.config"]
        if isinstance(ref, models.BaseModel):
            config = ref if ref._name == Config._name else None
        elif isinstance(ref, int) and not isinstance(ref, bool):
            config = Config.browse(ref)
        elif isinstance(ref, str) and ref.strip().isdigit():
            config = Config.browse(int(ref))
        elif isinstance(ref, str) and "." in ref:
            record = self.env.ref(ref.strip(), raise_if_not_found=False)
            config = record if record is not None else None
            if config is not None and config._name != Config._name:
                config = None
        else:
            config = None
        if config is None or len(config) != 1 or not config.exists():
            raise UserError(self.env._("Unknown API configuration: %(ref)r.", ref=ref))
        return config

    def _browse_record_ids(self, ids):
        """The records of this configuration's model with ``ids`` (an id or a
        list of ids), in the caller's environment.

        :raises UserError: naming the values that are not ids of existing
            records
        """
        self.ensure_one()
        if isinstance(ids, (list, tuple, set, frozenset)):
            ids = list(ids)
        else:
            ids = [ids]
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
        if bad:
            raise UserError(
                self.env._(
                    "record_ids must be records or ids of %(model)s records, "
                    "not %(values)s.",
                    model=self.model_name,
                    values=", ".join(repr(value) for value in bad),
                )
            )
        records = self.env[self.model_name].browse(ids)
        missing = set(records.ids) - set(records.exists().ids)
        if missing:
            raise UserError(
                self.env._(
                    "No %(model)s record has the id(s) %(ids)s.",
                    model=self.model_name,
                    ids=", ".join(str(i) for i in sorted(missing)),
                )
            )
        return records

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
        return self._finish_sent(jobs, results)

    @api.model
    def _finish_sent(self, jobs, results):
        """What follows sending ``jobs`` (``(config, unit, request)``): the
        ``_after_send`` hook, and a line in the server log per failure; return
        the results (the hook may replace some)."""
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
        }
        if request is None:
            values.update(
                request_method=self.http_method_ids[:1].name,
                request_url=unit.url or self.request_url,
                state="error",
                error_message=unit.error,
                attempts=0,
            )
            return self.env["bj.api.log"]._scrub_values(values, secrets)
        # Read from the request, not the configuration: the delivery cron
        # stores results after a commit emptied the ORM cache.
        values.update(
            request_method=request.method,
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

    def _prepare_preview_unit(self, records):
        """The first unit ``records`` make (see :meth:`_prepare_units`), or
        None: what the Preview button and the Sample Payload panel show. Built
        with the rights of ``records``' environment; nothing is sent."""
        self.ensure_one()
        if not records:
            return None
        return next(iter(self._prepare_units(records)), None)

    def _preview_body(self, unit):
        """The body a preview shows: JSON indented, other formats as sent."""
        if self._sent_body_format() == "json":
            return jsonenc.dumps_pretty(unit.body)
        return unit.body_text

    def _prepare_preview_values(self, records):
        """What the first request would look like, secrets masked; nothing sent."""
        unit = self._prepare_preview_unit(records)
        values = {"config_id": self.id, "record_count": len(records)}
        if unit is None:
            values["error_message"] = self.env._(
                "No %(model)s record matches the filter domain.", model=self.model_name
            )
            return values
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
            request_body=redact_text(self._preview_body(unit), secrets)
            if request.body is not None
            else False,
        )
        return values
