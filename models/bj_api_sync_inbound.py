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
  delete with the mapping engine (``mapping.py``) in a savepoint, answered
  again from ``bj.api.sync.inbound.request`` for a known Idempotency-Key;
  it returns an :class:`InboundAnswer` or raises :class:`InboundError`;
* ``_inbound_finish(call, answer)``: the ``bj.api.log`` row.

Hooks: ``_inbound_auth_<auth_type>(call)`` returns the id of the user a request
runs as, or None when its credentials do not check out.
``_inbound_openapi(call)`` describes the endpoints the caller's credentials open.
"""

import base64
import binascii
import hashlib
import hmac
import re
import shlex
import time
from dataclasses import dataclass, field

import psycopg2

from odoo import SUPERUSER_ID, api, fields, models
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

from ..mapping import (
    IN_DIRECTIONS,
    OUT_DIRECTIONS,
    RELATIONAL_TYPES,
    X2MANY_TYPES,
    Mapping,
    MappingError,
    has_nested,
)
from ..tools import jsonenc, sandbox, signing
from ..tools.jsonbody import DEFAULT_MAX_BYTES
from ..tools.redact import BODY_LIMIT, REDACTED, truncate

ROUTE_PREFIX = "/bj_api_sync/v1"
ENDPOINT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_BYTES_PARAM = "bj_api_sync.inbound_max_bytes"
#: Items of one bulk POST, and records of one GET page, at most.
MAX_ITEMS = 1000
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
SCHEMA_MAX_DEPTH = 4
_TEXT_SCHEMA = {"type": ["string", "null"]}
_FIELD_SCHEMAS = {
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "monetary": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": ["string", "null"], "format": "date"},
    "datetime": {"type": ["string", "null"], "format": "date-time"},
    "binary": {"type": ["string", "null"], "contentEncoding": "base64"},
    "json": {},
    "properties": {},
}
_SAMPLE_VALUES = {
    "integer": 1,
    "float": 1.5,
    "monetary": 9.99,
    "boolean": True,
    "date": "2024-05-01",
    "datetime": "2024-05-01T10:00:00Z",
    "many2one": 1,
    "one2many": [1],
    "many2many": [1],
}


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

    def _inbound_curl_example(self, url):
        """Ready-to-run curl commands for this endpoint, secrets as variables."""
        self.ensure_one()
        auth = {
            "basic": ["-u", f"{self.auth_login or 'LOGIN'}:$PASSWORD"],
            "bearer": ["-H", "Authorization: Bearer $TOKEN"],
            "odoo_api_key": ["-H", "Authorization: Bearer $ODOO_API_KEY"],
            "api_key": ["-H", f"{self.api_key_header or 'X-API-Key'}: $API_KEY"],
        }.get(self.auth_type, [])

        def command(*args):
            words = ["curl", "-sS", *args[:-1], *auth, args[-1]]
            # Secrets stay shell variables ("$TOKEN"), expanded by the shell.
            return " ".join(
                f'"{word}"' if "$" in word else shlex.quote(word) for word in words
            )

        methods = set(self.http_method_ids.mapped("name"))
        commands = []
        if "GET" in methods:
            commands.append(command(f"{url}?limit=10"))
        if "POST" in methods:
            sample = jsonenc.dumps(self._inbound_sample_object())
            commands.append(
                command(
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    sample,
                    url,
                )
            )
        return "\n".join(commands)

    def _inbound_sample_object(self):
        """An object with one example value per inbound line (the lines as
        edited, so that the form shows it before saving)."""
        Line = self.env["bj.api.sync.config.line"]
        sample = {}
        for line in self.sudo().line_ids:
            if line.direction not in IN_DIRECTIONS or not line.api_key:
                continue
            value = {} if line.value_type == "mapping" else "…"
            if line.field_path and line.value_type in ("plain", "relational"):
                try:
                    chain = Line._resolve_field_path(self.model_name, line.field_path)
                except (ValidationError, KeyError):
                    continue  # a path being typed
                leaf = chain[-1]
                value = _SAMPLE_VALUES.get(leaf.type, "text")
                if line.value_type == "relational" and leaf.type in RELATIONAL_TYPES:
                    value = ["Name"] if leaf.type in X2MANY_TYPES else "Name"
            try:
                jsonenc.set_nested(sample, line.api_key, value)
            except ValueError:
                continue
        return sample

    # ------------------------------------------------------------------
    # Before the work: endpoint, rate, method, credentials, signature
    # ------------------------------------------------------------------

    @api.model
    def _inbound_config(self, endpoint):
        """The active In configuration answering ``endpoint``, read as
        superuser (empty when none)."""
        if not ENDPOINT_RE.fullmatch(endpoint or ""):
            return self.browse()
        # Its fields come with the search: every request reads a few of them.
        return self.sudo().search_fetch(
            [("request_type", "=", "in"), ("endpoint", "=", endpoint)], limit=1
        )

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
        configured = set(self.http_method_ids.mapped("name"))
        return [
            method
            for (method, on_record) in OPERATIONS
            if on_record == bool(call.key) and method in configured
        ]

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
        return self.env["res.users.apikeys"]._check_credentials(scope="rpc", key=token)

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

        The work runs in a savepoint: a failure leaves no change behind. A
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
        try:
            with self.env.cr.savepoint():
                answer = getattr(self, f"_inbound_{operation}")(call)
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

    def _inbound_lock(self, *keys):
        """Wait for the transaction-level advisory locks ``keys``, in one
        statement, taken in ascending order (two requests never wait for each
        other crosswise)."""
        self.env.cr.execute(
            SQL(
                "SELECT pg_advisory_xact_lock(key) FROM unnest(%s::bigint[]) AS key",
                sorted(keys),
            )
        )

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
        """What the endpoint sees, changes and deletes: the filter domain."""
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

    def _inbound_objects(self, mapping, records):
        """The JSON objects of ``records``, built by the out lines."""
        objects, errors = mapping.build_objects(records)
        failed = next((error for error in errors if error), None)
        if failed:
            raise InboundError(
                500,
                self.env._("The answer could not be built."),
                detail=str(failed),
            )
        return objects

    def _inbound_check_in_domain(self, records):
        """Refuse (422) changes that leave a record outside what the endpoint
        sees: it could not read, change or delete it afterwards."""
        if not records:
            return
        inside = records.search_count(
            self._inbound_domain() & Domain("id", "in", records.ids)
        )
        if inside != len(set(records.ids)):
            raise InboundError(
                422,
                self.env._(
                    "The record would not match the filter domain of this endpoint."
                ),
            )

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
        for name, text in call.args:
            if name in ("limit", "offset"):
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
        records, total = self._inbound_search_page(model, domain, limit, offset)
        objects = self._inbound_objects(mapping, records)
        answer = InboundAnswer.success(objects, res_ids=records.ids)
        answer.body.update(count=len(objects), total=total, limit=limit, offset=offset)
        return answer

    def _inbound_search_page(self, model, domain, limit, offset):
        """A page of the records matching ``domain`` (the model's order) and
        how many match in all. A page shorter than ``limit`` tells the total;
        a full one needs a count (as the web client does)."""
        records = model.search(domain, offset=offset, limit=limit)
        if len(records) < limit and (records or not offset):
            return records, offset + len(records)
        return records, model.search_count(domain)

    def _inbound_filters(self, mapping):
        """``{key: line}`` of the ``?key=value`` filters: the top-level keys
        of plain out lines holding one value."""
        filters = {}
        for line in mapping.lines(OUT_DIRECTIONS):
            if line.value_type != "plain" or not line.field_path or "." in line.api_key:
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
        self._inbound_check_in_domain(records)
        objects = self._inbound_objects(mapping, records)
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
        predate the commit of the request that held the lock before: an
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
        if searched:
            self._inbound_lock(
                *(advisory_key("identifier", self.id, ident) for ident in searched)
            )
        scope = self._inbound_domain()
        found = self._inbound_search_identifiers(
            model, line.field_path, scope, searched
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
        missing = [
            Domain(line.field_path, "=", searched[ident])
            for ident in searched
            if not found[ident]
        ]
        if missing and self._inbound_created_meanwhile(model, scope, missing):
            raise InboundRetry("An identifier was created by a concurrent request.")
        return keys, found

    def _inbound_search_identifiers(self, model, path, scope, searched):
        """``{identifier key: records}`` for ``searched`` (``{identifier key:
        value}`` of the identifier field ``path``), within ``scope``.

        The values of a stored text or integer field (``ref``, ``id``…) compare
        alike in SQL and in Python: one search finds the records of them all.
        Other fields, and empty values (which may match NULL), get one search
        each.
        """
        field = model._fields.get(path)
        batched = (
            field is not None
            and field.store
            and field.type in ("char", "integer")
            and not field.translate
            and not field.company_dependent
        )
        found, by_value = {}, {}
        for ident, value in searched.items():
            if batched and value:
                by_value[value] = ident
                found[ident] = model.browse()
            else:
                found[ident] = model.search(scope & Domain(path, "=", value), limit=2)
        if by_value:
            domain = scope & Domain(path, "in", list(by_value))
            for record in model.search_fetch(domain, [path]):
                ident = by_value.get(record[path])
                if ident:
                    found[ident] |= record
        return found

    def _inbound_created_meanwhile(self, model, scope, domains):
        """Whether a record matching one of ``domains`` exists for a fresh
        snapshot (a short transaction of its own), with the same rights."""
        with self.env.registry.cursor() as cr:
            fresh = model.with_env(model.env(cr=cr))
            return bool(fresh.search_count(scope & Domain.OR(domains), limit=1))

    def _inbound_update(self, call):
        if not isinstance(call.body, dict):
            raise InboundError(400, self.env._("A JSON object is expected."))
        mapping, model = self._inbound_mapping()
        record = self._inbound_find(mapping, model, call.key)
        record, _created, unknown = self._inbound_apply(
            mapping, model, call.body, record
        )
        self._inbound_check_in_domain(record)
        [obj] = self._inbound_objects(mapping, record)
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
        Log = self.env["bj.api.log"].sudo()
        log = Log.create(
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

    # ------------------------------------------------------------------
    # OpenAPI
    # ------------------------------------------------------------------

    @api.model
    def _inbound_openapi(self, call):
        """An OpenAPI 3.1 document of the In endpoints whose credentials
        ``call`` carries (a tried endpoint counts the request in its rate)."""
        paths, schemas, schemes = {}, {}, {}
        schemas["Error"] = {
            "type": "object",
            "properties": {
                "status": {"const": "error"},
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "line_id": {"type": "integer"},
            },
            "required": ["status", "code", "message"],
        }
        configs = self.sudo().search([("request_type", "=", "in")])
        for config in configs:
            try:
                config._inbound_check_rate()
                config._inbound_authenticate(call)
            except InboundError:
                continue
            config._inbound_openapi_paths(paths, schemas, schemes)
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "BJ API Sync inbound endpoints",
                "version": self._module_version(),
            },
            "servers": [{"url": base.rstrip("/") or "/"}],
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": schemes},
        }

    def _inbound_openapi_paths(self, paths, schemas, schemes):
        """Add this endpoint's paths, schemas and security scheme."""
        name = self.endpoint
        mapping = Mapping(self)
        schemas[name] = self._inbound_schema(mapping, OUT_DIRECTIONS)
        schemas[f"{name}_input"] = self._inbound_schema(mapping, IN_DIRECTIONS)
        security = []
        scheme = {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
            "odoo_api_key": {
                "type": "http",
                "scheme": "bearer",
                "description": "An Odoo API key of the user the request runs as.",
            },
            "api_key": {
                "type": "apiKey",
                "in": "header",
                "name": (self.api_key_header or "X-API-Key").strip(),
            },
        }.get(self.auth_type)
        if scheme:
            schemes[f"{name}_auth"] = scheme
            security = [{f"{name}_auth": []}]
        ref = {"$ref": f"#/components/schemas/{name}"}
        input_ref = {"$ref": f"#/components/schemas/{name}_input"}
        errors = {
            code: {
                "description": "Error",
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}
                    }
                },
            }
            for code in ("4XX", "5XX")
        }

        def success(data, **extra):
            properties = {"status": {"const": "success"}, "data": data}
            properties.update({key: {"type": "integer"} for key in extra})
            return {
                "description": "Success",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": properties}
                    }
                },
            }

        methods = set(self.http_method_ids.mapped("name"))
        collection, item = {}, {}
        if "GET" in methods:
            parameters = [
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "offset", "in": "query", "schema": {"type": "integer"}},
            ]
            for key, line in self._inbound_filters(mapping).items():
                parameters.append(
                    {
                        "name": key,
                        "in": "query",
                        "description": "Equality filter.",
                        "schema": self._inbound_line_schema(
                            mapping, line, OUT_DIRECTIONS
                        ),
                    }
                )
            collection["get"] = {
                "summary": f"List {self.name}",
                "parameters": parameters,
                "responses": {
                    "200": success(
                        {"type": "array", "items": ref},
                        count=1,
                        total=1,
                        limit=1,
                        offset=1,
                    ),
                    **errors,
                },
            }
            item["get"] = {
                "summary": f"Read one {self.name} record",
                "responses": {"200": success(ref), **errors},
            }
        if "POST" in methods:
            collection["post"] = {
                "summary": f"Create or update {self.name} records (upsert)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    input_ref,
                                    {
                                        "type": "array",
                                        "items": input_ref,
                                        "maxItems": MAX_ITEMS,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": success(ref),
                    "201": success(ref),
                    **errors,
                },
            }
        for method in ("PUT", "PATCH"):
            if method in methods:
                item[method.lower()] = {
                    "summary": f"Update a {self.name} record",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": input_ref}},
                    },
                    "responses": {"200": success(ref), **errors},
                }
        if "DELETE" in methods:
            item["delete"] = {
                "summary": f"Delete a {self.name} record",
                "responses": {
                    "200": success({"type": "object", "properties": {"id": {}}}),
                    **errors,
                },
            }
        for operation in (*collection.values(), *item.values()):
            operation["security"] = security
        path = f"{ROUTE_PREFIX}/{name}"
        if collection:
            paths[path] = collection
        if item:
            ident = mapping.identifier_line()
            item["parameters"] = [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": f"Value of {ident.api_key} ({ident.field_path}).",
                    "schema": {"type": "string"},
                }
            ]
            paths[f"{path}/{{id}}"] = item

    def _inbound_schema(self, mapping, directions, depth=0):
        """The JSON schema of the objects the lines of ``directions`` read or
        write (dotted keys as nested objects)."""
        root = {"type": "object", "properties": {}}
        for line in mapping.lines(directions):
            node = root
            *parents, last = line.api_key.split(".")
            for part in parents:
                node = node["properties"].setdefault(
                    part, {"type": "object", "properties": {}}
                )
                if "properties" not in node:
                    break
            else:
                node["properties"][last] = self._inbound_line_schema(
                    mapping, line, directions, depth
                )
        return root

    def _inbound_line_schema(self, mapping, line, directions, depth=0):
        """The JSON schema of one line's value (types from the Odoo field)."""
        if line.value_type == "python" or not line.field_path:
            return {"description": "Computed by Python code."}
        chain = mapping.chain(line.field_path)
        leaf = chain[-1]
        multi = any(f.type in X2MANY_TYPES for f in chain[:-1])
        if leaf.type in RELATIONAL_TYPES:
            many = multi or leaf.type in X2MANY_TYPES
            if line.value_type == "mapping" and depth < SCHEMA_MAX_DEPTH:
                child = mapping.child(line.mapping_config_id)
                item = self._inbound_schema(child, directions, depth + 1)
            elif line.value_type == "mapping":
                item = {"type": "object"}
            elif line.value_type == "relational":
                item = {"type": "string"}
            else:
                item = {"type": "integer"}
            if many:
                schema = {"type": "array", "items": item}
            else:
                schema = {"anyOf": [item, {"type": "null"}]}
        else:
            schema = dict(_FIELD_SCHEMAS.get(leaf.type, _TEXT_SCHEMA))
            if leaf.type == "selection":
                keys = [key for key, _label in leaf._description_selection(self.env)]
                schema["enum"] = [*keys, None]
            if multi:
                schema = {"type": "array", "items": schema}
        schema["description"] = f"{leaf.string} ({line.field_path})"
        return schema
