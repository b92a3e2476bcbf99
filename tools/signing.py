"""Standard Webhooks signatures (https://www.standardwebhooks.com).

No ``odoo`` import. Receivers verify our requests with any Standard Webhooks
library: ``webhook-signature: v1,<base64 HMAC-SHA256("<id>.<timestamp>.<body>")>``
keyed with the base64-decoded part of ``whsec_<base64>``.
"""

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds


class SignatureError(ValueError):
    """A webhook signature, timestamp or secret that does not check out."""


def generate_secret():
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def secret_key(secret):
    """The HMAC key of ``secret`` (``whsec_`` prefix optional)."""
    text = str(secret or "").strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    if not text:
        raise SignatureError("The signing secret is empty.")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("The signing secret is not valid base64.") from exc


def _as_bytes(body):
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def sign(secret, msg_id, timestamp, body):
    """``v1,<base64 signature>`` of ``body`` for ``msg_id`` at unix ``timestamp``."""
    to_sign = f"{msg_id}.{int(timestamp)}.".encode() + _as_bytes(body)
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secrets, msg_id, timestamp, body):
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers.

    ``secrets`` lists the active secrets (two during a rotation): one signature
    each, space-separated.
    """
    if isinstance(secrets, str):
        secrets = [secrets]
    keys = list(dict.fromkeys(s for s in (secrets or []) if s))
    if not keys:
        raise SignatureError("No signing secret given.")
    return {
        "webhook-id": str(msg_id),
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in keys),
    }


def verify(secrets, headers, body, tolerance=DEFAULT_TOLERANCE, now=None):
    """Check a signed request as a receiver would; return True or raise.

    ``secrets`` is one secret or a list of them (both secrets during a
    rotation): a ``v1`` signature made with any of them is accepted. Unusable
    secrets (empty, not base64) are skipped.

    :raises SignatureError: missing headers, timestamp outside ``tolerance``
        seconds of ``now``, or no matching ``v1`` signature.
    """
    if isinstance(secrets, str):
        secrets = [secrets]
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    msg_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise SignatureError("Missing webhook-id, webhook-timestamp or signature.")
    try:
        timestamp = int(timestamp)
    except ValueError as exc:
        raise SignatureError("Invalid webhook-timestamp.") from exc
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError("The webhook-timestamp is too old or too new.")
    expected = []
    for secret in secrets or ():
        try:
            expected.append(sign(secret, msg_id, timestamp, body).partition(",")[2])
        except SignatureError:
            continue
    if not expected:
        raise SignatureError("No usable signing secret.")
    # Every candidate is compared with every secret: the time taken does not
    # tell which part matched.
    matched = False
    for candidate in str(signatures).split():
        version, _sep, value = candidate.partition(",")
        for digest in expected:
            matched |= version == "v1" and hmac.compare_digest(
                value.encode(), digest.encode()
            )
    if not matched:
        raise SignatureError("No matching signature.")
    return True
