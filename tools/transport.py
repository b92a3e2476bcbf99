"""HTTP transport of bj_api_sync: pooled sessions, quick retries, plain results.

No ``odoo`` import: the models build an :class:`OutboundRequest`, call :func:`send`
and store the :class:`OutboundResult`. ``send`` never raises for network or HTTP
problems; it classifies them as ``success``, ``retryable`` or ``permanent``.

Runs on urllib3 1.26.x and 2.x (the lines Odoo pins) and always goes through
``requests.Session.send`` so that Odoo's test harness, which patches it, still
sees every request. What a hostile URL or receiver could do is bounded here:
the host actually connected to is checked against an allow-list
(:func:`url_host`, :func:`host_allowed`), the read timeout covers a whole
response (a watchdog thread cuts a slow drip), bodies are decoded with a size
limit (no decompression bomb), header values that would split a header are
refused before anything is sent.
"""

import codecs
import contextlib
import email.utils
import errno
import heapq
import http.client
import itertools
import logging
import math
import os
import queue
import re
import socket
import ssl
import threading
import time
import unicodedata
import zlib
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import poolmanager as urllib3_poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    HTTPError as Urllib3HTTPError,
)
from urllib3.exceptions import (
    LocationParseError,
    MaxRetryError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import parse_url
from urllib3.util.retry import Retry

from .redact import redact_url

RETRY_STATUSES = (429, 500, 502, 503, 504)
RETRYABLE_4XX = (408, 425, 429)
BACKOFF_CAP = 30.0  # seconds, longest sleep between two quick retries
RESPONSE_READ_LIMIT = 1024 * 1024  # bytes of (decoded) response body kept
RESPONSE_CHUNK = 64 * 1024  # bytes read or decoded at a time
ACCEPT_ENCODING = "gzip, deflate"  # the encodings :func:`send` can decode
MAX_CONTENT_ENCODINGS = 4  # stacked Content-Encoding values decoded at most
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
    """Everything needed to send one HTTP request (headers already merged).

    ``allowed_hosts``: host patterns (``*`` wildcards, see :func:`host_allowed`);
    when not empty, :func:`send` refuses any other host before connecting.

    ``client_cert``: ``(cert_path, key_path)`` of a client certificate (mutual
    TLS); ``ca_bundle``: path of the CA file to verify the server against
    instead of the default store. Both are passed to ``requests`` with each
    call; a pooled session must only ever see one such setting (see
    :class:`SessionPool`: the models put a fingerprint of it in the key).
    """

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
    allowed_hosts: tuple = ()
    #: called before every attempt, quick retries included (a rate limit's
    #: gate, see ``tools/ratelimit.py``); it may wait
    before_attempt: object = None
    client_cert: tuple | None = None
    ca_bundle: str | None = None


@dataclass
class OutboundResult:
    """What happened to an :class:`OutboundRequest` (plain data, never raises).

    ``response_truncated``: the body went past :data:`RESPONSE_READ_LIMIT`
    (decoded bytes) and ``response_text`` holds only its beginning.
    """

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
    response_truncated: bool = False


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


_CHAR_NAMES = {
    " ": "a space",
    "\t": "a tab",
    "\n": "a line break (LF)",
    "\r": "a line break (CR)",
    "\x00": "a NUL character",
    "\\": "a backslash ('\\')",
}


def _char_label(char):
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    return f"{code} {name}" if name else code


def _describe_char(char):
    """``char`` named for an error message, visible even when it is not."""
    if char in _CHAR_NAMES:
        return _CHAR_NAMES[char]
    if char.isprintable():
        return f"the character {char!r} ({_char_label(char)})"
    return f"the invisible character {_char_label(char)}"


# control characters but tab, and anything past Latin-1
_BAD_HEADER_CHAR_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]")


def invalid_value_reason(value):
    """Why ``value`` cannot travel in an HTTP header, or None when it can.

    Refused: CR and LF (they would end the header and start another), NUL and
    the other control characters except tab, and anything outside Latin-1 (HTTP
    sends header values as Latin-1 bytes). The text reads after a field name,
    e.g. ``"contains a line break (CR/LF)"``; it never repeats the value, which
    may be a secret.
    """
    if value is None or value is False:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    value = str(value)
    if "\r" in value or "\n" in value:
        return "contains a line break (CR/LF)"
    match = _BAD_HEADER_CHAR_RE.search(value)
    if match is None:
        return None
    char = match.group()
    if char == "\x00":
        return "contains a NUL character"
    if ord(char) <= 0xFF:
        return f"contains the control character U+{ord(char):04X}"
    shown = f"{char!r} " if char.isprintable() else ""
    return f"contains the non-Latin-1 character {shown}({_char_label(char)})"


def is_valid_header_value(value):
    """Whether ``value`` can be sent as an HTTP header value
    (see :func:`invalid_value_reason`)."""
    return invalid_value_reason(value) is None


def url_host(url):
    """The host ``requests`` connects to for ``url``, or None.

    Computed the way ``requests`` prepares a URL (``PreparedRequest.prepare_url``,
    i.e. urllib3's ``parse_url`` and IDNA), not with ``urllib.parse``: the two
    disagree on URLs such as ``http://127.0.0.1:8069\\@api.example.com/``.
    Lowercase, IPv6 addresses without brackets, None when the URL has no host or
    does not parse.
    """
    if not url:
        return None
    try:
        prepared = requests.models.PreparedRequest()
        prepared.prepare_url(str(url), None)
        host = parse_url(prepared.url).host
    except (requests.exceptions.RequestException, LocationParseError, ValueError):
        return None
    if not host:
        return None
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _host_patterns(patterns):
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    return [str(p).strip().lower() for p in patterns or () if p and str(p).strip()]


def host_allowed(host, patterns):
    """Whether ``host`` matches one of ``patterns`` (case-insensitive).

    A pattern is a host name where ``*`` stands for any run of characters
    (``*.example.com``, ``api-*.example.com``); other characters match
    themselves. ``patterns`` is a list or a comma-separated string; when it is
    empty every host is allowed. A missing host is refused when patterns exist.
    A final dot (``example.com.``) is ignored on both sides.
    """
    patterns = _host_patterns(patterns)
    if not patterns:
        return True
    host = str(host or "").strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.removesuffix(".")
    if not host:
        return False
    for pattern in patterns:
        pattern = pattern.removesuffix(".")
        if pattern.startswith("[") and pattern.endswith("]"):
            pattern = pattern[1:-1]
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if re.fullmatch(regex, host, re.DOTALL):
            return True
    return False


# RFC 3986: unreserved, reserved (gen-delims and sub-delims) and "%".
_URL_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "-._~:/?#[]@!$&'()*+,;=%"
)


def _bad_url_char(url):
    """``(position, char)`` of the first character RFC 3986 does not allow in a
    URL, ``{field_path}`` placeholders aside; None when there is none."""
    spans = [m.span() for m in _PLACEHOLDER_RE.finditer(url)]
    index = 0
    for position, char in enumerate(url):
        while index < len(spans) and spans[index][1] <= position:
            index += 1
        if index < len(spans) and spans[index][0] <= position:
            continue
        if char not in _URL_CHARS:
            return position, char
    return None


def validate_url(url):
    """Error message if ``url`` is not an absolute http(s) URL with a host.

    ``{field_path}`` placeholders are allowed (:func:`render_url` fills them in
    before sending); any other character outside RFC 3986 (spaces, backslash,
    control characters, non-ASCII, ``<>"{}|^`` and backtick) is refused, and so
    is a URL whose host depends on the parser that reads it. Returns None for a
    valid URL.
    """
    if not url or not str(url).strip():
        return "The URL is empty."
    url = str(url).strip()
    bad = _bad_url_char(url)
    if bad:
        position, char = bad
        return (
            f"The URL contains {_describe_char(char)} at position {position + 1}: "
            "only ASCII letters, digits and -._~:/?#[]@!$&'()*+,;=% may appear "
            "in a URL (percent-encode anything else)."
        )
    # a placeholder renders as URL-quoted text: a neutral word stands for it
    concrete = _PLACEHOLDER_RE.sub("x", url)
    try:
        parts = urlsplit(concrete)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        return f"The URL is not valid: {exc}."
    if parts.scheme.lower() not in ("http", "https"):
        return "The URL must start with http:// or https://."
    if not parts.hostname:
        return "The URL has no host name."
    if "%" in parts.hostname:
        return "The URL's host name must not contain percent-encoded characters."
    host = url_host(concrete)
    if host is None:
        return "The URL is not valid: its host name cannot be read."
    if host != parts.hostname.lower():
        return (
            f"The URL is ambiguous: its host reads as {parts.hostname} or as "
            f"{host} depending on the parser."
        )
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

    def __init__(
        self,
        *args,
        retry_after_cap=30.0,
        attempt_log=None,
        before_attempt=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap
        self.attempt_log = [] if attempt_log is None else attempt_log
        self.before_attempt = before_attempt

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
            before_attempt=request.before_attempt,
        )

    def new(self, **kwargs):
        kwargs.setdefault("retry_after_cap", self.retry_after_cap)
        kwargs.setdefault("attempt_log", self.attempt_log)
        kwargs.setdefault("before_attempt", self.before_attempt)
        return super().new(**kwargs)

    def sleep(self, response=None):
        """The backoff (or Retry-After) wait, then the rate limit's turn."""
        slept = super().sleep(response)
        if self.before_attempt is not None:
            self.before_attempt()
        return slept

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
# Deadlines: a read timeout for the whole response, not for each socket read
# ----------------------------------------------------------------------------
#
# urllib3's read timeout bounds each socket read, so a receiver that sends one
# byte a second keeps a worker for as long as it likes. A shared watchdog thread
# shuts the socket down when an attempt's deadline passes: the blocked read then
# ends at once, on both urllib3 lines, with or without TLS. The connection
# classes below arm the watchdog from getresponse() until the response is read
# or released, and turn the cut into a timeout.


class _Watch:
    """One armed deadline on one socket."""

    __slots__ = ("deadline", "sock", "fired", "cancelled", "lock")

    def __init__(self, sock, seconds):
        self.deadline = time.monotonic() + seconds
        self.sock = sock
        self.fired = False
        self.cancelled = False
        self.lock = threading.Lock()

    @property
    def live(self):
        return not (self.fired or self.cancelled)

    def cancel(self):
        """Disarm (idempotent); call before the socket is closed."""
        with self.lock:
            self.cancelled = True
            self.sock = None

    def fire(self):
        # under the lock: cancel() (then close()) cannot run in between
        with self.lock:
            if self.cancelled or self.fired:
                return
            self.fired = True
            sock, self.sock = self.sock, None
            # the plain socket's shutdown, even for an SSLSocket: it wakes a read
            # blocked in another thread, TLS or not (already closed: nothing to do)
            with contextlib.suppress(OSError, TypeError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process firing :class:`_Watch` deadlines."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._seq = itertools.count()
        self._thread = None

    def watch(self, sock, seconds):
        """Shut ``sock`` down in ``seconds`` unless the returned watch is
        cancelled first."""
        watch = _Watch(sock, seconds)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="bj_api_sync_deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (watch.deadline, next(self._seq), watch))
            if self._heap[0][2] is watch:
                self._cond.notify()
        return watch

    def pending(self):
        """Number of armed watches that are neither cancelled nor fired."""
        with self._cond:
            return sum(1 for _d, _s, watch in self._heap if watch.live)

    def _run(self):
        while True:
            with self._cond:
                while True:
                    while self._heap and not self._heap[0][2].live:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        watch = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            watch.fire()


_WATCHDOG = _Watchdog()
if hasattr(os, "register_at_fork"):
    # the thread does not survive a fork (Odoo's prefork workers)
    os.register_at_fork(after_in_child=_WATCHDOG._reset)

#: Per thread: the read timeout of the :func:`send` in progress and the watch
#: armed for its last attempt.
_current = threading.local()


class _ReadDeadline(TimeoutError):
    """The response took longer than the read timeout as a whole."""


class _HandshakeTimeout(TimeoutError):
    """The TLS handshake took longer than the connect timeout."""


class _DeadlineConnectionMixin:
    """Arms the read deadline of each attempt made on this connection."""

    _bj_watch = None

    def _bj_disarm(self):
        watch, self._bj_watch = self._bj_watch, None
        if watch is not None:
            watch.cancel()
        return watch

    def getresponse(self):
        # no arguments: urllib3 1.26 first tries getresponse(buffering=True)
        self._bj_disarm()
        seconds = getattr(_current, "read_timeout", None)
        watch = None
        if seconds and self.sock is not None:
            watch = self._bj_watch = _WATCHDOG.watch(self.sock, seconds)
            _current.watch = watch
        try:
            return super().getresponse()
        except BaseException as exc:
            if watch is not None:
                watch.cancel()
                if watch.fired:
                    raise _ReadDeadline(
                        f"Read timed out (no full response within {seconds:g} s)"
                    ) from exc
            raise

    def close(self):
        self._bj_disarm()
        return super().close()


class _HandshakeTimeoutMixin:
    """Tells a TLS handshake timeout from a read timeout.

    Both urllib3 lines report a socket timeout during ``connect()`` as a read
    timeout; CPython already bounds the whole handshake by the socket's
    timeout, which is the connect timeout at that point.
    """

    _bj_tcp_connected = False

    def _new_conn(self):
        sock = super()._new_conn()
        self._bj_tcp_connected = True
        return sock

    def connect(self):
        self._bj_tcp_connected = False
        try:
            return super().connect()
        except TimeoutError as exc:
            # urllib3 turns TCP connect timeouts into its own ConnectTimeoutError
            # (not a builtin TimeoutError): this one came after the TCP connect,
            # in the handshake (or, through a proxy, its CONNECT tunnel)
            if self._bj_tcp_connected:
                raise _HandshakeTimeout("TLS handshake timed out") from exc
            raise


class _HTTPConnection(_DeadlineConnectionMixin, HTTPConnection):
    pass


class _HTTPSConnection(
    _DeadlineConnectionMixin, _HandshakeTimeoutMixin, HTTPSConnection
):
    pass


class _PoolMixin:
    def _put_conn(self, conn):
        # the response was read or released: its deadline no longer applies;
        # a connection cut by the watchdog is closed, never reused
        watch = None
        if isinstance(conn, _DeadlineConnectionMixin):
            watch = conn._bj_disarm()
        if watch is not None and watch.fired:
            conn.close()
        return super()._put_conn(conn)


class _HTTPConnectionPool(_PoolMixin, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(_PoolMixin, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


class SyncAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose pools use the deadline-aware connections."""

    def init_poolmanager(self, *args, **kwargs):
        result = super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES
        return result

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # SOCKS managers bring their own pool classes: left alone
        if manager.pool_classes_by_scheme is urllib3_poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# ----------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------


def new_session():
    """A keep-alive ``requests.Session`` with a modest pool for http and https."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(
            prefix,
            SyncAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE),
        )
    return session


class SessionPool:
    """One pooled ``requests.Session`` per key per thread.

    The key is chosen by the caller: the models use ``(dbname, config id)``.
    Sessions carry no configuration (headers, timeouts and retries are set per
    call), so a changed configuration keeps its connections. Sessions live in
    thread-local storage, hence ``send`` may set a per-call ``Retry`` on their
    adapters. Each thread keeps at most ``max_sessions`` sessions (least recently
    used closed). Client certificates and CA bundles do stick to a session's
    connection pools (``requests`` sets them on the pool, and keeps the
    connections open), so a key must stand for one TLS setting.
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
    if not any(key.lower() == "accept-encoding" for key in clean):
        # requests would also offer br/zstd when those libraries are installed
        clean["Accept-Encoding"] = ACCEPT_ENCODING
    return clean


def _header_problem(headers):
    """Why ``headers`` cannot be sent (naming the header, never its value)."""
    for key, value in headers.items():
        if not is_valid_header_name(key):
            return f"Invalid header: {key!r} is not a valid header name"
        reason = invalid_value_reason(value)
        if reason:
            return f"Invalid header: the value of {key} {reason}"
    return None


def _response_encoding(response):
    content_type = response.headers.get("Content-Type") or ""
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            return "utf-8"  # unknown charset: decode as UTF-8, replacing errors
    return "utf-8"


# ----------------------------------------------------------------------------
# Response bodies: read with a deadline, decoded with a size limit
# ----------------------------------------------------------------------------

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CONTENT_CODINGS = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": None}


class _ZlibStage:
    """Incremental gzip / deflate decoding whose output comes in pieces of at
    most :data:`RESPONSE_CHUNK` bytes, however much the input expands.

    gzip: several members in a row are decoded one after the other. deflate:
    zlib-wrapped as RFC 9110 says, or raw deflate as some servers send it.
    """

    def __init__(self, coding):
        self.coding = coding
        self.wbits = _CONTENT_CODINGS[coding]
        self._probe = self.wbits is None  # deflate: zlib or raw, not known yet
        self._seen = b""
        self._obj = zlib.decompressobj(
            zlib.MAX_WBITS if self.wbits is None else self.wbits
        )

    def decode(self, data):
        """Yield the decoded pieces of ``data`` (lazily: a consumer that stops
        early never makes the rest)."""
        if self._probe:
            self._seen += data
        while True:
            try:
                out = self._obj.decompress(data, RESPONSE_CHUNK)
            except zlib.error:
                if not self._probe:
                    raise
                # not zlib-wrapped: decode everything seen so far as raw deflate
                self._probe = False
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                data, self._seen = self._seen, b""
                continue
            if self._probe and len(self._seen) >= 2:
                self._probe, self._seen = False, b""  # the zlib header was fine
            data = self._obj.unconsumed_tail
            if out:
                yield out
            if self._obj.eof:
                rest = self._obj.unused_data.lstrip(b"\0")
                if self.wbits != _GZIP_WBITS or not rest:
                    return  # anything after the stream is ignored
                self._obj = zlib.decompressobj(self.wbits)  # next gzip member
                data = rest
                continue
            if not data and len(out) < RESPONSE_CHUNK:
                return

    def finish(self):
        """Yield what is left at the end of the input."""
        if not self._obj.eof:
            tail = self._obj.flush()
            if tail:
                yield tail


def _through(stage, pieces):
    for piece in pieces:
        yield from stage.decode(piece)


class _BodyDecoder:
    """Decodes a ``Content-Encoding`` stack (``gzip``, ``x-gzip``, ``deflate``,
    ``identity``, stacked as in ``gzip, gzip``) lazily and piece by piece, so
    the caller can stop at any size: a few KB on the wire cannot become GBs in
    memory. ``unsupported`` names a Content-Encoding this decoder cannot undo
    (``br``, ``zstd``, more than :data:`MAX_CONTENT_ENCODINGS` layers): the
    body is then not read at all."""

    def __init__(self, header):
        codings = [c.strip().lower() for c in (header or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self.unsupported = None
        if any(c not in _CONTENT_CODINGS for c in codings) or (
            len(codings) > MAX_CONTENT_ENCODINGS
        ):
            self.unsupported = str(header).strip()
            codings = []
        # the coding applied last is listed last and undone first
        self.stages = [_ZlibStage(c) for c in reversed(codings)]

    def decode(self, data):
        pieces = iter((data,))
        for stage in self.stages:
            pieces = _through(stage, pieces)
        return pieces

    def finish(self):
        # each stage ends once the tails of the stages before it went through
        for index, stage in enumerate(self.stages):
            pieces = stage.finish()
            for later in self.stages[index + 1 :]:
                pieces = _through(later, pieces)
            yield from pieces


def _read_timeout_error(request, url):
    return requests.exceptions.ReadTimeout(
        f"Read timed out after {request.read_timeout:g} s ({_host_port(url)})"
    )


def _read_body(response, watch, request):
    """``(body, truncated, undecoded)`` of ``response``.

    The raw stream is read without urllib3's decoding and decoded here with a
    size limit: at most :data:`RESPONSE_READ_LIMIT` decoded bytes are kept
    (``truncated`` then True). ``undecoded`` is the Content-Encoding value
    when it cannot be decoded: the body is then not read at all. Raises
    ``requests.exceptions.ReadTimeout`` when ``watch``'s deadline (the read
    timeout of the whole response) passes, whether the watchdog cut the socket
    or the bytes kept trickling in.
    """
    decoder = _BodyDecoder(response.headers.get("Content-Encoding"))
    limit = RESPONSE_READ_LIMIT
    chunks = []
    size = 0
    truncated = False

    def keep(pieces):
        nonlocal size, truncated
        for piece in pieces:
            if size + len(piece) > limit:
                piece = piece[: limit - size]
                truncated = True
            chunks.append(piece)
            size += len(piece)
            if truncated:
                return False
        return True

    def timed_out():
        return watch is not None and (watch.fired or time.monotonic() > watch.deadline)

    try:
        if decoder.unsupported:
            # not read at all (urllib3 2.x would even refuse to read some)
            return b"", False, decoder.unsupported
        complete = True
        for raw in response.raw.stream(RESPONSE_CHUNK, decode_content=False):
            if timed_out():
                raise _read_timeout_error(request, response.url)
            if not keep(decoder.decode(raw)):
                complete = False
                break
        if complete:
            keep(decoder.finish())
        # urllib3 1.26 takes a socket cut short for a normal end of body
        if watch is not None and watch.fired:
            raise _read_timeout_error(request, response.url)
    except zlib.error as exc:
        raise requests.exceptions.ContentDecodingError(
            f"cannot decode the {response.headers.get('Content-Encoding')} body: {exc}"
        ) from exc
    except requests.exceptions.ReadTimeout:
        raise
    except Exception as exc:
        if watch is not None and watch.fired:
            raise _read_timeout_error(request, response.url) from exc
        raise
    finally:
        # fully read: the connection went back to the pool; cut short: closed
        response.close()
        if watch is not None:
            watch.cancel()
    return b"".join(chunks), truncated, decoder.unsupported


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

    if has(_HandshakeTimeout):
        return RETRYABLE, (
            f"TLS handshake timed out after {request.connect_timeout:g} s ({where})"
        )
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
        hint = _tls_alert_hint(chain)
        if hint:
            return RETRYABLE, f"SSL error ({where}): {hint}"
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


#: TLS alerts a server sends about the client certificate (mutual TLS), in
#: words a user acts on: ``(OpenSSL reason codes, explanation)``.
_TLS_ALERT_HINTS = (
    (
        ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        "the server requires a client certificate (mutual TLS) and none was sent",
    ),
    (
        ("ALERT_UNKNOWN_CA",),
        "the server does not trust the client certificate (unknown CA)",
    ),
    (
        ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_EXPIRED"),
        "the server refused the client certificate",
    ),
)


def _tls_alert_hint(chain):
    """Why the server ended the TLS session, when its alert names the client
    certificate (or it hung up without a word); None otherwise."""
    errors = [err for err in chain if isinstance(err, ssl.SSLError)]
    for err in errors:
        reason = str(err.reason or "")
        for codes, text in _TLS_ALERT_HINTS:
            if any(code in reason for code in codes):
                return f"{text} ({reason})"
    if any(isinstance(err, ssl.SSLEOFError) for err in errors):
        # TLS 1.3 servers check the client certificate after the client's
        # handshake ended: a refusal often reaches the client as a bare EOF.
        return (
            "the server closed the TLS connection (EOF in violation of protocol); "
            "a server that requires a client certificate (mutual TLS) does so "
            "when none, or one it does not accept, is sent"
        )
    return None


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

    - ``request.read_timeout`` bounds each attempt's whole response (status
      line, headers and body), not each socket read; the TLS handshake is
      bounded by ``connect_timeout``.
    - ``request.allowed_hosts``: the host of the final URL (parameters added)
      is checked right before sending; a refused host gives a permanent result
      with ``attempts == 0`` and nothing goes out.
    - Header names and values are checked first (see :func:`invalid_value_reason`);
      error messages name the header, never its value.
    - Response bodies are decoded here (gzip, x-gzip, deflate, stacked), keeping
      at most :data:`RESPONSE_READ_LIMIT` decoded bytes (``response_truncated``).
      A body in an encoding that cannot be decoded (``br``, ``zstd``…, more
      than :data:`MAX_CONTENT_ENCODINGS` layers) is not read: ``response_text``
      says so instead, the outcome still follows the status. NUL characters of
      the body are replaced by U+FFFD (PostgreSQL text refuses them).
    """
    url = build_url(request.url, request.params)
    start = time.monotonic()

    def elapsed_ms():
        return int(round((time.monotonic() - start) * 1000))

    def failure(message, outcome=PERMANENT, attempts=0, status=None):
        return OutboundResult(
            status_code=status,
            response_headers={},
            response_text="",
            attempts=attempts,
            elapsed_ms=elapsed_ms(),
            outcome=outcome,
            error=message,
            retry_after=None,
            url=url or "",
            location=None,
        )

    headers = _clean_headers(request.headers)
    problem = _header_problem(headers)
    if problem:
        return failure(problem)
    own_session = session is None
    if own_session:
        session = new_session()
    retry = SyncRetry.for_request(request)
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.max_retries = retry

    status = None
    _current.read_timeout = request.read_timeout
    _current.watch = None
    try:
        prepared = session.prepare_request(
            requests.Request(
                method=(request.method or "GET").upper(),
                url=url,
                headers=headers,
                data=request.body,
            )
        )
        url = prepared.url
        if request.allowed_hosts:
            refused = _refused_host(prepared.url, request.allowed_hosts)
            if refused:
                return failure(f"Host {refused} is not in the allowed hosts")
        settings = _environment_settings(session, prepared.url)
        settings["stream"] = True  # the body is read below, with limits
        if request.client_cert:
            settings["cert"] = tuple(request.client_cert)
        if request.ca_bundle:
            settings["verify"] = request.ca_bundle
        if request.before_attempt is not None:
            # The wait for a rate limit's slot is not the exchange's time.
            start += request.before_attempt() or 0.0
        response = session.send(
            prepared,
            timeout=(request.connect_timeout, request.read_timeout),
            allow_redirects=False,
            **settings,
        )
        status = response.status_code
        headers = response.headers
        body, truncated, undecoded = _read_body(response, _current.watch, request)
    except Exception as exc:  # noqa: BLE001 -- the transport reports, never raises
        outcome, message = _describe_exception(exc, request, url)
        if status is not None:
            message = f"HTTP {status}, then {message[0].lower()}{message[1:]}"
        return failure(message, outcome, retry.attempts, status)
    finally:
        watch, _current.watch, _current.read_timeout = _current.watch, None, None
        if watch is not None:
            watch.cancel()
        if own_session:
            session.close()

    outcome = classify(status)
    location = headers.get("Location") if 300 <= status < 400 else None
    error = None
    if outcome != SUCCESS:
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error = f"Redirect ({status}) to {redact_url(location or '?')} not followed"
    if undecoded:
        text = f"[response body not read: unsupported Content-Encoding {undecoded!r}]"
    else:
        text = body.decode(_response_encoding(response), "replace")
        text = text.replace("\x00", "\ufffd")
    return OutboundResult(
        status_code=status,
        response_headers=dict(headers),
        response_text=text,
        attempts=retry.attempts,
        elapsed_ms=elapsed_ms(),
        outcome=outcome,
        error=error,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        url=url,
        location=location,
        response_truncated=truncated,
    )


def _refused_host(url, patterns):
    """The host of ``url`` when ``patterns`` refuse it, else None.

    Both parsers are asked (requests/urllib3 and ``urllib.parse``): once
    requests prepared a URL they agree, and if they ever did not, the URL is
    refused rather than trusted.
    """
    host = url_host(url)
    try:
        other = (urlsplit(url).hostname or "").lower()
    except ValueError:
        other = ""
    for candidate in (host, other):
        if not host_allowed(candidate, patterns):
            return candidate or host or "?"
    return None


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


class Dispatcher:
    """Sends requests handed over one by one, a few at a time per key, and
    gives their results back as they come in.

    The streaming counterpart of :func:`send_many`, for a caller that keeps
    handing work over while earlier requests are in flight (the delivery cron):
    at most ``limit`` requests of one session key are in flight at once, the
    others wait in that key's line, in the order they were handed over. After a
    retryable failure the requests still waiting for that key are given back
    unsent (result ``None``): a receiver in trouble gets one failed attempt per
    lane, not a burst. Results are read with :meth:`take` from the thread that
    submitted; the requests themselves run on the process's sender threads.
    """

    def __init__(self, pool=None):
        self._pool = pool or DEFAULT_POOL
        self._lock = threading.Lock()
        self._waiting = {}  # key -> deque of (token, request)
        self._running = {}  # key -> requests in flight
        self._limits = {}
        self._results = queue.SimpleQueue()
        self._outstanding = 0  # handed over, result not taken yet

    def __len__(self):
        """Requests handed over whose result was not taken yet."""
        return self._outstanding

    def submit(self, token, request, key, limit=1):
        """Hand ``request`` over; its result comes back with ``token``.

        :param limit: requests of ``key`` in flight at most (the latest given
            for a key applies)
        """
        with self._lock:
            self._outstanding += 1
            self._limits[key] = max(1, int(limit or 1))
            self._waiting.setdefault(key, deque()).append((token, request))
            self._start(key)

    def _start(self, key):
        """Start what ``key``'s limit allows (the lock is held)."""
        waiting = self._waiting[key]
        while waiting and self._running.get(key, 0) < self._limits[key]:
            token, request = waiting.popleft()
            self._running[key] = self._running.get(key, 0) + 1
            _executor().submit(self._run, token, request, key)

    def _run(self, token, request, key):
        """One lane: send, then the next request waiting for ``key``, in this
        thread (its pooled session keeps the connection), until none waits."""
        while True:
            try:
                result = send(request, session=self._pool.get(key))
            except Exception as exc:  # noqa: BLE001 -- reported like send() would
                result = OutboundResult(
                    status_code=None,
                    outcome=RETRYABLE,
                    error=f"Internal error while sending: {type(exc).__name__}: {exc}",
                    url=request.url,
                )
            with self._lock:
                waiting = self._waiting[key]
                dropped = ()
                following = None
                if result.outcome == RETRYABLE:
                    dropped = list(waiting)
                    waiting.clear()
                elif waiting and self._running[key] <= self._limits[key]:
                    following = waiting.popleft()
                if following is None:
                    self._running[key] -= 1
            self._results.put((token, result))
            for dropped_token, _request in dropped:
                self._results.put((dropped_token, None))
            if following is None:
                return
            token, request = following

    def take(self, timeout=None, gather=0.0):
        """The results in now, as ``[(token, result or None)]``: waits up to
        ``timeout`` seconds for the first one (an empty list then), not at all
        when nothing is outstanding; then up to ``gather`` seconds more for
        the next ones, as long as more are outstanding."""
        if not self._outstanding:
            return []
        try:
            items = [self._results.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + gather
        while len(items) < self._outstanding:
            if not self._results.empty():  # the only reader: get() won't wait
                items.append(self._results.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(self._results.get(timeout=left))
            except queue.Empty:
                break
        with self._lock:
            self._outstanding -= len(items)
        return items
