"""Reading the JSON body of an incoming request (SPEC §11).

No ``odoo`` import. :func:`check_length` and :func:`check_read` bound its size,
:func:`parse` turns it into JSON values: a body that is too large, without a
length, not JSON or nested too deeply is refused with :class:`BodyError`
carrying the HTTP status to answer (413, 411 or 400).
"""

import json

#: Objects and arrays nested deeper than this are refused (400).
MAX_DEPTH = 32
#: Default largest body, in bytes (system parameter bj_api_sync.inbound_max_bytes).
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class BodyError(ValueError):
    """A request body that cannot be read as JSON; ``status`` is the answer."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def is_json_type(content_type):
    """Whether a Content-Type header names JSON (``application/json`` or a
    ``+json`` type, any parameters)."""
    mimetype = str(content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def check_length(content_length, transfer_encoding, limit):
    """Refuse a body before reading it: 411 when it comes without a length
    (chunked), 413 when the announced length exceeds ``limit`` bytes.

    A body with a Content-Length is read through a stream bounded by it, so
    announcing the length up front is what keeps reading it bounded.
    """
    if transfer_encoding:
        raise BodyError(
            411, "Chunked request bodies are not accepted: send a Content-Length."
        )
    if content_length is not None and content_length > limit:
        raise BodyError(
            413, f"The request body is larger than the limit of {limit} bytes."
        )


def check_read(data, limit):
    """The bytes actually read, refused (413) beyond ``limit``."""
    if len(data) > limit:
        raise BodyError(
            413, f"The request body is larger than the limit of {limit} bytes."
        )
    return data


def depth(value):
    """How deeply objects and arrays nest in ``value`` (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse(data, max_depth=MAX_DEPTH):
    """The JSON value of ``data`` (bytes, UTF-8).

    :raises BodyError: 400 for an empty body, bad UTF-8, bad JSON, NaN or
        Infinity, or nesting deeper than ``max_depth``
    """
    if not data or not data.strip():
        raise BodyError(400, "The request body is empty: a JSON value is expected.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "The request body is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise BodyError(
            400, f"The JSON body is nested deeper than {max_depth} levels."
        ) from None
    except ValueError as error:
        raise BodyError(400, f"The request body is not valid JSON: {error}") from None
    if depth(value) > max_depth:
        raise BodyError(400, f"The JSON body is nested deeper than {max_depth} levels.")
    return value
