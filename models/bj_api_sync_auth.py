"""Authentication, request signing and the host allow-list (SPEC §8, §9).

``bj.api.sync.auth.mixin`` is inherited by ``bj.api.sync.config`` only: Basic,
Bearer, API-key and OAuth2 client-credentials authentication, Standard Webhooks
signatures and the ``bj_api_sync.allowed_hosts`` check. Secrets live in
manager-only fields and never reach logs or previews. Hooks it overrides from
the request mixin: ``_prepare_request`` (host check, signature headers),
``_get_secrets`` (its secrets), ``_after_send`` (OAuth2 renewal on a 401); it
provides ``_get_auth_headers_<auth_type>``.
"""

import base64
import functools
import json
import logging
import time
from datetime import timedelta
from urllib.parse import urlencode

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ..exceptions import RetryableSyncError, SyncError
from ..tools import signing, transport
from ..tools.redact import redact_url

_logger = logging.getLogger(__name__)

SECRET_GROUP = "bj_api_sync.group_bj_api_manager"
#: Renew a cached OAuth2 token this long before it expires.
TOKEN_RENEW_MARGIN = 60
TOKEN_DEFAULT_LIFETIME = 3600
#: A token endpoint's ``expires_in`` is believed up to this (a year).
TOKEN_MAX_LIFETIME = 365 * 24 * 3600
#: Longest rotation grace period (hours): a year.
SIGNING_GRACE_MAX_HOURS = 365 * 24
ALLOWED_HOSTS_PARAM = "bj_api_sync.allowed_hosts"


@functools.lru_cache(maxsize=16)
def _host_patterns(value):
    """The patterns of the allow-list parameter's value (parsed once: every
    request checks them)."""
    return tuple(p.strip().lower() for p in value.split(",") if p.strip())


class BjApiSyncAuthMixin(models.AbstractModel):
    _name = "bj.api.sync.auth.mixin"
    _description = "BJ API: authentication and signing of a configuration"

    auth_type = fields.Selection(
        [
            ("none", "None"),
            ("basic", "Basic Auth"),
            ("bearer", "Bearer Token"),
            ("api_key", "API Key"),
            ("oauth2", "OAuth2 Client Credentials"),
            # Inbound endpoints only: the caller's Odoo API key (SPEC §11).
            ("odoo_api_key", "Odoo API Key"),
        ],
        string="Authorization Type",
        required=True,
        default="none",
        tracking=True,
    )
    auth_login = fields.Char(string="Login")
    auth_password = fields.Char(string="Password", groups=SECRET_GROUP, copy=False)
    bearer_token = fields.Char(groups=SECRET_GROUP, copy=False)
    api_key_header = fields.Char(string="API Key Header", default="X-API-Key")
    api_key_value = fields.Char(string="API Key", groups=SECRET_GROUP, copy=False)
    oauth2_token_url = fields.Char(string="Token URL", tracking=True)
    oauth2_client_id = fields.Char(string="Client ID")
    oauth2_client_secret = fields.Char(
        string="Client Secret", groups=SECRET_GROUP, copy=False
    )
    oauth2_scope = fields.Char(string="Scope")
    oauth2_client_auth = fields.Selection(
        [("basic", "HTTP Basic (client_secret_basic)"), ("body", "In the body")],
        string="Client Authentication",
        default="basic",
        required=True,
    )
    oauth2_access_token = fields.Char(
        string="Cached Token", groups=SECRET_GROUP, copy=False, readonly=True
    )
    oauth2_token_expires_at = fields.Datetime(
        string="Token Expires", copy=False, readonly=True
    )
    sign_requests = fields.Boolean(
        help="Add Standard Webhooks headers (webhook-id, webhook-timestamp, "
        "webhook-signature) so the receiver can check the sender and the body.",
    )
    signing_secret = fields.Char(groups=SECRET_GROUP, copy=False)
    signing_secret_previous = fields.Char(groups=SECRET_GROUP, copy=False)
    signing_rotated_at = fields.Datetime(readonly=True, copy=False)
    signing_grace_hours = fields.Integer(
        string="Rotation Grace (hours)",
        default=24,
        help="After a new secret is generated, requests carry both signatures for "
        "this long so receivers can switch over.",
    )

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains("auth_login", "auth_password", "bearer_token")
    def _check_auth_values(self):
        self._check_header_safe_values(["auth_login", "auth_password", "bearer_token"])

    @api.constrains("auth_type", "oauth2_token_url", "api_key_header")
    def _check_auth_settings(self):
        for config in self:
            if config.auth_type == "oauth2":
                error = transport.validate_url(config.oauth2_token_url or "")
                if not config.oauth2_token_url or error:
                    raise ValidationError(
                        self.env._(
                            "Token URL of %(name)r: %(error)s",
                            name=config.name,
                            error=error or self.env._("a token URL is required"),
                        )
                    )
            if config.auth_type == "api_key":
                if not transport.is_valid_header_name(config.api_key_header or ""):
                    raise ValidationError(
                        self.env._(
                            "Configuration %(name)r: API Key Header %(header)r is not "
                            "a valid header name.",
                            name=config.name,
                            header=config.api_key_header,
                        )
                    )

    @api.constrains("api_key_value", "oauth2_client_id", "oauth2_client_secret")
    def _check_auth_secret_values(self):
        self._check_header_safe_values(
            ["api_key_value", "oauth2_client_id", "oauth2_client_secret"]
        )

    @api.constrains("request_url", "oauth2_token_url")
    def _check_allowed_hosts(self):
        for config in self:
            for url in (config.request_url, config.oauth2_token_url):
                if url:
                    error = self._host_refusal(url)
                    if error:
                        raise ValidationError(
                            self.env._(
                                "Configuration %(name)r: %(error)s",
                                name=config.name,
                                error=error,
                            )
                        )

    def _check_header_safe_values(self, names):
        """Values that travel in headers: no CR/LF, nothing outside Latin-1
        (refused at save, naming the field, instead of failing at send)."""
        for config in self.sudo():
            for name in names:
                problem = config[name] and transport.invalid_value_reason(config[name])
                if problem:
                    raise ValidationError(
                        self.env._(
                            "Configuration %(name)r: %(field)s %(problem)s.",
                            name=config.name,
                            field=self._fields[name]._description_string(self.env),
                            problem=problem,
                        )
                    )

    # ------------------------------------------------------------------
    # Host allow-list
    # ------------------------------------------------------------------

    @api.model
    def _allowed_host_patterns(self):
        value = self.env["ir.config_parameter"].sudo().get_param(ALLOWED_HOSTS_PARAM)
        return _host_patterns(value or "")

    @api.model
    def _host_refusal(self, url, patterns=None):
        """Return why ``url``'s host is refused by the allow-list, or None.

        :param patterns: the allow-list when the caller has it already
        """
        if patterns is None:
            patterns = self._allowed_host_patterns()
        if not patterns:
            return None
        # The host that requests connects to, not what another parser sees.
        host = transport.url_host(url) or ""
        if transport.host_allowed(host, patterns):
            return None
        return self.env._(
            "host %(host)s is not in the allowed hosts (%(param)s: %(allowed)s).",
            host=host or "?",
            param=ALLOWED_HOSTS_PARAM,
            allowed=", ".join(patterns),
        )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_generate_signing_secret(self):
        """Generate a new signing secret; the previous one stays valid for the
        grace period (both signatures are sent). Managers only."""
        self._check_manager_access()
        for config in self.sudo():
            values = {"signing_secret": signing.generate_secret()}
            if config.signing_secret:
                values.update(
                    signing_secret_previous=config.signing_secret,
                    signing_rotated_at=fields.Datetime.now(),
                )
            config.write(values)
            config.message_post(
                body=self.env._(
                    "A new signing secret was generated by %s.", self.env.user.name
                )
            )
        return True

    def action_clear_oauth2_token(self):
        """Forget the cached OAuth2 token; the next request fetches a new one.
        Managers only."""
        self._check_manager_access()
        self.sudo().write(
            {"oauth2_access_token": False, "oauth2_token_expires_at": False}
        )
        return True

    # ------------------------------------------------------------------
    # Request building
    # ------------------------------------------------------------------

    def _get_auth_headers_none(self):
        return {}

    def _get_auth_headers_basic(self):
        login = self.auth_login or ""
        password = self.sudo().auth_password or ""
        token = base64.b64encode(f"{login}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def _get_auth_headers_bearer(self):
        return {"Authorization": f"Bearer {self.sudo().bearer_token or ''}"}

    def _get_auth_headers_api_key(self):
        header = (self.api_key_header or "X-API-Key").strip()
        return {header: self.sudo().api_key_value or ""}

    def _get_auth_headers_oauth2(self):
        return {"Authorization": f"Bearer {self._get_oauth2_token()}"}

    def _signing_secrets(self):
        config = self.sudo()
        secrets = [config.signing_secret] if config.signing_secret else []
        if config.signing_secret_previous and config.signing_rotated_at:
            hours = min(max(config.signing_grace_hours, 0), SIGNING_GRACE_MAX_HOURS)
            grace_end = config.signing_rotated_at + timedelta(hours=hours)
            if fields.Datetime.now() < grace_end:
                secrets.append(config.signing_secret_previous)
        return secrets

    def _prepare_request(self, unit, timeout=None):
        patterns = self._allowed_host_patterns()
        refusal = self._host_refusal(unit.url or self.request_url, patterns)
        if refusal:
            raise SyncError(refusal)
        request = super()._prepare_request(unit, timeout=timeout)
        # Checked again by the transport on the prepared request, just before
        # it connects (the URL a placeholder or a parameter made included).
        request.allowed_hosts = patterns
        if self.sign_requests:
            secrets = self._signing_secrets()
            if not secrets:
                raise SyncError(
                    self.env._(
                        "Configuration %r signs its requests but has no signing "
                        "secret: generate one.",
                        self.name,
                    )
                )
            request.headers.update(
                signing.signature_headers(
                    secrets,
                    unit.idempotency_key,
                    int(time.time()),
                    request.body or b"",
                )
            )
        return request

    def _get_secrets(self):
        secrets = super()._get_secrets()
        config = self.sudo()
        if config.auth_password:
            basic = f"{config.auth_login or ''}:{config.auth_password}"
            secrets.append(base64.b64encode(basic.encode()).decode())
        secrets += [
            config.auth_password,
            config.bearer_token,
            config.api_key_value,
            config.oauth2_client_secret,
            config.oauth2_access_token,
            config.signing_secret,
            config.signing_secret_previous,
        ]
        if config.oauth2_client_secret:
            pair = f"{config.oauth2_client_id or ''}:{config.oauth2_client_secret}"
            secrets.append(base64.b64encode(pair.encode()).decode())
        return [s for s in secrets if s]

    # ------------------------------------------------------------------
    # OAuth2 client credentials
    # ------------------------------------------------------------------

    def _get_oauth2_token(self, force=False):
        """Return a valid access token, fetching one when needed.

        The configuration row is locked while fetching so that two workers never
        ask the token endpoint at once; the one that waited reuses the token the
        other fetched.

        :raises RetryableSyncError: when the token endpoint fails
        """
        self.ensure_one()
        config = self.sudo()
        if not force and config._oauth2_token_valid():
            return config.oauth2_access_token
        self.flush_recordset()
        self.env.execute_query(
            SQL(
                "SELECT id FROM bj_api_sync_config WHERE id = %s FOR NO KEY UPDATE",
                self.id,
            )
        )
        config.invalidate_recordset(["oauth2_access_token", "oauth2_token_expires_at"])
        if not force and config._oauth2_token_valid():
            return config.oauth2_access_token
        token, lifetime = config._fetch_oauth2_token()
        config.write(
            {
                "oauth2_access_token": token,
                "oauth2_token_expires_at": fields.Datetime.now()
                + timedelta(seconds=lifetime),
            }
        )
        return token

    def _oauth2_token_valid(self):
        expires = self.oauth2_token_expires_at
        return bool(
            self.oauth2_access_token
            and expires
            and expires > fields.Datetime.now() + timedelta(seconds=TOKEN_RENEW_MARGIN)
        )

    def _fetch_oauth2_token(self):
        """Ask the token endpoint (client-credentials grant); log the exchange."""
        form = {"grant_type": "client_credentials"}
        if self.oauth2_scope:
            form["scope"] = self.oauth2_scope
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": f"bj_api_sync/{self._module_version()}",
        }
        if self.oauth2_client_auth == "basic":
            pair = f"{self.oauth2_client_id or ''}:{self.oauth2_client_secret or ''}"
            headers["Authorization"] = (
                "Basic " + base64.b64encode(pair.encode()).decode()
            )
        else:
            form.update(
                client_id=self.oauth2_client_id or "",
                client_secret=self.oauth2_client_secret or "",
            )
        refusal = self._host_refusal(self.oauth2_token_url or "")
        if refusal:
            raise SyncError(refusal)
        request = transport.OutboundRequest(
            method="POST",
            url=self.oauth2_token_url,
            headers=headers,
            body=urlencode(form).encode(),
            params=None,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_retries=min(self.max_retries, 2),
            backoff_factor=self.backoff_factor,
            allowed_hosts=tuple(self._allowed_host_patterns()),
        )
        # mutual TLS: the configuration's client certificate and CA bundle
        # (``bj_api_sync_connection.py``) apply to its token requests too
        self._attach_tls(request)
        result = transport.send(request, session=self._get_session())
        token, lifetime, error = None, TOKEN_DEFAULT_LIFETIME, result.error
        if result.outcome == "success":
            try:
                data = json.loads(result.response_text or "{}")
                token = data.get("access_token")
                lifetime = self._token_lifetime(data.get("expires_in"))
            except (ValueError, TypeError, AttributeError):
                data = None
            if not token:
                error = self.env._(
                    "the token endpoint answered without an access_token"
                )
        secrets = self._get_secrets() + [token or ""]
        log_values = {
            "config_id": self.id,
            "res_model": self._name,
            "res_ids": str(self.id),
            "request_method": "POST",
            "request_url": result.url or request.url,
            "request_headers": request.headers,
            "request_body": self._redacted_form(form),
            "status_code": result.status_code or 0,
            "response_body": self._redacted_token_response(result.response_text),
            "duration_ms": result.elapsed_ms,
            "attempts": result.attempts,
            "state": "success" if token else "error",
            "outcome": result.outcome if not token else "success",
            "error_message": False
            if token
            else self.env._("OAuth2 token request failed: %s", error),
        }
        self.env["bj.api.log"].sudo().create(
            self.env["bj.api.log"]._scrub_values(log_values, [s for s in secrets if s])
        )
        if not token:
            message = self.env._(
                "OAuth2 token request to %(url)s failed: %(error)s",
                url=redact_url(self.oauth2_token_url or ""),
                error=error,
            )
            if result.outcome == "permanent" and result.status_code not in (400, 401):
                raise SyncError(message)
            raise RetryableSyncError(message, status_code=result.status_code)
        return token, max(lifetime, 1)

    @api.model
    def _token_lifetime(self, expires_in):
        """Seconds a token lives, from the endpoint's ``expires_in``: absurd
        values (``1e20``, negative, not a number) are brought within bounds."""
        if expires_in in (None, "", False):
            return TOKEN_DEFAULT_LIFETIME
        seconds = float(expires_in)
        if seconds != seconds:  # NaN
            return TOKEN_DEFAULT_LIFETIME
        return int(min(max(seconds, 1), TOKEN_MAX_LIFETIME))

    @api.model
    def _redacted_form(self, form):
        return urlencode(
            {k: ("***" if k == "client_secret" else v) for k, v in form.items()}
        )

    @api.model
    def _redacted_token_response(self, text):
        try:
            data = json.loads(text or "")
        except ValueError:
            return text
        if isinstance(data, dict):
            for key in ("access_token", "refresh_token", "id_token"):
                if key in data:
                    data[key] = "***"
            return json.dumps(data)
        return text

    @api.model
    def _after_send(self, jobs, results):
        """Renew an OAuth2 token once on a 401 and send that request again."""
        results = list(super()._after_send(jobs, results))
        for index, ((config, _unit, request), result) in enumerate(
            zip(jobs, results, strict=True)
        ):
            if not result or result.status_code != 401 or config.auth_type != "oauth2":
                continue
            try:
                token = config._get_oauth2_token(force=True)
            except SyncError as error:
                result.error = f"HTTP 401, then {error}"
                continue
            request.headers["Authorization"] = f"Bearer {token}"
            retried = transport.send(request, session=config._get_session())
            retried.attempts += result.attempts
            results[index] = retried
        return results
