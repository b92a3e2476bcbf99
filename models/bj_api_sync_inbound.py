"""Inbound REST endpoints of a configuration (SPEC §11).

``bj.api.sync.inbound.mixin`` is inherited by ``bj.api.sync.config`` only: an
In configuration answers ``/bj_api_sync/v1/<endpoint>``. The controller
(``controllers/main.py``) reads the HTTP request into an :class:`InboundCall`
and calls, on the configuration read as superuser:

* ``_inbound_config(endpoint)``: the active In configuration of a slug;
* ``_inbound_check_rate()`` (429), ``_inbound_check_method(call)`` (405),
  ``_inbound_authenticate(call)`` (401; the id of the user the request runs
  as) and ``_inbound_check_signature(call)`` (401);
* as that user, ``_inbound_dispatch(call)``: list, read, upsert, update or
  delete with the mapping engine (``mapping.py``), rolled back on failure, answered
  again from ``bj.api.sync.inbound.request`` for a known Idempotency-Key;
  it returns an :class:`InboundAnswer` or raises :class:`InboundError`;
* ``_inbound_finish(call, answer)``: the ``bj.api.log`` row.

Hooks: ``_inbound_auth_<auth_type>(call)`` returns the id of the user a request
runs as, or None when its credentials do not check out.
``_inbound_openapi(call)`` describes the endpoints the caller's credentials open.
"""

import base64
import binascii
import collections
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

import psycopg2

from odoo import SUPERUSER_ID, api, fields, models, tools
from odoo.exceptions import (
    AccessError,
    ConcurrencyError,
    MissingError,
    RedirectWarning,
    UserError,
    ValidationError,
)
from odoo.fields import Domain
from odoo.tools import SQL

from odoo.addons.base.models.res_users import INDEX_SIZE, KEY_CRYPT_CONTEXT

from ..mapping import (
    IN_DIRECTIONS,
    OUT_DIRECTIONS,
    RELATIONAL_TYPES,
    X2MANY_TYPES,
    Mapping,
    MappingError,
    has_nested,
)
from ..tools import hashmemo, jsonenc, sandbox, signing
from ..tools.jsonbody import DEFAULT_MAX_BYTES
from ..tools.redact import BODY_LIMIT, REDACTED, truncate

ROUTE_PREFIX = "/bj_api_sync/v1"
ENDPOINT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_BYTES_PARAM = "bj_api_sync.inbound_max_bytes"
#: Items of one bulk POST, and records of one GET page, at most.
MAX_ITEMS = 1000
#: The configuration fields a request reads (credentials, limits, mapping,
#: log): read with the lookup of the endpoint, in one statement.
HOT_FIELDS = (
    "name",
    "request_type",
    "endpoint",
    "model_name",
    "filter_domain",
    "company_id",
    "page_size",
    "rate_limit",
    "log_level",
    "delete_mode",
    "inbound_create_missing",
    "python_script",
    "run_as_user_id",
    "auth_type",
    "auth_login",
    "auth_password",
    "bearer_token",
    "api_key_header",
    "api_key_value",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_access_token",
    "verify_signature",
    "signing_secret",
    "signing_secret_previous",
    # scrubbed from the log row
    "client_cert",
    "client_key",
)
HOT_SET = frozenset({*HOT_FIELDS, "active"})
#: Whether no transaction this transaction's (REPEATABLE READ) snapshot does
#: not see has committed. Those are the transactions in progress when the
#: snapshot was taken, and those given an id since. When this transaction gets
#: its id now and it is the snapshot's first unassigned one, no other was
#: given one since; then it only remains that none of those in progress has
#: committed. A transaction that already has an id (it wrote before) cannot
#: tell, nor can a busy database where other transactions write meanwhile:
#: they say False and look again with a fresh snapshot.
SNAPSHOT_IS_CURRENT = SQL(
    """CASE WHEN pg_current_xact_id_if_assigned() IS NOT NULL THEN false
    ELSE pg_current_xact_id() = pg_snapshot_xmax(pg_current_snapshot())
        AND NOT EXISTS (
            SELECT FROM pg_snapshot_xip(pg_current_snapshot()) AS xid
            WHERE pg_xact_status(xid) = 'committed'
        )
    END"""
)
#: Query parameters of a list that are never filters.
LIST_PARAMS = ("limit", "offset", "total")
TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")
#: Odoo API keys already checked by this process (see tools/hashmemo.py).
VERIFIED_API_KEYS = hashmemo.VerifiedPairs()
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Request-ID", "webhook-id")
IDEMPOTENCY_KEY_MAX = 255
#: (method, whether the URL names a record) → operation.
OPERATIONS = {
    ("GET", False): "list",
    ("POST", False): "upsert",
    ("GET", True): "read",
    ("PUT", True): "update",
    ("PATCH", True): "update",
    ("DELETE", True): "delete",
}


#: Nested mapping configurations described in the OpenAPI document, at most.
def advisory_key(*parts):
    """A PostgreSQL advisory lock key (signed 64 bits) for ``parts``."""
    text = "\x1f".join(str(part) for part in parts)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _same_secret(given, expected):
    """Constant-time comparison; an empty expected secret never matches."""
    if not expected:
        return False
    given = given.encode() if isinstance(given, str) else bytes(given or b"")
    return hmac.compare_digest(given, expected.encode())


class InboundError(Exception):
    """An inbound request refused with an HTTP status (SPEC §11).

    ``str(error)`` is the message the caller reads; ``detail`` goes to the log
    only; ``headers`` are added to the answer (``Allow``, ``Retry-After``…).
    """

    def __init__(self, status, message, headers=None, line_id=None, detail=None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.line_id = line_id
        self.detail = detail


class InboundRetry(ConcurrencyError):
    """The transaction's snapshot predates a record another request created
    with the same identifier: Odoo runs the request again (``retrying``)."""


@dataclass
class InboundCall:
    """An incoming request as plain data (what the controller read)."""

    method: str
    url: str
    headers: dict
    args: list = field(default_factory=list)
    key: str | None = None
    remote_addr: str | None = None
    raw_body: bytes = b""
    body: object = None
    #: the user the request runs as, once its credentials checked out
    uid: int | None = None
    started: float = field(default_factory=time.monotonic)

    def header(self, name):
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), None)

    @property
    def idempotency_key(self):
        """The key a retry of this request carries, or None."""
        for name in IDEMPOTENCY_HEADERS:
            value = (self.header(name) or "").strip()
            if value:
                return value
        return None

    @property
    def fingerprint(self):
        """SHA-256 of what the request asks: method, record, query and body."""
        digest = hashlib.sha256()
        for part in (self.method, self.key or "", repr(sorted(self.args))):
            digest.update(part.encode() + b"\0")
        digest.update(self.raw_body or b"")
        return digest.hexdigest()


@dataclass
class InboundAnswer:
    """What an inbound request gets back (SPEC §11 shapes), and what its log
    row records besides."""

    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    res_ids: list = field(default_factory=list)
    ignored_keys: list = field(default_factory=list)
    error: str | None = None
    text: str | None = None

    @classmethod
    def success(cls, data, status=200, **values):
        return cls(status, body={"status": "success", "data": data}, **values)

    @classmethod
    def failure(cls, status, message, line_id=None, headers=None, error=None):
        body = {"status": "error", "code": status, "message": message}
        if line_id:
            body["line_id"] = line_id
        return cls(status, body=body, headers=dict(headers or {}), error=error)

    @classmethod
    def from_error(cls, error):
        """The answer to an :class:`InboundError` (or any error with a
        ``status``)."""
        return cls.failure(
            error.status,
            str(error),
            line_id=getattr(error, "line_id", None),
            headers=getattr(error, "headers", None),
            error=getattr(error, "detail", None) or str(error),
        )

    def body_text(self):
        if self.text is None:
            self.text = jsonenc.dumps(self.body)
        return self.text


class _CreateBatch:
    """The records an upsert creates, made by one ``create()`` of the model.

    ``ids`` (the record id of each item, by position) and ``existing``
    (``{identifier key: record}``) are filled in as the records are created.
    """

    def __init__(self, model, ids, existing):
        self.model = model
        self.ids = ids
        self.existing = existing
        self.waiting = []  # (position, identifier key or None, values)
        self.identifiers = set()
        self.created = False

    def add(self, position, ident, values):
        self.waiting.append((position, ident, values))
        if ident:
            self.identifiers.add(ident)

    def flush(self):
        """Create the waiting records (one ``create()``)."""
        if not self.waiting:
            return
        records = self.model.create([values for _pos, _ident, values in self.waiting])
        for (position, ident, _values), record in zip(
            self.waiting, records, strict=True
        ):
            self.ids[position] = record.id
            if ident:
                self.existing[ident] = record
        self.waiting, self.identifiers, self.created = [], set(), True


class BjApiSyncInboundMixin(models.AbstractModel):
    _name = "bj.api.sync.inbound.mixin"
    _description = "BJ API: inbound endpoints of a configuration"

    endpoint = fields.Char(
        copy=False,
        index=True,
        tracking=True,
        help="Inbound configurations answer /bj_api_sync/v1/<endpoint>: lowercase "
        "letters, digits, - and _, unique among inbound configurations.",
    )
    rate_limit = fields.Integer(
        string="Rate Limit (per minute)",
        default=0,
        help="Requests per minute this endpoint answers, counted across all "
        "workers and servers; more get 429 with Retry-After. 0: no limit.",
    )
    delete_mode = fields.Selection(
        [("unlink", "Delete"), ("archive", "Archive")],
        default="unlink",
        required=True,
        help="What DELETE does to the record.",
    )
    log_level = fields.Selection(
        [("all", "All requests"), ("errors", "Errors only")],
        default="all",
        required=True,
        help="Which inbound requests get a log row.",
    )
    verify_signature = fields.Boolean(
        help="Refuse requests without a valid Standard Webhooks signature "
        "(webhook-id, webhook-timestamp within 5 minutes, webhook-signature made "
        "with the signing secret, or the previous one during a rotation).",
    )
    endpoint_url = fields.Char(compute="_compute_endpoint_url", string="Endpoint URL")
    curl_example = fields.Text(compute="_compute_endpoint_url", string="curl Example")

    _endpoint_unique = models.UniqueIndex(
        "(endpoint) WHERE request_type = 'in'",
        "Another inbound configuration already answers this endpoint.",
    )
    _rate_limit_range = models.Constraint(
        "CHECK (rate_limit BETWEEN 0 AND 1000000)",
        "Rate Limit must be between 0 and 1000000 requests per minute.",
    )

    # ------------------------------------------------------------------
    # Computes and constraints
    # ------------------------------------------------------------------

    @api.depends(
        "endpoint",
        "request_type",
        "auth_type",
        "auth_login",
        "api_key_header",
        "http_method_ids",
        "line_ids",
    )
    def _compute_endpoint_url(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for config in self:
            if config.request_type != "in" or not config.endpoint:
                config.endpoint_url = config.curl_example = False
                continue
            config.endpoint_url = f"{base.rstrip('/')}{ROUTE_PREFIX}/{config.endpoint}"
            config.curl_example = config._inbound_curl_example(config.endpoint_url)

    @api.constrains("endpoint", "request_type")
    def _check_endpoint(self):
        for config in self:
            if config.request_type == "in" and not config.endpoint:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: an inbound configuration needs an "
                        "Endpoint (the last part of /bj_api_sync/v1/<endpoint>).",
                        name=config.name,
                    )
                )
            if config.endpoint and not ENDPOINT_RE.fullmatch(config.endpoint):
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: Endpoint %(endpoint)r may only hold "
                        "lowercase letters, digits, - and _, must start with a letter "
                        "or a digit and be at most 64 characters long.",
                        name=config.name,
                        endpoint=config.endpoint,
                    )
                )

    @api.constrains("request_type", "auth_type", "run_as_user_id")
    def _check_inbound_auth(self):
        for config in self:
            if config.request_type != "in":
                if config.auth_type == "odoo_api_key":
                    raise ValidationError(
                        self.env._(
                            "Configuration %(name)r: Odoo API Key authentication "
                            "checks incoming requests; outbound configurations "
                            "cannot use it.",
                            name=config.name,
                        )
                    )
                continue
            if config.auth_type == "oauth2":
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: OAuth2 client credentials are for "
                        "outbound requests; an inbound endpoint uses None, Basic, "
                        "Bearer, API Key or Odoo API Key.",
                        name=config.name,
                    )
                )
            if config.auth_type != "odoo_api_key" and not config.run_as_user_id:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: an inbound configuration runs its "
                        "requests as the Run As user, whose access rights and record "
                        "rules apply: choose one (or use Odoo API Key "
                        "authentication, which runs as the key's user).",
                        name=config.name,
                    )
                )

    @api.constrains("request_type", "http_method_ids")
    def _check_inbound_methods(self):
        for config in self:
            if config.request_type == "in" and not config.http_method_ids:
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: choose the HTTP methods the "
                        "endpoint answers (at least one).",
                        name=config.name,
                    )
                )

    @api.constrains("request_type", "delete_mode", "model_id")
    def _check_delete_mode(self):
        for config in self:
            if (
                config.request_type == "in"
                and config.delete_mode == "archive"
                and config.model_name
                and not self.env[config.model_name]._active_name
            ):
                raise ValidationError(
                    self.env._(
                        "Configuration %(name)r: %(model)s records cannot be "
                        "archived (no Active field); DELETE must delete them.",
                        name=config.name,
                        model=config.model_name,
                    )
                )

    # ------------------------------------------------------------------
    # Before the work: endpoint, rate, method, credentials, signature
    # ------------------------------------------------------------------

    @api.model
    def _inbound_config(self, endpoint):
        """The active In configuration answering ``endpoint``, read as
        superuser (empty when none)."""
        if not ENDPOINT_RE.fullmatch(endpoint or ""):
            return self.browse()
        config_id = self._inbound_endpoint_ids().get(endpoint)
        if not config_id:
            return self.browse()
        values = self._inbound_hot_values(config_id)
        if values is None:
            return self.browse()
        # The fields every request reads, from this process's memory: no
        # statement at all.
        config = self.sudo().browse(config_id)
        for name, value in values.items():
            config._fields[name]._insert_cache(config, (value,))
        return config

    @api.model
    @tools.ormcache("config_id")
    def _inbound_hot_values(self, config_id):
        """``{field: cache value}`` of the :data:`HOT_FIELDS` of an active
        configuration (None when it is archived or gone), cached until one of
        them changes (see :meth:`write`): every worker drops its copy at its
        next request."""
        config = self.sudo().search_fetch([("id", "=", config_id)], HOT_FIELDS)
        if not config:
            return None
        return {
            name: config._fields[name].convert_to_cache(config[name], config)
            for name in HOT_FIELDS
        }

    def write(self, vals):
        changed = HOT_SET.intersection(vals)
        # An access token refresh of an Out configuration keeps the caches.
        if changed and (
            changed != {"oauth2_access_token"}
            or any(config.request_type == "in" for config in self)
        ):
            self.env.registry.clear_cache()  # _inbound_hot_values
        return super().write(vals)

    @api.model
    @tools.ormcache()
    def _inbound_endpoint_ids(self):
        """``{endpoint: id}`` of the active In configurations, cached until a
        configuration changes its endpoint, type or activity (one entry,
        whatever names callers try)."""
        configs = self.sudo().search_fetch(
            [("request_type", "=", "in"), ("endpoint", "!=", False)],
            ["endpoint"],
            order="id",
        )
        ids = {}
        for config in configs:
            ids.setdefault(config.endpoint, config.id)
        return ids

    @api.model
    def _inbound_max_bytes(self):
        """Largest request body accepted (``bj_api_sync.inbound_max_bytes``)."""
        value = self.env["ir.config_parameter"].sudo().get_param(MAX_BYTES_PARAM)
        try:
            limit = int(value) if value else DEFAULT_MAX_BYTES
        except ValueError:
            limit = DEFAULT_MAX_BYTES
        return limit if limit > 0 else DEFAULT_MAX_BYTES

    def _inbound_check_rate(self):
        """Count this request; refuse it (429) beyond ``rate_limit`` a minute."""
        self.ensure_one()
        if self.rate_limit <= 0:
            return
        hits, retry_after = self.env["bj.api.sync.rate.window"]._hit(self.id)
        if hits > self.rate_limit:
            raise InboundError(
                429,
                self.env._(
                    "Rate limit of %s requests per minute exceeded; retry later.",
                    self.rate_limit,
                ),
                headers={"Retry-After": str(retry_after)},
            )

    def _inbound_allowed_methods(self, call):
        """The methods answered at the URL of ``call`` (collection or record)."""
        configured = self._inbound_method_names()
        return [
            method
            for (method, on_record) in OPERATIONS
            if on_record == bool(call.key) and method in configured
        ]

    @tools.ormcache("self.id")
    def _inbound_method_names(self):
        """The names of the configured methods, cached until they change."""
        return frozenset(self.sudo().http_method_ids.mapped("name"))

    def _inbound_check_method(self, call):
        allowed = self._inbound_allowed_methods(call)
        if call.method not in allowed:
            raise InboundError(
                405,
                self.env._(
                    "Method %(method)s is not allowed here; allowed: %(allowed)s.",
                    method=call.method,
                    allowed=", ".join(allowed) or self.env._("none"),
                ),
                headers={"Allow": ", ".join(allowed)},
            )

    def _inbound_challenge(self):
        """The ``WWW-Authenticate`` value of a 401."""
        scheme = {
            "basic": "Basic",
            "bearer": "Bearer",
            "odoo_api_key": "Bearer",
            "api_key": "ApiKey",
        }.get(self.auth_type, "Signature")
        return f'{scheme} realm="bj_api_sync"'

    def _inbound_authenticate(self, call):
        """Check the credentials of ``call``; return the id of the user the
        request runs as.

        :raises InboundError: 401 when they do not check out
        """
        self.ensure_one()
        check = getattr(self, f"_inbound_auth_{self.auth_type}", None)
        uid = check(call) if check else None
        if not uid or uid == SUPERUSER_ID:
            raise InboundError(
                401,
                self.env._("Missing or invalid credentials."),
                headers={"WWW-Authenticate": self._inbound_challenge()},
            )
        # An Odoo API key only checks out for an active user: Run As may not be.
        user = self.env["res.users"].sudo().browse(uid)
        if self.auth_type != "odoo_api_key" and not user.active:
            raise InboundError(
                500,
                self.env._("The user this endpoint runs as is archived."),
            )
        return uid

    def _inbound_auth_none(self, call):
        return self.run_as_user_id.id

    def _inbound_bearer_token(self, call):
        scheme, _sep, token = (call.header("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _inbound_auth_basic(self, call):
        scheme, _sep, value = (call.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        login, sep, password = decoded.partition(b":")
        # Both compared whatever the first gives: the time tells nothing.
        login_ok = _same_secret(login, self.auth_login)
        password_ok = _same_secret(password, self.auth_password)
        return self.run_as_user_id.id if sep and login_ok & password_ok else None

    def _inbound_auth_bearer(self, call):
        token = self._inbound_bearer_token(call)
        ok = _same_secret(token, self.bearer_token)
        return self.run_as_user_id.id if ok else None

    def _inbound_auth_api_key(self, call):
        value = call.header((self.api_key_header or "X-API-Key").strip()) or ""
        ok = _same_secret(value.strip(), self.api_key_value)
        return self.run_as_user_id.id if ok else None

    def _inbound_auth_odoo_api_key(self, call):
        """An Odoo API key (scope rpc or global) as Bearer: the request runs as
        the key's user, as for Odoo's own ``/json/2``."""
        token = self._inbound_bearer_token(call)
        if not token:
            return None
        return self._inbound_check_odoo_api_key(token)

    def _inbound_check_odoo_api_key(self, token):
        """The user of the Odoo API key ``token`` (scope rpc or global), or
        None: the same rows and conditions as ``res.users.apikeys``'s own
        check (an active user, a key not expired), read for every request.
        Only the slow hash comparison is remembered, per process, for a key
        that verified (``VERIFIED_API_KEYS``): a deleted or expired key stops
        working at once."""
        Keys = self.env["res.users.apikeys"]
        rows = self.env.execute_query(
            SQL(
                """
                SELECT k.user_id, k.key
                  FROM %(table)s k
                  JOIN res_users u ON u.id = k.user_id
                 WHERE u.active
                   AND k.index = %(index)s
                   AND (k.scope IS NULL OR k.scope = 'rpc')
                   AND (k.expiration_date IS NULL
                        OR k.expiration_date >= now() AT TIME ZONE 'utc')
                """,
                table=SQL.identifier(Keys._table),
                index=token[:INDEX_SIZE],
            )
        )
        for user_id, stored in rows:
            if VERIFIED_API_KEYS.verify(token, stored, KEY_CRYPT_CONTEXT.verify):
                return user_id
        return None

    def _inbound_check_signature(self, call):
        """Refuse (401) a request without a valid Standard Webhooks signature
        when ``verify_signature`` is set."""
        if not self.verify_signature:
            return
        try:
            signing.verify(self._signing_secrets(), call.headers, call.raw_body)
        except signing.SignatureError as error:
            raise InboundError(
                401,
                self.env._("Invalid webhook signature: %s", error),
                headers={"WWW-Authenticate": 'Signature realm="bj_api_sync"'},
            ) from None

    # ------------------------------------------------------------------
    # The work, as the user the request runs as
    # ------------------------------------------------------------------

    def _inbound_dispatch(self, call):
        """Answer ``call`` with the rights of this environment's user.

        A failure leaves no change behind: the transaction is rolled back. A
        known Idempotency-Key gets its stored answer again.

        :raises InboundError: with the status of the failure (SPEC §11)
        """
        self.ensure_one()
        operation = OPERATIONS[call.method, bool(call.key)]
        key = call.idempotency_key if call.method != "GET" else None
        if key:
            replay = self._inbound_replay(call, key)
            if replay:
                return replay
        work = getattr(self, f"_inbound_{operation}")
        try:
            try:
                answer = work(call)
            except Exception:
                if call.method != "GET" or self._inbound_runs_code():
                    # Nothing of a failed request is kept but its log row
                    # (written after this, in a new transaction). Before the
                    # work, this transaction only read: rolling all of it back
                    # costs less than a savepoint around every request.
                    self.env.cr.rollback()
                raise
        except (InboundError, ConcurrencyError):
            raise
        except MappingError as error:
            raise self._inbound_mapping_failure(error) from None
        except AccessError as error:
            raise InboundError(
                403,
                self.env._(
                    "The user this endpoint runs as may not do this (access rights "
                    "or record rules)."
                ),
                detail=str(error),
            ) from None
        except MissingError as error:
            raise InboundError(
                404, self.env._("The record does not exist."), detail=str(error)
            ) from None
        except (UserError, RedirectWarning) as error:
            raise InboundError(422, error.args[0]) from None
        except psycopg2.IntegrityError as error:
            raise InboundError(
                409,
                self.env._("The values conflict with existing data."),
                detail=str(error),
            ) from None
        if key:
            self.env["bj.api.sync.inbound.request"].sudo()._store_answer(
                self.id,
                key,
                call.fingerprint,
                answer.status,
                answer.body_text(),
                ",".join(str(i) for i in answer.res_ids),
            )
        return answer

    def _inbound_runs_code(self):
        """Whether a request may run the administrator's Python: the script,
        or a python line of this mapping or of a nested one."""
        config = self.sudo()
        if config.python_script:
            return True
        seen, todo = set(), [config]
        while todo:
            current = todo.pop()
            seen.add(current.id)
            for line in current._get_line_plans():
                if line.value_type == "python":
                    return True
                nested = line.mapping_config_id
                if nested and nested not in seen:
                    todo.append(config.browse(nested))
        return False

    def _inbound_replay(self, call, key):
        """The stored answer to ``key``, or None when it is new.

        While a request holds its key (a transaction-level advisory lock, free
        again at commit or rollback), a duplicate gets 409 at once.
        """
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise InboundError(
                400,
                self.env._(
                    "The idempotency key is longer than %s characters.",
                    IDEMPOTENCY_KEY_MAX,
                ),
            )
        if not self._inbound_try_lock(advisory_key("idempotency", self.id, key)):
            raise InboundError(
                409,
                self.env._(
                    "A request with this idempotency key is still in progress; "
                    "retry later."
                ),
            )
        stored = (
            self.env["bj.api.sync.inbound.request"].sudo()._find_answer(self.id, key)
        )
        if not stored:
            return None
        if stored.request_hash != call.fingerprint:
            raise InboundError(
                422,
                self.env._(
                    "This idempotency key was already used for a different request."
                ),
            )
        return InboundAnswer(
            stored.status_code,
            text=stored.response_body,
            headers={"Idempotent-Replayed": "true"},
            res_ids=[int(i) for i in (stored.res_ids or "").split(",") if i],
        )

    def _inbound_try_lock(self, key):
        """Take the transaction-level advisory lock ``key`` if it is free."""
        query = SQL("SELECT pg_try_advisory_xact_lock(%s)", key)
        [(locked,)] = self.env.execute_query(query)
        return locked

    def _inbound_lock(self, *keys, column_of=None):
        """Wait for the transaction-level advisory locks ``keys``, taken in
        ascending order (two requests never wait for each other crosswise).

        :param column_of: ``(model, column field, values)``: in the same round
            trip, after the locks, read the values of that column among
            ``values`` (see :meth:`_inbound_column_values`)
        :return: ``(current, rows)``: whether this transaction's snapshot is
            provably still the committed state of the database, no
            transaction it does not see having committed (see
            :data:`SNAPSHOT_IS_CURRENT`; then nothing the previous holder of a
            lock wrote can be missing from it); the column values read, or
            None
        """
        rows = SQL("NULL")
        if column_of:
            model, column, values = column_of
            model.flush_model([column.name])
            rows = SQL(
                "ARRAY(SELECT %s FROM %s WHERE %s IN %s)",
                SQL.identifier(column.name),
                SQL.identifier(model._table),
                SQL.identifier(column.name),
                tuple(values),
            )
        self.env.cr.execute(
            SQL(
                "SELECT pg_advisory_xact_lock(key) FROM unnest(%s::bigint[]) AS key;"
                " SELECT %s, %s",
                sorted(keys),
                SNAPSHOT_IS_CURRENT,
                rows,
            )
        )
        current, rows = self.env.cr.fetchone()
        return bool(current), rows

    def _inbound_mapping_failure(self, error):
        """The 422 of a value a line cannot take. The message of a Python line
        stays in the log: it would show the administrator's code."""
        line = self.env["bj.api.sync.config.line"].sudo().browse(error.line_id)
        message = str(error)
        if error.line_id and line.exists() and line.value_type == "python":
            message = self.env._(
                "Key %(key)r (mapping line %(line)s): the value was refused by the "
                "line's Python code.",
                key=line.api_key,
                line=line.id,
            )
        return InboundError(422, message, line_id=error.line_id, detail=str(error))

    def _inbound_mapping(self):
        """The mapping engine and the model, in this environment."""
        return Mapping(self, self.env), self.env[self.sudo().model_name]

    def _inbound_domain(self):
        """What the endpoint sees, changes and deletes: the filter domain,
        evaluated once per request (cursor) and user."""
        config = self.sudo()
        key = (
            "bj_api_sync.inbound_domain",
            config.id,
            config.filter_domain,
            self.env.uid,
        )
        cache = self.env.cr.cache
        if key not in cache:
            cache[key] = self._inbound_eval_domain()
        return cache[key]

    def _inbound_eval_domain(self):
        try:
            return self.sudo()._get_records_domain()
        except ValidationError as error:
            raise InboundError(
                500,
                self.env._("The filter domain of this endpoint is not valid."),
                detail=str(error),
            ) from None

    def _inbound_key_value(self, mapping, key):
        """The identifier value the URL's ``<id>`` stands for (a number for
        numeric and id fields, else the text), or None when it cannot be one."""
        line = mapping.identifier_line()
        leaf = mapping.chain(line.field_path)[-1]
        if leaf.type in ("integer", "many2one"):
            return int(key) if re.fullmatch(r"-?\d{1,18}", key) else None
        if leaf.type in ("float", "monetary"):
            try:
                return float(key)
            except ValueError:
                return None
        return key

    def _inbound_find(self, mapping, model, key):
        """The record whose identifier is ``key``, within the filter domain.

        :raises InboundError: 404 when no record the user can see has it (a
            record outside the domain or hidden by a rule looks the same)
        """
        value = self._inbound_key_value(mapping, key)
        found = model.browse()
        if value is not None:
            try:
                domain = Domain(mapping.identifier_domain(value))
            except MappingError:
                domain = None
            if domain is not None:
                found = model.search(self._inbound_domain() & domain, limit=2)
        if not found:
            raise InboundError(404, self.env._("No record has the identifier %r.", key))
        if len(found) > 1:
            raise InboundError(
                409, self.env._("Several records have the identifier %r.", key)
            )
        return found

    def _inbound_objects(self, mapping, records, in_domain=False, fetched=False):
        """The JSON objects of ``records``, built by the out lines.

        :param fetched: the first level of fields the answer shows is read

        :param in_domain: refuse (422) records that do not match the filter
            domain (after a change: the endpoint could not read, change or
            delete them afterwards); checked by the statement that reads the
            records' fields for the answer, or by the read rules alone when
            the endpoint has no filter domain
        """
        if in_domain and records:
            # Whatever the change left to recompute is written now, in one
            # UPDATE a table, rather than partly for this read and partly at
            # commit.
            self.env.flush_all()
            domain = self._inbound_domain()
            if domain.is_true() and not self._inbound_any_archived(records):
                # Only the read rules can hide them: no statement when none
                # applies to this user. The answer's fields are in the cache,
                # where reading them checks no right: checked here (model and
                # fields, 403), as the statement would have.
                records.browse().check_access("read")
                for name in mapping.first_level_fields(records):
                    records._check_field_access(records._fields[name], "read")
                inside = records._filtered_access("read")
            else:
                inside = records.search_fetch(
                    domain & Domain("id", "in", records.ids),
                    mapping.first_level_fields(records),
                )
                fetched = True
            if len(set(inside.ids)) != len(set(records.ids)):
                raise InboundError(
                    422,
                    self.env._(
                        "The record would not match the filter domain of this endpoint."
                    ),
                )
        objects, errors = mapping.build_objects(records, fetched=fetched)
        failed = next((error for error in errors if error), None)
        if failed:
            raise InboundError(
                500,
                self.env._("The answer could not be built."),
                detail=str(failed),
            )
        return objects

    @staticmethod
    def _inbound_any_archived(records):
        """Whether one of ``records`` is archived (a search would skip it)."""
        name = records._active_name
        return bool(name) and not all(records.mapped(name))

    def _inbound_run_script(self, mapping, model, obj, record):
        """The object after the configuration's Python Script (SPEC §11: it
        sees ``request_data``, ``record``, ``env``, ``model``; ``result``
        replaces the object)."""
        code = self.sudo().python_script
        if not code:
            return obj
        context = mapping.script_context(model, record)
        context.update(request_data=obj, record=record)
        try:
            result = sandbox.run(code, context, evaluate=True)
        except (UserError, ConcurrencyError):
            raise
        except Exception as error:  # noqa: BLE001 - the admin's code failed
            raise InboundError(
                500,
                self.env._("The Python Script of this endpoint failed."),
                detail=str(error),
            ) from None
        if result is sandbox.NO_RESULT or result is None:
            return context["request_data"]
        if not isinstance(result, dict):
            raise InboundError(
                500,
                self.env._(
                    "The Python Script of this endpoint did not give an object."
                ),
            )
        return result

    def _inbound_values(self, mapping, model, obj, record):
        """The values ``obj`` gives ``record`` (empty: a new record), after the
        configuration's Python Script.

        :return: ``(values, unknown keys)``
        """
        obj = self._inbound_run_script(mapping, model, obj, record)
        return mapping.to_values(obj, record=record)

    def _inbound_apply(self, mapping, model, obj, record):
        """Write ``obj`` on ``record``, or create a record from it.

        :return: ``(record, created, unknown keys)``
        """
        values, unknown = self._inbound_values(mapping, model, obj, record)
        if record:
            if values:
                record.write(values)
            return record, False, unknown
        return model.create(values), True, unknown

    def _inbound_list(self, call):
        mapping, model = self._inbound_mapping()
        limit = min(self.sudo().page_size, MAX_ITEMS)
        offset = 0
        domain = self._inbound_domain()
        filters = self._inbound_filters(mapping)
        count_all = True
        for name, text in call.args:
            if name == "total":
                flag = text.strip().lower()
                if flag not in TRUE_WORDS + FALSE_WORDS:
                    raise InboundError(
                        400, self.env._("total must be true or false (1 or 0).")
                    )
                count_all = flag in TRUE_WORDS
                continue
            if name in LIST_PARAMS[:2]:
                value = int(text) if re.fullmatch(r"\d{1,9}", text) else -1
                if name == "limit" and 1 <= value <= MAX_ITEMS:
                    limit = value
                elif name == "offset" and value >= 0:
                    offset = value
                else:
                    raise InboundError(
                        400,
                        self.env._(
                            "%(name)s must be a whole number (limit: 1 to %(max)s).",
                            name=name,
                            max=MAX_ITEMS,
                        ),
                    )
                continue
            if name not in filters:
                raise InboundError(
                    400,
                    self.env._(
                        "Unknown filter %(name)r; filters: %(names)s.",
                        name=name,
                        names=", ".join(sorted(filters)) or self.env._("none"),
                    ),
                )
            line = filters[name]
            field = mapping.chain(line.field_path)[-1]
            value = self._inbound_filter_value(field, text)
            domain &= Domain(line.field_path, "=", value)
        records, total = self._inbound_search_page(
            mapping, model, domain, limit, offset, count_all
        )
        objects = self._inbound_objects(mapping, records, fetched=True)
        answer = InboundAnswer.success(objects, res_ids=records.ids)
        answer.body.update(count=len(objects), total=total, limit=limit, offset=offset)
        return answer

    def _inbound_search_page(self, mapping, model, domain, limit, offset, count_all):
        """A page of the records matching ``domain`` (the model's order, the
        user's record rules), read with the fields the answer shows in the
        same statement, and how many match in all (None without
        ``count_all``). A page shorter than ``limit`` tells the total; a full
        one needs a count, as in the web client: counting every match can cost
        more than the page itself, hence ``?total=false``."""
        records = model.search_fetch(
            domain, mapping.first_level_fields(model), offset=offset, limit=limit
        )
        if not count_all:
            return records, None
        if len(records) < limit and (records or not offset):
            return records, offset + len(records)
        return records, model.search_count(domain)

    def _inbound_filters(self, mapping):
        """``{key: line}`` of the ``?key=value`` filters: the top-level keys
        of plain out lines holding one value."""
        filters = {}
        for line in mapping.lines(OUT_DIRECTIONS):
            if (
                line.value_type != "plain"
                or not line.field_path
                or "." in line.api_key
                or line.api_key in LIST_PARAMS
            ):
                continue
            chain = mapping.chain(line.field_path)
            if not any(field.type in X2MANY_TYPES for field in chain):
                filters[line.api_key] = line
        return filters

    def _inbound_filter_value(self, field, text):
        """The value a ``?key=text`` filter compares ``field`` with."""
        if field.type in ("integer", "many2one"):
            if not re.fullmatch(r"-?\d{1,18}", text):
                raise InboundError(
                    400, self.env._("Filter %r expects a whole number.", text)
                )
            return int(text)
        if field.type in ("float", "monetary"):
            try:
                return float(text)
            except ValueError:
                raise InboundError(
                    400, self.env._("Filter %r expects a number.", text)
                ) from None
        if field.type == "boolean":
            return text.strip().lower() in ("1", "true", "yes")
        return text

    def _inbound_read(self, call):
        mapping, model = self._inbound_mapping()
        record = self._inbound_find(mapping, model, call.key)
        [obj] = self._inbound_objects(mapping, record)
        return InboundAnswer.success(obj, res_ids=record.ids)

    def _inbound_upsert(self, call):
        """Create, or update the record with the same identifier, for the
        object or each object of the array, in one transaction."""
        body = call.body
        many = isinstance(body, list)
        items = body if many else [body]
        if not items or not all(isinstance(item, dict) for item in items):
            raise InboundError(
                400,
                self.env._(
                    "A JSON object, or a non-empty array of objects, is expected."
                ),
            )
        if len(items) > MAX_ITEMS:
            raise InboundError(
                400, self.env._("At most %s objects per request.", MAX_ITEMS)
            )
        mapping, model = self._inbound_mapping()
        keys, existing = self._inbound_lock_and_find(mapping, model, items)
        ids, ignored = [None] * len(items), set()
        # New records wait to be created together, in one create(), unless an
        # item could depend on them: one with the identifier of a waiting
        # record, or any item when the lines look up records or run code.
        batch = _CreateBatch(model, ids, existing)
        together = self._inbound_creates_together(mapping)
        for position, (item, ident) in enumerate(zip(items, keys, strict=True)):
            if not together or ident in batch.identifiers:
                batch.flush()
            record = existing[ident] if ident else model.browse()
            values, unknown = self._inbound_values(mapping, model, item, record)
            ignored.update(unknown)
            if record:
                if values:
                    record.write(values)
                ids[position] = record.id
            else:
                batch.add(position, ident, values)
        batch.flush()
        created_any = batch.created
        records = model.browse(ids)
        objects = self._inbound_objects(mapping, records, in_domain=True)
        return InboundAnswer.success(
            objects if many else objects[0],
            status=201 if created_any else 200,
            res_ids=list(dict.fromkeys(records.ids)),
            ignored_keys=sorted(ignored),
        )

    def _inbound_creates_together(self, mapping):
        """Whether the new records of a POSTed array may be created by one
        ``create()``: only when the values of an item cannot depend on the
        records earlier items create (plain lines on fields of the model
        itself, no Python)."""
        if self.sudo().python_script:
            return False
        for line in mapping.lines(IN_DIRECTIONS):
            if line.value_type != "plain" or not line.field_path:
                return False
            chain = mapping.chain(line.field_path)
            if len(chain) > 1 or chain[0].type in RELATIONAL_TYPES:
                return False
        return True

    def _inbound_lock_and_find(self, mapping, model, items):
        """Lock the identifiers of ``items`` and find their records.

        Concurrent requests with one identifier value take turns on a
        transaction-level advisory lock of (configuration, identifier), so one
        record is created, never two. The snapshot of this transaction may
        predate the commit of the request that held the lock before: unless
        the snapshot is provably current (see :meth:`_inbound_lock`), an
        identifier found nowhere here is looked up again with a fresh snapshot,
        and when it exists there the request is run again
        (:class:`InboundRetry`).

        :return: ``(keys, records)``: the identifier key of each item (None
            for an item without identifier) and ``{identifier key: record}``
        """
        line = mapping.identifier_line()
        searched, values, keys = {}, {}, []
        for item in items:
            has_value = has_nested(item, line.api_key)
            value = mapping.identifier_value(item) if has_value else None
            if value is None:
                keys.append(None)
                continue
            domain = mapping.identifier_domain(value)
            [(_path, _operator, search_value)] = domain
            ident = repr(domain)
            searched[ident], values[ident] = search_value, value
            keys.append(ident)
        current, rows = False, None
        if searched:
            # The plain column's values are read with the locks (one round
            # trip): the snapshot is the same before and after them.
            column = self._inbound_plain_column(model, line.field_path)
            plain = [value for value in searched.values() if value]
            current, rows = self._inbound_lock(
                *(advisory_key("identifier", self.id, ident) for ident in searched),
                column_of=(model, column, plain) if column and plain else None,
            )
        scope = self._inbound_domain()
        seen = collections.Counter()
        found = self._inbound_search_identifiers(
            model, line.field_path, scope, searched, seen=seen, rows=rows
        )
        for ident, records in found.items():
            if len(records) > 1:
                raise InboundError(
                    409,
                    self.env._(
                        "Several records have the identifier %(key)r = %(value)s.",
                        key=line.api_key,
                        value=jsonenc.short_repr(values[ident]),
                    ),
                )
        missing = [searched[ident] for ident in searched if not found[ident]]
        if (
            missing
            and not current
            and self._inbound_created_meanwhile(
                model, scope, line.field_path, missing, seen=seen
            )
        ):
            raise InboundRetry("An identifier was created by a concurrent request.")
        return keys, found

    @staticmethod
    def _inbound_plain_column(model, path):
        """The field ``path`` when it is a column of ``model``'s table whose
        values compare alike in SQL and in Python (``ref``, ``id``…)."""
        field = model._fields.get(path)
        if (
            field is not None
            and field.store
            and field.type in ("char", "integer")
            and not field.translate
            and not field.company_dependent
        ):
            return field
        return None

    def _inbound_search_identifiers(
        self, model, path, scope, searched, seen=None, rows=None
    ):
        """``{identifier key: records}`` for ``searched`` (``{identifier key:
        value}`` of the identifier field ``path``), within ``scope``.

        The values of a plain column (see :meth:`_inbound_plain_column`) are
        first looked up in the table itself, whatever the domain and rules:
        only the values present there are searched, all in one search (a new
        object costs no search at all). Other fields, and empty values (which
        may match NULL), get one search each.

        :param seen: a set or a :class:`collections.Counter`, given the plain
            column values the table holds (whether the user may see their
            records or not; a counter counts their rows)
        :param rows: the plain column values :meth:`_inbound_column_values`
            would read, already read
        """
        column = self._inbound_plain_column(model, path)
        found, by_value = {}, {}
        for ident, value in searched.items():
            if column is not None and value:
                by_value[value] = ident
                found[ident] = model.browse()
            else:
                found[ident] = model.search(scope & Domain(path, "=", value), limit=2)
        if by_value:
            if rows is None:
                rows = self._inbound_column_values(self.env.cr, model, column, by_value)
            present = set(rows)
            if seen is not None:
                seen.update(rows)
            if present:
                domain = scope & Domain(path, "in", list(present))
                for record in model.search_fetch(domain, [path]):
                    ident = by_value.get(record[path])
                    if ident:
                        found[ident] |= record
        return found

    @staticmethod
    def _inbound_column_values(cr, model, column, values):
        """The values of ``column`` among ``values`` in ``model``'s table, one
        per row holding it (every row: archived, hidden, outside the domain)."""
        model.flush_model([column.name])
        cr.execute(
            SQL(
                "SELECT %s FROM %s WHERE %s IN %s",
                SQL.identifier(column.name),
                SQL.identifier(model._table),
                SQL.identifier(column.name),
                tuple(values),
            )
        )
        return [value for (value,) in cr.fetchall()]

    def _inbound_created_meanwhile(self, model, scope, path, values, seen=None):
        """Whether a record whose identifier ``path`` is one of ``values``
        was committed after this transaction's snapshot began: a short
        transaction of its own sees the database as it is now.

        For a plain column, the rows holding those values are counted in both
        snapshots, whatever the rules and domain (a difference can only be a
        concurrent change); otherwise the fresh transaction searches with the
        same rights and domain.

        :param seen: the rows per plain column value of this snapshot (a
            :class:`collections.Counter`), when
            :meth:`_inbound_search_identifiers` already read them
        """
        column = self._inbound_plain_column(model, path)
        if column is None or not all(values):
            domains = Domain.OR(Domain(path, "=", value) for value in values)
            with self.env.registry.cursor() as cr:
                fresh = model.with_env(model.env(cr=cr))
                return bool(fresh.search_count(scope & domains, limit=1))
        if seen is None:
            rows = self._inbound_column_values(self.env.cr, model, column, values)
            seen = collections.Counter(rows)
        before = sum(seen[value] for value in values)
        with self.env.registry.cursor() as cr:
            now = self._inbound_column_values(cr, model, column, values)
        return len(now) > before

    def _inbound_update(self, call):
        if not isinstance(call.body, dict):
            raise InboundError(400, self.env._("A JSON object is expected."))
        mapping, model = self._inbound_mapping()
        record = self._inbound_find(mapping, model, call.key)
        record, _created, unknown = self._inbound_apply(
            mapping, model, call.body, record
        )
        [obj] = self._inbound_objects(mapping, record, in_domain=True)
        return InboundAnswer.success(
            obj, res_ids=record.ids, ignored_keys=sorted(unknown)
        )

    def _inbound_delete(self, call):
        mapping, model = self._inbound_mapping()
        record = self._inbound_find(mapping, model, call.key)
        res_ids = record.ids
        try:
            with self.env.cr.savepoint():
                if self.sudo().delete_mode == "archive":
                    record.action_archive()
                else:
                    record.unlink()
        except AccessError:
            raise
        except (UserError, RedirectWarning) as error:
            raise InboundError(
                409,
                self.env._("Odoo refused to delete the record: %s", error.args[0]),
            ) from None
        except psycopg2.IntegrityError as error:
            raise InboundError(
                409,
                self.env._(
                    "Odoo refused to delete the record: other records refer to it."
                ),
                detail=str(error),
            ) from None
        value = self._inbound_key_value(mapping, call.key)
        return InboundAnswer.success({"id": value}, res_ids=res_ids)

    # ------------------------------------------------------------------
    # Log
    # ------------------------------------------------------------------

    def _inbound_finish(self, call, answer):
        """Write the log row of an answered request (all requests, or failures
        only per ``log_level``); a 500 answer gets the log id in its message.

        :return: the ``bj.api.log`` row, or None
        """
        self.ensure_one()
        config = self.sudo()
        failed = answer.status >= 400
        if not failed and config.log_level == "errors":
            return None
        headers = dict(call.headers)
        if config.auth_type == "api_key":
            masked = (config.api_key_header or "").strip().lower()
            headers = {
                k: (REDACTED if k.lower() == masked else v) for k, v in headers.items()
            }
        # As the request's user (superuser rights): one plain INSERT.
        Log = self.env["bj.api.log"].with_user(call.uid or SUPERUSER_ID).sudo()
        log = Log._insert_batch(
            [
                Log._scrub_values(
                    {
                        "config_id": config.id,
                        "direction": "in",
                        "res_model": config.model_name,
                        "res_ids": ",".join(str(i) for i in answer.res_ids),
                        "request_method": call.method,
                        "request_url": call.url,
                        "request_headers": headers,
                        "request_body": truncate(call.raw_body, BODY_LIMIT) or False,
                        "status_code": answer.status,
                        "response_body": answer.body_text(),
                        "duration_ms": int((time.monotonic() - call.started) * 1000),
                        "attempts": 1,
                        "state": "error" if failed else "success",
                        "error_message": (answer.error or answer.body_text())
                        if failed
                        else False,
                        "idempotency_key": call.idempotency_key,
                        "remote_addr": call.remote_addr,
                        "ignored_keys": ", ".join(answer.ignored_keys) or False,
                    },
                    config._get_secrets(),
                )
            ]
        )
        if answer.status >= 500 and isinstance(answer.body, dict):
            answer.body["message"] = self.env._(
                "%(message)s See log #%(log)s.",
                message=answer.body["message"],
                log=log.id,
            )
            answer.body["log_id"] = log.id
            answer.text = None
            log.response_body = answer.body_text()
        return log
