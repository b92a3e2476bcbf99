"""JSON encoding of payloads (compact, UTF-8) and nested-key helpers.

No ``odoo`` import. Types JSON lacks are encoded the way SPEC §3 describes:
datetimes as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), dates as ``YYYY-MM-DD``, ``Decimal``
as a number, bytes as base64; anything else as ``str(obj)``.
"""

import base64
import json
from datetime import date, datetime, time, timezone
from decimal import Decimal


def format_datetime(value):
    """``YYYY-MM-DDTHH:MM:SSZ`` for a datetime (naive ones are taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_date(value):
    """``YYYY-MM-DD`` for a date."""
    return value.strftime("%Y-%m-%d")


def _default(obj):
    if isinstance(obj, datetime):
        return format_datetime(obj)
    if isinstance(obj, date):
        return format_date(obj)
    if isinstance(obj, time):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def dumps(obj):
    """Compact JSON text (no spaces, non-ASCII kept as is)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default)


def dumps_pretty(obj):
    """JSON text indented by 2, for previews and logs."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=_default)


def encode(obj):
    """Compact JSON as UTF-8 bytes, ready to be sent."""
    return dumps(obj).encode("utf-8")


def _merge(target, value):
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(target.get(key), dict):
            _merge(target[key], item)
        else:
            target[key] = item


def set_nested(target, dotted_key, value):
    """Write ``value`` under ``dotted_key`` in ``target``; return ``target``.

    ``set_nested(d, "customer.email", v)`` gives ``{"customer": {"email": v}}``,
    merging with dicts already there (two dicts are merged deeply, otherwise the
    value replaces what was under the last key). Raises ``ValueError`` when the
    key is empty or an intermediate key already holds a non-object value.
    """
    parts = str(dotted_key or "").split(".")
    if not all(part.strip() for part in parts):
        raise ValueError(f"Invalid API key {dotted_key!r}: empty part in dotted name.")
    current = target
    for index, part in enumerate(parts[:-1]):
        child = current.setdefault(part, {})
        if not isinstance(child, dict):
            path = ".".join(parts[: index + 1])
            raise ValueError(
                f"Cannot set {dotted_key!r}: {path!r} already holds a "
                f"{type(child).__name__} value, not an object."
            )
        current = child
    last = parts[-1]
    if isinstance(value, dict) and isinstance(current.get(last), dict):
        _merge(current[last], value)
    else:
        current[last] = value
    return target
