"""HTTP transport of bj_api_sync: pooled sessions, quick retries, plain results.

No ``odoo`` import: the models build an :class:`OutboundRequest`, call :func:`send`
and store the :class:`OutboundResult`. ``send`` never raises for network or HTTP
problems; it classifies them as ``success``, ``retryable`` or ``permanent``.

Runs on urllib3 1.26.x and 2.x (the lines Odoo pins) and always goes through
``requests.Session.send`` so that Odoo's test harness, which patches it, still
sees every request.
"""

import codecs
import email.utils
import errno
import http.client
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    HTTPError as Urllib3HTTPError,
)
from urllib3.exceptions import (
    MaxRetryError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util.retry import Retry

from ..exceptions import RetryableSyncError, SyncError
from .redact import redact_url

RETRY_STATUSES = (429, 500, 502, 503, 504)
RETRYABLE_4XX = (408, 425, 429)
BACKOFF_CAP = 30.0  # seconds, longest sleep between two quick retries
RESPONSE_READ_LIMIT = 1024 * 1024  # bytes of response body kept in memory
POOL_CONNECTIONS = 4
POOL_MAXSIZE = 8
MAX_SESSIONS_PER_THREAD = 32

SUCCESS = "success"
RETRYABLE = "retryable"
PERMANENT = "permanent"

_PLACEHOLDER_RE = re.compile(
    r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}"
)


@dataclass
class OutboundRequest:
    """Everything needed to send one HTTP request (headers already merged)."""

    method: str
    url: str
    headers: dict
    body: bytes | None
    params: list | None
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_retries: int = 3
    backoff_factor: float = 0.5
    retry_after_cap: float = 30.0


@dataclass
class OutboundResult:
    """What happened to an :class:`OutboundRequest` (plain data, never raises)."""

    status_code: int | None
    response_headers: dict = field(default_factory=dict)
    response_text: str = ""
    attempts: int = 1
    elapsed_ms: int = 0
    outcome: str = PERMANENT
    error: str | None = None
    retry_after: float | None = None
    url: str = ""
    location: str | None = None

    @property
    def ok(self):
        return self.outcome == SUCCESS

    def raise_for_outcome(self):
        """Raise :class:`RetryableSyncError` / :class:`SyncError` unless success."""
        if self.outcome == SUCCESS:
            return
        message = self.error or f"HTTP {self.status_code}"
        if self.outcome == RETRYABLE:
            raise RetryableSyncError(
                message, status_code=self.status_code, retry_after=self.retry_after
            )
        raise SyncError(message, status_code=self.status_code)


class _RedactingFilter(logging.Filter):
    """Masks secret query parameters in urllib3's own log lines.

    urllib3 logs "Retrying ... after connection broken by ...: <path?query>" at
    WARNING level (and the request line at DEBUG); the query may carry a token.
    """

    bj_api_sync = True

    def filter(self, record):
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(arg)
                if isinstance(arg, str) and ("?" in arg or "@" in arg)
                else arg
                for arg in record.args
            )
        return True


def _install_log_filter():
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if not any(getattr(f, "bj_api_sync", False) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


_install_log_filter()


# ----------------------------------------------------------------------------
# Classification and small helpers
# ----------------------------------------------------------------------------


def classify(status_code):
    """Outcome class of an HTTP status: 'success', 'retryable' or 'permanent'."""
    if status_code is None:
        return RETRYABLE
    if 200 <= status_code < 300:
        return SUCCESS
    if status_code in RETRYABLE_4XX or 500 <= status_code < 600:
        return RETRYABLE
    return PERMANENT


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns None for a missing or unparseable value; a date in the past gives 0.
    """
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now if now is not None else datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _stringify_param(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def build_url(url, params):
    """``url`` with ``params`` appended to its query string (fragment kept).

    ``params`` is a list of ``(key, value)`` pairs (a dict works too). A list or
    tuple value repeats the key; ``None`` becomes an empty value and booleans
    ``true``/``false``.
    """
    if not params:
        return url
    items = params.items() if isinstance(params, dict) else params
    pairs = []
    for key, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((_stringify_param(key), _stringify_param(v)) for v in values)
    if not pairs:
        return url
    encoded = urlencode(pairs)
    base, hash_, fragment = url.partition("#")
    if "?" in base:
        separator = "" if base.endswith(("?", "&")) else "&"
    else:
        separator = "?"
    return f"{base}{separator}{encoded}{hash_}{fragment}"


def url_placeholders(template):
    """Names of the ``{field_path}`` placeholders of ``template``, in order."""
    if not template:
        return []
    names = []
    for match in _PLACEHOLDER_RE.finditer(template):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def _placeholder_text(value):
    if value is None or value is False:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(_placeholder_text(v) for v in value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def render_url(template, values):
    """Replace ``{field_path}`` placeholders by URL-quoted ``values[field_path]``.

    ``None``/``False`` give an empty string, lists are comma-joined; other braces
    are left alone. Raises ``ValueError`` naming a placeholder missing in ``values``.
    """
    if not template:
        return template

    def replace(match):
        name = match.group(1)
        if name not in values:
            raise ValueError(f"No value for URL placeholder {{{name}}}")
        return quote(_placeholder_text(values[name]), safe="")

    return _PLACEHOLDER_RE.sub(replace, template)


_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def is_valid_header_name(name):
    """Whether ``name`` is an HTTP header name (an RFC 9110 token)."""
    return bool(name) and bool(_HEADER_NAME_RE.match(name.strip()))


def validate_url(url):
    """Error message if ``url`` is not an absolute http(s) URL with a host.

    Returns None for a valid URL.
    """
    if not url or not str(url).strip():
        return "The URL is empty."
    url = str(url).strip()
    if any(c.isspace() for c in url):
        return "The URL must not contain spaces."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        return f"The URL is not valid: {exc}."
    if parts.scheme.lower() not in ("http", "https"):
        return "The URL must start with http:// or https://."
    if not parts.hostname:
        return "The URL has no host name."
    return None


# ----------------------------------------------------------------------------
# Retry policy
# ----------------------------------------------------------------------------


def _exception_chain(exc):
    """``exc`` and every exception it wraps (args, reason, cause, context)."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attr in ("reason", "original_error", "__cause__", "__context__"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                stack.append(arg)


def _is_certificate_error(exc):
    for err in _exception_chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        text = str(err)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return True
        if "hostname" in text and "doesn't match" in text:
            return True
    return False


class SyncRetry(Retry):
    """urllib3 ``Retry`` with bj_api_sync's rules, on urllib3 1.26 and 2.x.

    - read timeouts are not retried (a slow receiver would hold a worker for
      (n+1) x read_timeout; the outbox retries later), nor certificate errors;
    - connection errors and dropped connections are retried;
    - a ``Retry-After`` above ``retry_after_cap`` ends the call at once with the
      response (urlopen returns it because ``raise_on_status=False``);
    - each backoff sleep is capped at :data:`BACKOFF_CAP` seconds;
    - every scheduled retry is recorded in ``attempt_log`` (shared by the copies
      urllib3 makes), so attempts = len(attempt_log) + 1 on both urllib3 lines.
    """

    def __init__(self, *args, retry_after_cap=30.0, attempt_log=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap
        self.attempt_log = [] if attempt_log is None else attempt_log

    @classmethod
    def for_request(cls, request):
        return cls(
            total=max(0, int(request.max_retries or 0)),
            backoff_factor=max(0.0, float(request.backoff_factor or 0.0)),
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # every method, POST included
            raise_on_status=False,
            raise_on_redirect=False,
            respect_retry_after_header=True,
            retry_after_cap=request.retry_after_cap,
        )

    def new(self, **kwargs):
        kwargs.setdefault("retry_after_cap", self.retry_after_cap)
        kwargs.setdefault("attempt_log", self.attempt_log)
        return super().new(**kwargs)

    @property
    def attempts(self):
        return len(self.attempt_log) + 1

    def get_backoff_time(self):
        return min(BACKOFF_CAP, super().get_backoff_time())

    def get_retry_after(self, response):
        # lenient on both lines (1.26 raises InvalidHeader on a bad value)
        return parse_retry_after(response.headers.get("Retry-After"))

    def is_retry(self, method, status_code, has_retry_after=False):
        # only the force list: urllib3 would also retry a 413 carrying Retry-After
        if not self._is_method_retryable(method):
            return False
        return bool(self.total) and status_code in (self.status_forcelist or ())

    def increment(
        self,
        method=None,
        url=None,
        response=None,
        error=None,
        _pool=None,
        _stacktrace=None,
    ):
        if error is not None and (
            isinstance(error, ReadTimeoutError) or _is_certificate_error(error)
        ):
            raise error.with_traceback(_stacktrace)
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.retry_after_cap:
                raise MaxRetryError(
                    _pool,
                    url,
                    ResponseError(
                        f"Retry-After {wait:g} s exceeds the {self.retry_after_cap:g} s"
                        " allowed inside one call"
                    ),
                )
        new_retry = super().increment(
            method=method,
            url=url,
            response=response,
            error=error,
            _pool=_pool,
            _stacktrace=_stacktrace,
        )
        self.attempt_log.append(
            response.status if response is not None else type(error).__name__
        )
        return new_retry


# ----------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------


def new_session():
    """A keep-alive ``requests.Session`` with a modest pool for http and https."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(
            prefix,
            HTTPAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE),
        )
    return session


class SessionPool:
    """One pooled ``requests.Session`` per key per thread.

    The key is chosen by the caller, e.g. ``(dbname, config_id, write_date)`` so a
    changed configuration gets fresh connections. Sessions live in thread-local
    storage, hence ``send`` may set a per-call ``Retry`` on their adapters. Each
    thread keeps at most ``max_sessions`` sessions (least recently used closed).
    """

    def __init__(self, max_sessions=MAX_SESSIONS_PER_THREAD):
        self.max_sessions = max_sessions
        self._local = threading.local()

    def _sessions(self):
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = OrderedDict()
        return sessions

    def get(self, key):
        """This thread's session for ``key``, created on first use."""
        sessions = self._sessions()
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = new_session()
            while len(sessions) > self.max_sessions:
                _old_key, old = sessions.popitem(last=False)
                old.close()
        else:
            sessions.move_to_end(key)
        return session

    def discard(self, key):
        """Close and forget this thread's session for ``key`` (if any)."""
        session = self._sessions().pop(key, None)
        if session is not None:
            session.close()

    def clear(self):
        """Close all of this thread's sessions."""
        sessions = self._sessions()
        while sessions:
            _key, session = sessions.popitem()
            session.close()

    def __len__(self):
        return len(self._sessions())


DEFAULT_POOL = SessionPool()


# ----------------------------------------------------------------------------
# Sending
# ----------------------------------------------------------------------------


def _clean_headers(headers):
    clean = {}
    for key, value in (headers or {}).items():
        if value is None:
            continue
        if not isinstance(value, (str, bytes)):
            value = str(value)
        clean[str(key)] = value
    return clean


def _response_encoding(response):
    content_type = response.headers.get("Content-Type") or ""
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            return "utf-8"  # unknown charset: decode as UTF-8, replacing errors
    return "utf-8"


def _read_body(response):
    """The response body, at most :data:`RESPONSE_READ_LIMIT` bytes."""
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size >= RESPONSE_READ_LIMIT:
                break
    finally:
        # fully read: the connection goes back to the pool; cut short: closed
        response.close()
    return b"".join(chunks)[:RESPONSE_READ_LIMIT]


def _host_port(url):
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"
    except ValueError:
        return "?"


def _describe_exception(exc, request, url):
    """``(outcome, message)`` for an exception raised while sending.

    Messages never show the full URL unmasked (it may carry a token).
    """
    outcome, message = _classify_exception(exc, request, url)
    if url and isinstance(url, str):
        message = message.replace(url, redact_url(url))
    return outcome, message


def _classify_exception(exc, request, url):
    where = _host_port(url)
    chain = list(_exception_chain(exc))

    def has(*types):
        return any(isinstance(err, types) for err in chain)

    def text_has(*needles):
        return any(n in str(err) for err in chain for n in needles)

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RETRYABLE, (
            f"Connect timed out after {request.connect_timeout:g} s ({where})"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout) or has(ReadTimeoutError):
        return RETRYABLE, f"Read timed out after {request.read_timeout:g} s ({where})"
    if isinstance(exc, requests.exceptions.SSLError) or has(ssl.SSLError):
        if _is_certificate_error(exc):
            reason = next(
                (
                    getattr(err, "verify_message", None) or str(err)
                    for err in chain
                    if isinstance(err, ssl.SSLCertVerificationError)
                ),
                "certificate verify failed",
            )
            return PERMANENT, (
                f"SSL certificate verification failed ({where}): {reason}"
            )
        return RETRYABLE, f"SSL error ({where}): {_short(exc)}"
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.URLRequired,
        ),
    ):
        text = _short(exc)
        return PERMANENT, text if text.startswith(
            "Invalid URL"
        ) else f"Invalid URL: {text}"
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return PERMANENT, f"Invalid header: {_short(exc)}"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return PERMANENT, "Too many redirects"
    if isinstance(exc, requests.exceptions.ProxyError):
        return RETRYABLE, f"Proxy error: {_short(exc)}"
    if isinstance(exc, (requests.exceptions.RequestException, Urllib3HTTPError)):
        if (
            has(ConnectionRefusedError)
            or any(getattr(err, "errno", None) == errno.ECONNREFUSED for err in chain)
            or text_has("Connection refused", "[Errno 111]")
        ):
            return RETRYABLE, f"Connection refused ({where})"
        if has(socket.gaierror) or text_has(
            "Name or service not known",
            "Failed to resolve",
            "nodename nor servname",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
        ):
            return RETRYABLE, f"Cannot resolve host name ({where})"
        if has(ConnectionResetError):
            return RETRYABLE, f"Connection reset by peer ({where})"
        if has(http.client.RemoteDisconnected, http.client.IncompleteRead) or text_has(
            "RemoteDisconnected", "Connection aborted", "IncompleteRead"
        ):
            return RETRYABLE, (
                f"Connection closed by the server without a complete response ({where})"
            )
        if isinstance(
            exc,
            (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ),
        ):
            return RETRYABLE, f"Broken response body ({where}): {_short(exc)}"
        if has(OSError):
            os_error = next(e for e in chain if isinstance(e, OSError))
            if os_error.strerror:
                return RETRYABLE, f"Connection failed ({where}): {os_error.strerror}"
        return RETRYABLE, f"Connection error ({where}): {_short(exc)}"
    # raised before anything reached the network (bad header value, CA bundle...)
    return PERMANENT, f"Request could not be sent: {type(exc).__name__}: {_short(exc)}"


def _short(exc, limit=300):
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*", "", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _environment_settings(session, url):
    """Proxy and certificate settings for ``url``, computed once per session and
    host: ``requests`` reads them by walking ``os.environ`` on every call, which
    costs about a third of a keep-alive request's CPU."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    cache = session.__dict__.setdefault("_bj_env_settings", {})
    settings = cache.get(key)
    if settings is None:
        settings = session.merge_environment_settings(url, {}, True, None, None)
        cache[key] = settings
    return dict(settings, proxies=dict(settings.get("proxies") or {}))


def send(request, session=None):
    """Send ``request``; return an :class:`OutboundResult`. Never raises for HTTP.

    ``session`` is a pooled session (see :class:`SessionPool`); without one a
    throw-away session is used and closed. Redirects are never followed.
    """
    url = build_url(request.url, request.params)
    own_session = session is None
    if own_session:
        session = new_session()
    retry = SyncRetry.for_request(request)
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.max_retries = retry
    start = time.monotonic()

    def elapsed_ms():
        return int(round((time.monotonic() - start) * 1000))

    status = None
    try:
        prepared = session.prepare_request(
            requests.Request(
                method=(request.method or "GET").upper(),
                url=url,
                headers=_clean_headers(request.headers),
                data=request.body,
            )
        )
        url = prepared.url
        settings = _environment_settings(session, prepared.url)
        response = session.send(
            prepared,
            timeout=(request.connect_timeout, request.read_timeout),
            allow_redirects=False,
            **settings,
        )
        status = response.status_code
        headers = response.headers
        body = _read_body(response)
    except Exception as exc:  # noqa: BLE001 -- the transport reports, never raises
        outcome, message = _describe_exception(exc, request, url)
        if status is not None:
            message = f"HTTP {status}, then {message[0].lower()}{message[1:]}"
        return OutboundResult(
            status_code=status,
            response_headers={},
            response_text="",
            attempts=retry.attempts,
            elapsed_ms=elapsed_ms(),
            outcome=outcome,
            error=message,
            retry_after=None,
            url=url or "",
            location=None,
        )
    finally:
        if own_session:
            session.close()

    outcome = classify(status)
    location = headers.get("Location") if 300 <= status < 400 else None
    error = None
    if outcome != SUCCESS:
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error = f"Redirect ({status}) to {redact_url(location or '?')} not followed"
    return OutboundResult(
        status_code=status,
        response_headers=dict(headers),
        response_text=body.decode(_response_encoding(response), "replace"),
        attempts=retry.attempts,
        elapsed_ms=elapsed_ms(),
        outcome=outcome,
        error=error,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        url=url,
        location=location,
    )


# ----------------------------------------------------------------------------
# Concurrent sending
# ----------------------------------------------------------------------------

#: Worker threads that send HTTP requests for one process (sessions are pooled
#: per thread, so these threads keep their keep-alive connections across calls).
MAX_PARALLEL = 16

_executor_lock = threading.Lock()
_executor_state = {"pid": None, "executor": None}


def _executor():
    """The process's sender threads, recreated after a fork."""
    with _executor_lock:
        if _executor_state["pid"] != os.getpid() or not _executor_state["executor"]:
            _executor_state["executor"] = ThreadPoolExecutor(
                max_workers=MAX_PARALLEL, thread_name_prefix="bj_api_sync_http"
            )
            _executor_state["pid"] = os.getpid()
        return _executor_state["executor"]


def _send_pooled(pool, request, key):
    return send(request, session=pool.get(key))


def _send_lane(pool, jobs):
    """Send one after the other; after a retryable failure the rest of the lane
    is not sent (``None``): a receiver in trouble gets one failed attempt per
    lane, not a burst."""
    results = []
    for request, key in jobs:
        result = _send_pooled(pool, request, key)
        results.append(result)
        if result.outcome == RETRYABLE:
            results += [None] * (len(jobs) - len(results))
            break
    return results


def send_many(jobs, pool=None, limits=None):
    """Send several requests; return their results in the same order.

    Requests sharing a session key are spread over at most ``limits[key]``
    lanes (default 1) that run at the same time, each lane sending its share
    one after the other — so one receiver never gets more than its limit of
    concurrent requests, while several receivers are served in parallel. A lane
    stops at its first retryable failure: the requests it did not send get
    ``None`` instead of a result.

    :param jobs: list of ``(OutboundRequest, session_key)``
    :param pool: the :class:`SessionPool` to take sessions from (default pool)
    :param limits: ``{session_key: max concurrent requests}``
    """
    pool = pool or DEFAULT_POOL
    limits = limits or {}
    groups = {}
    for index, (_request, key) in enumerate(jobs):
        groups.setdefault(key, []).append(index)
    lanes = []
    for key, indexes in groups.items():
        width = max(1, min(int(limits.get(key) or 1), len(indexes)))
        lanes += [indexes[start::width] for start in range(width)]
    if len(lanes) <= 1:
        return _send_lane(pool, jobs)
    executor = _executor()
    futures = [
        (lane, executor.submit(_send_lane, pool, [jobs[i] for i in lane]))
        for lane in lanes
    ]
    results = [None] * len(jobs)
    for lane, future in futures:
        for index, result in zip(lane, future.result(), strict=True):
            results[index] = result
    return results
