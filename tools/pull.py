"""Pages of a paginated GET for the import of an Out config (SPEC: Import).

No ``odoo`` import. The model sends each :class:`PageRequest` a :class:`Walker`
gives, decodes the JSON body itself, takes the objects with
:func:`extract_objects` and hands the body, headers and object count back to
:meth:`Walker.next`, which says what to fetch next or why the walk ends.

The walk is written for servers that are not quite what their documentation
says: a server may cap the page size below the one asked for (so a short first
page is not the end, and offsets advance by what was received), send relative
next links, or hand back the same cursor or link forever (stopped, with a
warning). A next link is a URL chosen by the server and is sent with the
config's credentials, so it is followed only to the configured origin unless
the caller allows the other host, and never from https down to http.
"""

from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit

STRATEGIES = ("none", "page", "offset", "next_link", "cursor")
DEFAULT_MAX_PAGES = 1000
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_KEYS_SHOWN = 20


class PullError(ValueError):
    """A response or a page link that cannot be walked; the message is shown in
    the log."""


class _Missing:
    """The type of :data:`MISSING` (falsy; compare with ``is``)."""

    def __repr__(self):
        return "MISSING"

    def __bool__(self):
        return False


MISSING = _Missing()  # what get_path returns for a path that is not there


def get_path(body, path):
    """The value at dotted ``path`` in ``body``; ``""`` or ``None``: ``body``.

    A segment of digits indexes a list ("items.0.id") when the current value is
    a list; on an object it is an ordinary key. :data:`MISSING` when a segment
    is absent (no such key, index out of range, or a scalar in the way).
    """
    if not path:
        return body
    value = body
    for segment in str(path).split("."):
        if isinstance(value, dict):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def _kind(value):
    """``a string``, ``a number``, ``null``... for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _describe_top(body):
    """What the top of ``body`` holds, to help fix a wrong path."""
    if isinstance(body, dict):
        if not body:
            return "the response is an empty object"
        keys = [str(key) for key in body]
        shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
        if len(keys) > _MAX_KEYS_SHOWN:
            shown += ", ..."
        return f"top-level keys: {shown}"
    if isinstance(body, list):
        return f"the response is a list of {len(body)} items"
    return f"the response is {_kind(body)}"


def extract_objects(body, data_path):
    """The objects of a response body: the value at ``data_path`` ('' = the body).

    A dict gives ``[dict]``; a list is returned as a list (items are NOT
    filtered: the caller counts non-object items as failed objects).

    :raises PullError: naming the path when it does not exist
        ("response_data_path 'data.items' not found in the response; top-level
        keys: a, b") or gives a scalar or null ("... gives a string, not an
        object or a list of objects").
    """
    value = get_path(body, data_path)
    if value is MISSING:
        raise PullError(
            f"response_data_path {data_path!r} not found in the response; "
            f"{_describe_top(body)}"
        )
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return list(value)
    if data_path:
        raise PullError(
            f"response_data_path {data_path!r} gives {_kind(value)}, "
            "not an object or a list of objects"
        )
    raise PullError(
        f"The response is {_kind(value)}, not an object or a list of objects "
        "(response_data_path is empty: the body itself is read)"
    )


def _split_link_params(text, pos):
    """The ``;`` parameters of one Link value from ``pos`` up to the next comma
    outside quotes: ``({name: value}, position after that comma)``. Names are
    lowercased, quotes removed; the first occurrence of a name wins (RFC 8288)."""
    parts, current = [], []
    quoted = escaped = False
    while pos < len(text):
        char = text[pos]
        pos += 1
        if quoted:
            if escaped:
                current.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
        elif char == ",":
            break
        elif char == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    params = {}
    for part in parts:
        name, _sep, value = part.partition("=")
        name = name.strip().lower()
        if name and name not in params:
            params[name] = value.strip()
    return params, pos


def parse_link_next(value):
    """The URL of ``rel="next"`` in an RFC 8288 Link header value, or None.

    Several links separated by commas, params separated by ``;``, rel quoted or
    not, several space-separated rel tokens (``rel="next last"``),
    case-insensitive; commas inside ``<...>`` (or a quoted value) do not split.
    """
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value)
    pos = 0
    while True:
        start = text.find("<", pos)
        if start < 0:
            return None
        end = text.find(">", start + 1)
        if end < 0:
            return None
        params, pos = _split_link_params(text, end + 1)
        if "next" in params.get("rel", "").lower().split():
            return text[start + 1 : end].strip() or None


# the config field each PagePlan field comes from, for error messages
_FIELD_LABELS = {
    "strategy": "pull_pagination",
    "page_param": "pull_page_param",
    "page_start": "pull_page_start",
    "size_param": "pull_size_param",
    "page_size": "page_size",
    "offset_param": "pull_offset_param",
    "next_path": "pull_next_path",
    "cursor_path": "pull_cursor_path",
    "cursor_param": "pull_cursor_param",
    "max_pages": "pull_max_pages",
}

# the PagePlan fields each strategy cannot do without
_REQUIRED = {
    "none": (),
    "page": ("page_param",),
    "offset": ("offset_param",),
    "next_link": (),
    "cursor": ("cursor_path", "cursor_param"),
}


def _pages(count):
    return f"{count} page" if count == 1 else f"{count} pages"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class PagePlan:
    """How to page an import: the ``pull_*`` fields of a config.

    ``size_param`` empty: no size parameter is sent (the server picks the
    size). ``next_path`` empty: the next URL comes from the ``Link`` header.

    :raises PullError: naming the config field that does not fit the strategy.
    """

    strategy: str = "none"
    page_param: str = "page"
    page_start: int = 1
    size_param: str = ""
    page_size: int = 100
    offset_param: str = "offset"
    next_path: str = ""
    cursor_path: str = ""
    cursor_param: str = "cursor"
    max_pages: int = DEFAULT_MAX_PAGES

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise PullError(
                f"pull_pagination must be one of {', '.join(STRATEGIES)} "
                f"(got {self.strategy!r})"
            )
        for name in ("page_size", "max_pages"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise PullError(
                    f"{_FIELD_LABELS[name]} must be a whole number of 1 or more "
                    f"(got {value!r})"
                )
        if not _is_int(self.page_start) or self.page_start < 0:
            raise PullError(
                "pull_page_start must be a whole number of 0 or more "
                f"(got {self.page_start!r})"
            )
        for name in _REQUIRED[self.strategy]:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise PullError(
                    f"{_FIELD_LABELS[name]} is required for {self.strategy} pagination"
                )


@dataclass
class PageRequest:
    """One GET of the walk: ``params`` are added to the query of ``url``."""

    number: int  # 1-based page number in this walk
    url: str  # the URL to GET
    params: dict = field(default_factory=dict)  # empty for next links


def _header(headers, name):
    """The value(s) of header ``name`` in any dict-like, whatever its case;
    several values are joined with commas (as HTTP allows), or None."""
    if not headers:
        return None
    get_all = getattr(headers, "get_all", None)  # email.message / http.client
    if callable(get_all):
        found = list(get_all(name) or ())
    else:
        wanted = name.lower()
        found = []
        for key, value in headers.items():
            if str(key).lower() != wanted or value is None:
                continue
            found.extend(value if isinstance(value, (list, tuple)) else [value])
    values = []
    for value in found:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if str(value).strip():
            values.append(str(value))
    return ", ".join(values) or None


def _origin(url):
    """``(scheme, host, port)`` of ``url``, lowercase, with the default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise PullError(f"next link {url} has an invalid port") from exc
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class Walker:
    """The requests of one import walk, page after page.

    ``pages``: pages requested so far. After :meth:`next` returns None,
    ``stop_reason`` says why ("single page", "empty page", "short page", "no
    next link", "no cursor", "max pages", "repeated cursor", "repeated next
    link") and ``warning`` holds a text for the log when the stop is suspect
    (max pages, a repeated cursor or next link), else None.
    """

    def __init__(self, plan, url, host_allowed=None):
        """``url``: the configured URL (already rendered). ``host_allowed``:
        optional callable(host) -> bool that may permit next links to other
        hosts; without it, only next links to the same scheme, host and port as
        ``url`` are followed."""
        if not isinstance(plan, PagePlan):
            raise TypeError("plan must be a PagePlan")
        self.plan = plan
        self.url = url
        self.host_allowed = host_allowed
        self._origin = _origin(url)
        self._reset()

    def _reset(self):
        self.pages = 0
        self.stop_reason = None
        self.warning = None
        self._current = None
        self._done = False
        self._largest = 0
        self._page = self.plan.page_start
        self._offset = 0
        self._visited = set()
        self._cursors = set()

    def _size(self):
        plan = self.plan
        return {plan.size_param: plan.page_size} if plan.size_param else {}

    def first(self):
        """The request of page 1 (starts the walk again if called twice)."""
        self._reset()
        plan = self.plan
        if plan.strategy == "page":
            params = {plan.page_param: self._page, **self._size()}
        elif plan.strategy == "offset":
            params = {plan.offset_param: 0, **self._size()}
        elif plan.strategy == "cursor":
            params = self._size()
        else:
            params = {}
        self._visited.add(urldefrag(self.url).url)
        return self._advance(self.url, params)

    def next(self, body, headers, count):
        """The request after the page just read, or None when the walk ends.

        ``body``: the decoded JSON; ``headers``: the response headers (any
        dict-like, looked up case-insensitively); ``count``: the objects that
        page held.

        :raises PullError: a next link that is not http(s), points to another
            host (or port, or scheme) not allowed, or downgrades https to http;
            a ``pull_next_path`` / ``pull_cursor_path`` giving an object, a list
            or a boolean.
        """
        if self._current is None:
            raise RuntimeError("Walker.next() called before Walker.first()")
        if self._done:
            return None
        count = int(count)
        if count < 0:
            raise ValueError(f"count must be 0 or more (got {count})")
        self.warning = None
        strategy = self.plan.strategy
        if count == 0:
            return self._stop("empty page")
        if strategy == "none":
            return self._stop("single page")
        if strategy in ("page", "offset"):
            # never on page 1: _largest is still 0 there
            if count < self._largest:
                return self._stop("short page")
            self._largest = max(self._largest, count)
            return self._numbered(count)
        if strategy == "next_link":
            return self._next_link(body, headers)
        return self._cursor(body)

    def _numbered(self, count):
        plan = self.plan
        if self._at_max():
            return None
        if plan.strategy == "page":
            self._page += 1
            params = {plan.page_param: self._page, **self._size()}
        else:
            self._offset += count
            params = {plan.offset_param: self._offset, **self._size()}
        return self._advance(self.url, params)

    def _next_link(self, body, headers):
        path = self.plan.next_path
        if path:
            link = get_path(body, path)
            if link is MISSING or link is None or link == "":
                return self._stop("no next link")
            if not isinstance(link, str):
                raise PullError(
                    f"pull_next_path {path!r} gives {_kind(link)}, not a URL"
                )
        else:
            link = parse_link_next(_header(headers, "Link"))
            if not link:
                return self._stop("no next link")
        url = urldefrag(urljoin(self._current.url, link.strip())).url
        self._check_link(url)
        if url in self._visited:
            return self._stop(
                "repeated next link",
                f"Stopped after {_pages(self.pages)}: the next link {url} "
                "was already visited",
            )
        if self._at_max():
            return None
        self._visited.add(url)
        return self._advance(url, {})

    def _check_link(self, url):
        scheme, host, port = _origin(url)
        if scheme not in _DEFAULT_PORTS or not host:
            raise PullError(f"next link {url} is not an http(s) URL")
        base_scheme, base_host, base_port = self._origin
        if base_scheme == "https" and scheme == "http":
            raise PullError(
                f"next link {url} would go from https down to http; not followed"
            )
        if (scheme, host, port) == self._origin:
            return
        if self.host_allowed is not None and self.host_allowed(host):
            return
        where = host if host != base_host else f"{scheme}://{host}:{port}"
        raise PullError(
            f"next link {url} points to another host ({where}); only links to "
            f"{base_scheme}://{base_host}:{base_port} are followed"
        )

    def _cursor(self, body):
        plan = self.plan
        cursor = get_path(body, plan.cursor_path)
        if cursor is MISSING or cursor is None or cursor == "":
            return self._stop("no cursor")
        if isinstance(cursor, (dict, list, bool)):
            raise PullError(
                f"pull_cursor_path {plan.cursor_path!r} gives {_kind(cursor)}, "
                "not a cursor"
            )
        text = str(cursor)
        if text in self._cursors:
            return self._stop(
                "repeated cursor",
                f"Stopped after {_pages(self.pages)}: the cursor {text!r} came back "
                f"a second time (pull_cursor_path {plan.cursor_path!r})",
            )
        if self._at_max():
            return None
        self._cursors.add(text)
        return self._advance(self.url, {**self._size(), plan.cursor_param: text})

    def _at_max(self):
        """Stop (True) when ``pull_max_pages`` pages were requested already."""
        if self.pages < self.plan.max_pages:
            return False
        self._stop("max pages", f"Stopped after {_pages(self.pages)} (pull_max_pages)")
        return True

    def _stop(self, reason, warning=None):
        self.stop_reason = reason
        self.warning = warning
        self._done = True
        return None

    def _advance(self, url, params):
        self.pages += 1
        self.stop_reason = None
        self._current = PageRequest(number=self.pages, url=url, params=params)
        return self._current
