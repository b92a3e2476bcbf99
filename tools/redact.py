"""Masking of secrets before anything is logged, previewed or shown.

No ``odoo`` import. Header names and URL parameters are masked by name; known
secret values are masked wherever they appear in a text with :func:`redact_text`.
"""

import contextlib
import json
import re
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"
BODY_LIMIT = 65536  # bytes kept of a logged request or response body

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie"}
)
_SECRET_HEADER_WORDS = ("token", "secret", "key", "signature", "password", "auth")
_NOT_SECRET_HEADER_PARTS = ("idempotency-key",)
_SECRET_PARAM_WORDS = (
    "token",
    "secret",
    "key",
    "signature",
    "password",
    "passwd",
    "credential",
)
_SECRET_PARAM_NAMES = frozenset({"sig", "pwd", "pass", "auth", "authorization"})


def is_secret_header(name):
    """Whether a header called ``name`` carries a secret (case-insensitive)."""
    name = str(name or "").strip().lower()
    if name in _SECRET_HEADERS:
        return True
    for part in _NOT_SECRET_HEADER_PARTS:
        name = name.replace(part, "")
    return any(word in name for word in _SECRET_HEADER_WORDS)


def redact_headers(headers):
    """A copy of ``headers`` with the values of secret headers replaced by ``***``.

    Empty values are kept as they are: they reveal nothing and help debugging.
    """
    if not headers:
        return {}
    return {
        key: (
            REDACTED
            if value not in (None, "", b"") and is_secret_header(key)
            else value
        )
        for key, value in dict(headers).items()
    }


def is_secret_param(name):
    """Whether a query parameter called ``name`` looks like a secret."""
    name = unquote_plus(str(name or "")).strip().lower()
    if name in _SECRET_PARAM_NAMES:
        return True
    return any(word in name for word in _SECRET_PARAM_WORDS)


def _redact_pairs(text):
    """Mask the values of secret-looking ``name=value`` pairs of a query string."""
    if not text:
        return text
    pieces = []
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if eq and value and is_secret_param(name):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return "&".join(pieces)


def redact_url(url):
    """``url`` with its userinfo and secret-looking query parameters masked.

    ``https://user:pw@host/p?api_key=1&q=2`` → ``https://***@host/p?api_key=***&q=2``.
    The rest of the URL is kept byte for byte.
    """
    if not url or not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        # not parseable: at least hide "user:pass@" and "secret=value" pairs
        url = re.sub(r"(//)[^/@\s]*@", r"\1" + REDACTED + "@", url)
        return re.sub(
            r"([?&#;])([^=&#\s]+)=([^&#\s]*)",
            lambda m: (
                f"{m.group(1)}{m.group(2)}={REDACTED}"
                if m.group(3) and is_secret_param(m.group(2))
                else m.group(0)
            ),
            url,
        )
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    fragment = parts.fragment
    if "=" in fragment:
        fragment = _redact_pairs(fragment)
    return urlunsplit(
        (parts.scheme, netloc, parts.path, _redact_pairs(parts.query), fragment)
    )


def _escaped_forms(secret):
    """``secret`` as it may appear in an error text: as is, as Python shows it
    (``repr`` of the text and of its bytes: CR/LF become ``\\r\\n``), as JSON
    shows it, and URL-quoted."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):  # not Latin-1: no such form
            forms.add(repr(secret.encode(encoding))[2:-1])
    return forms


def redact_text(text, secrets):
    """``text`` with every occurrence of each secret (4+ characters) masked.

    The escaped forms of each secret are masked too (see :func:`_escaped_forms`):
    an exception message quoting a header value with ``repr`` or a URL with the
    secret quoted in it must not show it.
    """
    if not text or not secrets:
        return text
    values = set()
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            values |= {f for f in _escaped_forms(str(secret)) if len(f) >= 4}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def truncate(text, limit=BODY_LIMIT):
    """``text`` cut to at most ``limit`` UTF-8 bytes, with a visible marker.

    Unchanged when it fits; otherwise cut on a character boundary and followed by
    ``\\n…[truncated by bj_api_sync: N bytes in total]``.
    """
    if not text:
        return text
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    head = data[: max(0, limit)].decode("utf-8", "ignore")
    return f"{head}\n…[truncated by bj_api_sync: {len(data)} bytes in total]"
