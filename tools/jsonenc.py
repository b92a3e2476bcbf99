"""JSON encoding of payloads (compact, UTF-8) and nested-key helpers.

No ``odoo`` import. Types JSON lacks are encoded the way SPEC §3 describes:
datetimes as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), dates as ``YYYY-MM-DD``, ``Decimal``
as a number, bytes as base64; anything else as ``str(obj)``. What is sent
(:func:`dumps`, :func:`encode`) never holds NaN or Infinity: those, and object
keys JSON cannot carry, raise ``ValueError`` naming where they are.
"""

import base64
import json
import math
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


_KEY_TYPES = (str, int, float, bool, type(None))


def _child_path(path, key):
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}[{key!r}]"


def _not_finite(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Decimal):
        return not value.is_finite()
    return False


def _find_problem(obj, path="$", depth=0):
    """Where ``obj`` holds what JSON cannot carry: ``(kind, path, culprit)``
    with kind ``"number"`` (NaN, ±Infinity) or ``"key"`` (an object key that
    is not text, a number, a boolean or null); None when nothing is found."""
    if depth > 200:
        return None
    if _not_finite(obj):
        return "number", path, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, _KEY_TYPES):
                return "key", path, key
            if _not_finite(key):
                return "number", f"{path} (a key)", key
            found = _find_problem(value, _child_path(path, key), depth + 1)
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple, set, frozenset)):
        for index, item in enumerate(obj):
            found = _find_problem(item, _child_path(path, index), depth + 1)
            if found:
                return found
    return None


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encoding_error(obj, error):
    """A ValueError naming what in ``obj`` made ``json`` fail, or None when
    ``error`` is about something else (e.g. a circular reference)."""
    text = str(error)
    if not text.startswith(("Out of range float", "keys must be")):
        return None
    found = _find_problem(obj)
    if found and found[0] == "key":
        _kind, path, key = found
        return ValueError(
            "JSON object keys must be text, numbers, booleans or null: "
            f"{path} has the key {_short_repr(key)} (a {type(key).__name__})."
        )
    if text.startswith("Out of range float"):
        where = f": {found[1]} is {found[2]!r}" if found else ""
        return ValueError(f"NaN and Infinity cannot be sent as JSON{where}.")
    return ValueError(
        f"JSON object keys must be text, numbers, booleans or null: {text}."
    )


def dumps(obj):
    """Compact JSON text (no spaces, non-ASCII kept as is).

    Strict, as what it makes is sent: NaN and ±Infinity (float or ``Decimal``)
    and object keys other than str, int, float, bool or None raise
    ``ValueError`` naming the place, e.g. ``NaN and Infinity cannot be sent as
    JSON: $.lines[2].price is nan.`` (``json`` itself would write the invalid
    ``NaN`` or raise a ``TypeError``).
    """
    try:
        return json.dumps(
            obj,
            separators=(",", ":"),
            ensure_ascii=False,
            default=_default,
            allow_nan=False,
        )
    except (ValueError, TypeError) as error:
        explained = _encoding_error(obj, error)
        if explained is None:
            raise
        raise explained from None


def _lenient_keys(obj, depth=0):
    """``obj`` with object keys JSON cannot carry turned into text."""
    if depth > 200:
        return obj
    if isinstance(obj, dict):
        return {
            (key if isinstance(key, _KEY_TYPES) else str(key)): _lenient_keys(
                value, depth + 1
            )
            for key, value in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_lenient_keys(item, depth + 1) for item in obj]
    return obj


def dumps_pretty(obj):
    """JSON text indented by 2, for previews and logs — never for sending.

    Lenient on purpose, so a preview or a log row can show a payload that
    :func:`dumps` refuses: NaN and ±Infinity are written as ``NaN`` /
    ``Infinity`` (not valid JSON, but visible), object keys JSON cannot carry
    are written as ``str(key)``.
    """
    try:
        return json.dumps(
            obj, indent=2, ensure_ascii=False, default=_default, allow_nan=True
        )
    except TypeError as error:
        if not str(error).startswith("keys must be"):
            raise
        return json.dumps(
            _lenient_keys(obj),
            indent=2,
            ensure_ascii=False,
            default=_default,
            allow_nan=True,
        )


def encode(obj):
    """Compact JSON as UTF-8 bytes, ready to be sent (errors as :func:`dumps`)."""
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


def short_repr(value, limit=80):
    """A value as compact JSON for messages, cut at ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
