"""Request body formats of outbound payloads: JSON, form, XML (SPEC §14).

No ``odoo`` import. :func:`encode` turns a payload (what the mapping lines and the
Python Script made) into the text that is sent, :func:`content_type` gives its
``Content-Type``. Form and XML bodies carry exactly what the JSON body would: the
payload goes through :func:`jsonenc.dumps` first (dates, decimals, bytes… as in
JSON; NaN, Infinity and odd keys refused the same way), then:

* ``form`` (``application/x-www-form-urlencoded``, UTF-8 percent-encoded), keys in
  the PHP / Rails bracket style with list indices: ``{"a": {"b": 1}, "c": [{"d":
  2}], "e": ["x"]}`` → ``a[b]=1&c[0][d]=2&e[0]=x``. ``true`` / ``false`` for
  booleans, an empty value for ``null`` and for an empty list or object (``k=``),
  numbers as JSON writes them. A top-level list is indexed (``0[name]=…``);
  a top-level text or number cannot be a form (refused); ``null`` is an empty body.
* ``xml`` (``application/xml; charset=utf-8``): ``<?xml …?>`` then the root
  element (``root_tag``, default ``data``) holding the payload: object keys become
  child elements in order, list items ``<item>`` elements, ``null`` and empty
  text an empty element, booleans ``true`` / ``false``. Text is escaped (``&``,
  ``<``, ``>``; a carriage return as ``&#13;`` so that parsers keep it); a key that
  is not an XML element name (NCName: no space, no colon, not starting with a
  digit…) or text holding a character XML 1.0 cannot carry is refused, naming
  the key. The document is written here, never parsed: no DTD, no entity.

Errors are :class:`BodyFormatError` (a ``ValueError``), with the key at fault.
"""

import json
import re
from urllib.parse import urlencode

from . import jsonenc

FORMATS = ("json", "form", "xml")
CONTENT_TYPES = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "xml": "application/xml; charset=utf-8",
}
DEFAULT_ROOT_TAG = "data"
LIST_ITEM_TAG = "item"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# XML 1.0 (fifth edition) NameStartChar / NameChar, without ":" (an NCName: a
# colon would need a namespace declaration).
_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff"
    "\u200c-\u200d\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf"
    "\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME_CHAR = _NAME_START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_XML_NAME_RE = re.compile(f"[{_NAME_START}][{_NAME_CHAR}]*")
# Characters XML 1.0 documents cannot hold, even escaped.
_XML_INVALID_RE = re.compile(
    "[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


class BodyFormatError(ValueError):
    """A payload that the chosen body format cannot carry; ``key`` is the
    object key at fault (None when the whole body is)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


def content_type(body_format):
    """The ``Content-Type`` of a body format (JSON for an unknown one)."""
    return CONTENT_TYPES.get(body_format or "json", CONTENT_TYPES["json"])


def is_xml_name(name):
    """Whether ``name`` can be an XML element name (an NCName)."""
    return isinstance(name, str) and bool(_XML_NAME_RE.fullmatch(name))


def encode(body, body_format="json", root_tag=DEFAULT_ROOT_TAG):
    """The text sent for ``body`` in ``body_format`` (``json``, ``form``, ``xml``).

    :raises BodyFormatError: (a ``ValueError``) for what the format cannot carry;
        ``ValueError`` from :func:`jsonenc.dumps` for what JSON cannot carry
    """
    text = jsonenc.dumps(body)
    if body_format in (None, "", "json"):
        return text
    data = json.loads(text)
    if body_format == "form":
        return form_encode(data)
    if body_format == "xml":
        return xml_encode(data, root_tag or DEFAULT_ROOT_TAG)
    raise BodyFormatError(f"Unknown body format {body_format!r}.")


# ----------------------------------------------------------------------------
# application/x-www-form-urlencoded
# ----------------------------------------------------------------------------


def _form_scalar(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)  # numbers as JSON writes them


def form_pairs(data):
    """``(key, text)`` pairs of JSON ``data`` (an object or a list), keys in
    bracket style (``a[b][0]``), in order; see the module docstring."""
    if data is None:
        return []
    if not isinstance(data, (dict, list)):
        raise BodyFormatError(
            "A form body must be an object or a list, not "
            f"{jsonenc.short_repr(data)}: set the Python Script's result to an "
            "object."
        )
    pairs = []
    stack = [(None, data)]
    # Depth-first, in order: children are pushed in reverse.
    while stack:
        prefix, value = stack.pop()
        if isinstance(value, (dict, list)) and (value or prefix is None):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = [
                (str(key) if prefix is None else f"{prefix}[{key}]", item)
                for key, item in items
            ]
            stack.extend(reversed(children))
        elif isinstance(value, (dict, list)):
            pairs.append((prefix, ""))  # empty list or object: the key, no value
        else:
            pairs.append((prefix, _form_scalar(value)))
    return pairs


def form_encode(data):
    """The ``application/x-www-form-urlencoded`` text of JSON ``data``."""
    return urlencode(form_pairs(data), encoding="utf-8")


# ----------------------------------------------------------------------------
# application/xml
# ----------------------------------------------------------------------------


def _xml_text(value, path):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return json.dumps(value)
    bad = _XML_INVALID_RE.search(value)
    if bad:
        raise BodyFormatError(
            f"The value at {path} holds the character U+{ord(bad.group()):04X}, "
            "which XML 1.0 cannot carry.",
            key=path,
        )
    return value.translate(_XML_ESCAPES)


def _child_path(path, key):
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def xml_encode(data, root_tag=DEFAULT_ROOT_TAG):
    """The XML document of JSON ``data`` under ``<root_tag>``; see the module
    docstring.

    :raises BodyFormatError: for a root tag or key that is not an XML name, or
        text XML cannot carry
    """
    if not is_xml_name(root_tag):
        raise BodyFormatError(
            f"XML Root Tag {root_tag!r} is not a valid XML element name.",
            key=root_tag,
        )
    parts = [XML_DECLARATION]
    # Iterative walk: ("open", tag, value, path) writes an element, ("close", tag)
    # ends one.
    stack = [("open", root_tag, data, "$")]
    while stack:
        entry = stack.pop()
        if entry[0] == "close":
            parts.append(f"</{entry[1]}>")
            continue
        _op, tag, value, path = entry
        if isinstance(value, dict):
            children = []
            for key, item in value.items():
                if not is_xml_name(key):
                    raise BodyFormatError(
                        f"The key {key!r} at {path} is not a valid XML element "
                        "name (letters, digits, '-', '_', '.'; no space or ':'; "
                        "not starting with a digit): rename it in the mapping "
                        "lines or choose the JSON body format.",
                        key=key,
                    )
                children.append(("open", key, item, _child_path(path, key)))
        elif isinstance(value, list):
            children = [
                ("open", LIST_ITEM_TAG, item, _child_path(path, index))
                for index, item in enumerate(value)
            ]
        else:
            text = _xml_text(value, path)
            parts.append(f"<{tag}>{text}</{tag}>" if text else f"<{tag}/>")
            continue
        if not children:
            parts.append(f"<{tag}/>")
            continue
        parts.append(f"<{tag}>")
        stack.append(("close", tag))
        stack.extend(reversed(children))
    return "".join(parts)
