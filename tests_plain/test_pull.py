"""tools/pull.py: import pagination against simulated servers, paths, Link headers.

Each server below serves ``ITEMS`` (250 objects) the way a real API pages them;
:func:`walk` drives a :class:`pull.Walker` as the import does and records every
request, so a test checks both what was asked and what was received.
"""

import http.client
import io
from urllib.parse import parse_qsl, urlsplit

import pytest

from bj_api_sync.tools import pull

BASE = "https://api.test/v1/items"
ITEMS = [{"id": n} for n in range(1, 251)]
IDS = list(range(1, 251))


def query(request):
    """What the server sees: the URL's query plus the request's params, as str."""
    seen = dict(parse_qsl(urlsplit(request.url).query))
    seen.update({key: str(value) for key, value in request.params.items()})
    return seen


def walk(plan, serve, url=BASE, data_path="data", host_allowed=None):
    """Run a whole walk: (walker, requests sent, objects received)."""
    walker = pull.Walker(plan, url, host_allowed=host_allowed)
    request = walker.first()
    requests, objects = [], []
    while request is not None:
        assert len(requests) < 2000, "the walk does not end"
        requests.append(request)
        body, headers = serve(request)
        page = pull.extract_objects(body, data_path)
        objects.extend(page)
        request = walker.next(body, headers, len(page))
    return walker, requests, objects


def ids(objects):
    return [obj["id"] for obj in objects]


def size_of(seen, cap, default=25):
    size = int(seen.get("size", default))
    return min(size, cap) if cap else size


def page_server(cap=None, start=1, total=ITEMS):
    def serve(request):
        seen = query(request)
        size = size_of(seen, cap)
        first = (int(seen["page"]) - start) * size
        return {"data": total[first : first + size]}, {}

    return serve


def offset_server(cap=None):
    def serve(request):
        seen = query(request)
        offset, size = int(seen["offset"]), size_of(seen, cap)
        return {"data": ITEMS[offset : offset + size]}, {}

    return serve


def link_server(size=100, absolute=False, in_body=False):
    """Next links ``?after=<last id>``: relative or absolute, in the body
    (``links.next``) or in a Link header among other links."""

    def serve(request):
        after = int(query(request).get("after", 0))
        data = ITEMS[after : after + size]
        body, headers = {"data": data}, {}
        if after + size < len(ITEMS):
            link = f"?after={data[-1]['id']}"
            if absolute:
                link = "HTTPS://API.test:443/v1/items" + link
            if in_body:
                body["links"] = {"next": link}
            else:
                headers["link"] = (
                    '<https://api.test/v1/items?after=0>;rel="first" , '
                    f"<{link}> ;REL = next,"
                    '<https://api.test/v1/items?after=240>; rel="last"'
                )
        return body, headers

    return serve


def cursor_server(size=60, as_int=False):
    def serve(request):
        seen = query(request)
        start = int(seen.get("cursor", "0").removeprefix("c"))
        size_ = int(seen.get("limit", size))
        data = ITEMS[start : start + size_]
        after = start + size_
        cursor = None
        if after < len(ITEMS):
            cursor = after if as_int else f"c{after}"
        return {"data": data, "meta": {"next": cursor}}, {}

    return serve


# ---------------------------------------------------------------- get_path


def test_get_path_nested_and_list_indexes():
    body = {"a": {"items": [{"id": 7}, {"id": 8}]}, "10": "ten"}
    assert pull.get_path(body, "a.items.1.id") == 8
    assert pull.get_path(body, "a.items.0") == {"id": 7}
    assert pull.get_path(body, "10") == "ten"  # digits on an object: a key
    assert pull.get_path([[1, 2], [3]], "1.0") == 3


def test_get_path_empty_is_the_body():
    body = [1, 2]
    assert pull.get_path(body, "") is body
    assert pull.get_path(body, None) is body


@pytest.mark.parametrize(
    "path", ["b", "a.x", "a.items.1", "a.items.-1", "a.items.first", "a.items.0.id.x"]
)
def test_get_path_missing(path):
    body = {"a": {"items": [{"id": 7}]}, "1": None}
    assert pull.get_path(body, path) is pull.MISSING
    assert pull.get_path(body, "1") is None  # present and null: not missing
    assert not pull.MISSING


# --------------------------------------------------------- extract_objects


def test_extract_objects_dict_list_nested():
    assert pull.extract_objects({"id": 1}, "") == [{"id": 1}]
    mixed = [{"id": 1}, 2, None, "x"]
    assert pull.extract_objects(mixed, None) == mixed  # not filtered
    body = {"data": {"items": [{"id": 1}, {"id": 2}], "one": {"id": 3}}}
    assert pull.extract_objects(body, "data.items") == [{"id": 1}, {"id": 2}]
    assert pull.extract_objects(body, "data.one") == [{"id": 3}]
    assert pull.extract_objects({"data": []}, "data") == []


def test_extract_objects_missing_path_names_keys():
    with pytest.raises(pull.PullError) as info:
        pull.extract_objects({"a": {"b": 1}, "b": [1]}, "data.items")
    assert str(info.value) == (
        "response_data_path 'data.items' not found in the response; "
        "top-level keys: a, b"
    )
    with pytest.raises(pull.PullError, match="the response is a list of 3 items"):
        pull.extract_objects([1, 2, 3], "data")
    with pytest.raises(pull.PullError, match="the response is an empty object"):
        pull.extract_objects({}, "data")


@pytest.mark.parametrize(
    ("value", "kind"),
    [("x", "a string"), (3, "a number"), (1.5, "a number"), (True, "a boolean")],
)
def test_extract_objects_scalar(value, kind):
    with pytest.raises(pull.PullError) as info:
        pull.extract_objects({"data": {"items": value}}, "data.items")
    assert str(info.value) == (
        f"response_data_path 'data.items' gives {kind}, "
        "not an object or a list of objects"
    )


def test_extract_objects_null_and_scalar_body():
    with pytest.raises(pull.PullError, match="'data' gives null, not an object"):
        pull.extract_objects({"data": None}, "data")
    with pytest.raises(pull.PullError, match="response is a string.*is empty"):
        pull.extract_objects("ok", "")


# --------------------------------------------------------- parse_link_next


def test_link_simple():
    assert pull.parse_link_next('<https://a.test/p?page=2>; rel="next"') == (
        "https://a.test/p?page=2"
    )


def test_link_several_links_odd_spacing():
    value = (
        ' <https://a.test/?p=1> ; rel = "prev" ,<https://a.test/?p=3>;'
        "title=x;rel=next  ,  <https://a.test/?p=9>; rel=last"
    )
    assert pull.parse_link_next(value) == "https://a.test/?p=3"


def test_link_case_and_rel_tokens():
    assert pull.parse_link_next("</p2>; REL=NEXT") == "/p2"
    assert pull.parse_link_next('</p9>; rel="last next"') == "/p9"
    assert pull.parse_link_next('</p9>; rel="next last"') == "/p9"
    assert pull.parse_link_next('</a>; rel="nextpage", </b>; rel="next"') == "/b"


def test_link_commas_inside_brackets_and_quotes():
    value = (
        '<https://a.test/x?ids=1,2,3>; rel="prev", '
        '<https://a.test/y?ids=4,5>; title="a, b; rel=next"; rel="next"'
    )
    assert pull.parse_link_next(value) == "https://a.test/y?ids=4,5"
    assert pull.parse_link_next('<https://a.test/z?q=a,b>; rel="next"') == (
        "https://a.test/z?q=a,b"
    )


@pytest.mark.parametrize(
    "value",
    [None, "", '<https://a.test/1>; rel="prev"', "garbage", "<unclosed; rel=next"],
)
def test_link_without_next(value):
    assert pull.parse_link_next(value) is None


def test_link_first_rel_wins():
    # RFC 8288: occurrences of a parameter after the first are ignored
    assert pull.parse_link_next("</a>; rel=prev; rel=next") is None


# ----------------------------------------------------------------- PagePlan


def test_plan_defaults():
    plan = pull.PagePlan()
    assert plan.strategy == "none"
    assert (plan.page_param, plan.page_start, plan.page_size) == ("page", 1, 100)
    assert plan.max_pages == 1000
    assert pull.STRATEGIES == ("none", "page", "offset", "next_link", "cursor")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strategy": "pages"}, "pull_pagination must be one of none, page,"),
        ({"page_size": 0}, "page_size must be a whole number of 1 or more"),
        ({"max_pages": 0}, "pull_max_pages must be a whole number of 1 or more"),
        ({"max_pages": True}, "pull_max_pages must be a whole number"),
        ({"page_start": -1}, "pull_page_start must be a whole number of 0 or more"),
        (
            {"strategy": "page", "page_param": ""},
            "pull_page_param is required for page pagination",
        ),
        (
            {"strategy": "offset", "offset_param": " "},
            "pull_offset_param is required for offset pagination",
        ),
        (
            {"strategy": "cursor"},
            "pull_cursor_path is required for cursor pagination",
        ),
        (
            {"strategy": "cursor", "cursor_path": "next", "cursor_param": ""},
            "pull_cursor_param is required for cursor pagination",
        ),
    ],
)
def test_plan_rejects(fields, message):
    with pytest.raises(pull.PullError) as info:
        pull.PagePlan(**fields)
    assert str(info.value).startswith(message)


# ------------------------------------------------------------------- none


def test_none_single_page():
    walker = pull.Walker(pull.PagePlan(size_param="limit"), BASE)
    first = walker.first()
    assert (first.number, first.url, first.params) == (1, BASE, {})
    assert walker.next({"data": ITEMS}, {}, 250) is None
    assert (walker.stop_reason, walker.warning, walker.pages) == (
        "single page",
        None,
        1,
    )


def test_none_empty_page():
    walker = pull.Walker(pull.PagePlan(), BASE)
    walker.first()
    assert walker.next([], {}, 0) is None
    assert walker.stop_reason == "empty page"


def test_next_before_first():
    with pytest.raises(RuntimeError):
        pull.Walker(pull.PagePlan(), BASE).next({}, {}, 1)


# ------------------------------------------------------------------- page


def test_page_ends_on_short_page():
    plan = pull.PagePlan("page", size_param="size")
    walker, requests, objects = walk(plan, page_server())
    assert [r.params for r in requests] == [
        {"page": 1, "size": 100},
        {"page": 2, "size": 100},
        {"page": 3, "size": 100},
    ]
    assert [r.number for r in requests] == [1, 2, 3]
    assert {r.url for r in requests} == {BASE}
    assert ids(objects) == IDS
    assert (walker.stop_reason, walker.warning, walker.pages) == ("short page", None, 3)


def test_page_ends_on_empty_page():
    plan = pull.PagePlan("page", size_param="size", page_size=50)
    walker, requests, objects = walk(plan, page_server())
    assert [r.params["page"] for r in requests] == [1, 2, 3, 4, 5, 6]
    assert ids(objects) == IDS
    assert walker.stop_reason == "empty page"


def test_page_server_caps_size():
    # 100 asked, 40 served: the short first page is not the end
    plan = pull.PagePlan("page", size_param="size")
    walker, requests, objects = walk(plan, page_server(cap=40))
    assert len(requests) == 7
    assert ids(objects) == IDS
    assert walker.stop_reason == "short page"


def test_page_without_size_param_from_zero():
    plan = pull.PagePlan("page", page_param="p", page_start=0)

    def serve(request):
        number = int(query(request)["p"])
        return {"data": ITEMS[number * 25 : number * 25 + 25]}, {}

    walker, requests, objects = walk(plan, serve)
    assert requests[0].params == {"p": 0}
    assert requests[-1].params == {"p": 10}
    assert ids(objects) == IDS
    assert walker.stop_reason == "empty page"


def test_page_short_rule_uses_largest_page_seen():
    walker = pull.Walker(pull.PagePlan("page"), BASE)
    walker.first()
    assert walker.next({}, {}, 5).params == {"page": 2}  # short first: go on
    assert walker.next({}, {}, 30).params == {"page": 3}  # larger: go on
    assert walker.next({}, {}, 30).params == {"page": 4}
    assert walker.next({}, {}, 29) is None
    assert walker.stop_reason == "short page"
    assert walker.next({}, {}, 30) is None  # ended walks stay ended


# ----------------------------------------------------------------- offset


def test_offset_advances_by_received_count():
    plan = pull.PagePlan("offset", offset_param="skip", size_param="size")

    def serve(request):
        seen = query(request)
        skip, size = int(seen["skip"]), min(int(seen["size"]), 40)
        return {"data": ITEMS[skip : skip + size]}, {}

    walker, requests, objects = walk(plan, serve)
    assert [r.params["skip"] for r in requests] == [0, 40, 80, 120, 160, 200, 240]
    assert {r.params["size"] for r in requests} == {100}
    assert ids(objects) == IDS
    assert walker.stop_reason == "short page"


def test_offset_exact_end_and_no_size_param():
    walker, requests, objects = walk(
        pull.PagePlan("offset", page_size=50, size_param="size"), offset_server()
    )
    assert [r.params["offset"] for r in requests] == [0, 50, 100, 150, 200, 250]
    assert ids(objects) == IDS
    assert walker.stop_reason == "empty page"
    walker, requests, objects = walk(pull.PagePlan("offset"), offset_server())
    assert requests[1].params == {"offset": 25}  # server default size 25
    assert ids(objects) == IDS


# -------------------------------------------------------------- next_link


def test_next_link_relative_in_link_header():
    plan = pull.PagePlan("next_link", size_param="size")
    walker, requests, objects = walk(plan, link_server(size=100), url=BASE + "?a=1")
    assert [r.url for r in requests] == [
        BASE + "?a=1",
        BASE + "?after=100",
        BASE + "?after=200",
    ]
    assert [r.params for r in requests] == [{}, {}, {}]
    assert ids(objects) == IDS
    assert (walker.stop_reason, walker.warning) == ("no next link", None)


def test_next_link_absolute_in_body():
    plan = pull.PagePlan("next_link", next_path="links.next")
    walker, requests, objects = walk(plan, link_server(70, absolute=True, in_body=True))
    assert requests[1].url == "https://API.test:443/v1/items?after=70"
    assert len(requests) == 4
    assert ids(objects) == IDS
    assert walker.stop_reason == "no next link"


def test_next_link_resolved_against_page_just_read():
    walker = pull.Walker(pull.PagePlan("next_link"), "https://api.test/a/b/list")
    walker.first()
    second = walker.next({}, {"Link": '<../c/list?p=2>; rel="next"'}, 1)
    assert second.url == "https://api.test/a/c/list?p=2"
    third = walker.next({}, {"Link": '<more?p=3#frag>; rel="next"'}, 1)
    assert (third.number, third.url) == (3, "https://api.test/a/c/more?p=3")


@pytest.mark.parametrize("value", [None, "", {"other": 1}])
def test_next_link_missing_in_body(value):
    walker = pull.Walker(pull.PagePlan("next_link", next_path="next"), BASE)
    walker.first()
    body = value if isinstance(value, dict) else {"next": value}
    assert walker.next(body, {"Link": f'<{BASE}?p=2>; rel="next"'}, 10) is None
    assert walker.stop_reason == "no next link"


def test_next_link_header_lookup_any_case():
    link = f'<{BASE}?p=2>; rel="next"'
    for headers in ({"LINK": link}, {"Link": [link]}):
        walker = pull.Walker(pull.PagePlan("next_link"), BASE)
        walker.first()
        assert walker.next({}, headers, 1).url == BASE + "?p=2"
    message = http.client.parse_headers(
        io.BytesIO(b'Link: <?p=1>; rel="prev"\r\nlink: <?p=3>; rel="next"\r\n\r\n')
    )
    walker = pull.Walker(pull.PagePlan("next_link"), BASE)
    walker.first()
    assert walker.next({}, message, 1).url == BASE + "?p=3"
    walker.first()
    assert walker.next({}, {"Content-Type": "x"}, 1) is None
    assert walker.stop_reason == "no next link"


def test_next_link_repeated():
    walker = pull.Walker(pull.PagePlan("next_link"), BASE)
    walker.first()
    assert walker.next({}, {"Link": '<?p=2>; rel="next"'}, 1).url == BASE + "?p=2"
    assert walker.next({}, {"Link": f'<{BASE}>; rel="next"'}, 1) is None
    assert walker.stop_reason == "repeated next link"
    assert walker.warning == (
        f"Stopped after 2 pages: the next link {BASE} was already visited"
    )


def test_next_link_foreign_host_refused():
    walker = pull.Walker(pull.PagePlan("next_link", next_path="next"), BASE)
    walker.first()
    with pytest.raises(pull.PullError) as info:
        walker.next({"next": "https://evil.test/x"}, {}, 1)
    assert str(info.value).startswith(
        "next link https://evil.test/x points to another host (evil.test)"
    )
    assert "https://api.test:443" in str(info.value)


@pytest.mark.parametrize(
    "link",
    ["http://api.test:443/x", "https://api.test:8443/x", "https://api.test.evil/x"],
)
def test_next_link_other_origin_refused(link):
    walker = pull.Walker(pull.PagePlan("next_link", next_path="next"), BASE)
    walker.first()
    with pytest.raises(pull.PullError, match="points to another host|down to http"):
        walker.next({"next": link}, {}, 1)


def test_next_link_host_allowed():
    asked = []

    def allowed(host):
        asked.append(host)
        return host == "cdn.api.test"

    walker = pull.Walker(pull.PagePlan("next_link", next_path="n"), BASE, allowed)
    walker.first()
    request = walker.next({"n": "https://CDN.api.test/p2"}, {}, 1)
    assert request.url == "https://CDN.api.test/p2"
    with pytest.raises(pull.PullError, match=r"another host \(evil\.test\)"):
        walker.next({"n": "https://evil.test/p3"}, {}, 1)
    assert asked == ["cdn.api.test", "evil.test"]


def test_next_link_https_downgrade_refused_even_if_allowed():
    walker = pull.Walker(
        pull.PagePlan("next_link", next_path="n"), BASE, lambda host: True
    )
    walker.first()
    with pytest.raises(pull.PullError, match="from https down to http"):
        walker.next({"n": "http://api.test/p2"}, {}, 1)


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "ftp://api.test/x", "mailto:a@api.test"]
)
def test_next_link_not_http(link):
    walker = pull.Walker(pull.PagePlan("next_link", next_path="n"), BASE)
    walker.first()
    with pytest.raises(pull.PullError) as info:
        walker.next({"n": link}, {}, 1)
    assert str(info.value) == f"next link {link} is not an http(s) URL"


def test_next_path_not_a_string():
    walker = pull.Walker(pull.PagePlan("next_link", next_path="n"), BASE)
    walker.first()
    with pytest.raises(pull.PullError, match="pull_next_path 'n' gives an object"):
        walker.next({"n": {"href": "/x"}}, {}, 1)


# ----------------------------------------------------------------- cursor


def test_cursor_strings():
    plan = pull.PagePlan(
        "cursor", cursor_path="meta.next", cursor_param="cursor", size_param="limit"
    )
    walker, requests, objects = walk(plan, cursor_server())
    assert [r.params for r in requests] == [
        {"limit": 100},
        {"limit": 100, "cursor": "c100"},
        {"limit": 100, "cursor": "c200"},
    ]
    assert ids(objects) == IDS
    assert (walker.stop_reason, walker.warning) == ("no cursor", None)


def test_cursor_ints_kept_as_str():
    plan = pull.PagePlan("cursor", cursor_path="meta.next")
    walker, requests, objects = walk(plan, cursor_server(size=60, as_int=True))
    assert requests[0].params == {}
    assert [r.params["cursor"] for r in requests[1:]] == ["60", "120", "180", "240"]
    assert ids(objects) == IDS
    assert walker.stop_reason == "no cursor"


@pytest.mark.parametrize("body", [{"meta": {"next": ""}}, {"meta": {}}, {"x": 1}])
def test_cursor_missing(body):
    walker = pull.Walker(pull.PagePlan("cursor", cursor_path="meta.next"), BASE)
    walker.first()
    assert walker.next(body, {}, 3) is None
    assert walker.stop_reason == "no cursor"


def test_cursor_repeated():
    walker = pull.Walker(pull.PagePlan("cursor", cursor_path="next"), BASE)
    walker.first()
    assert walker.next({"next": 5}, {}, 3).params == {"cursor": "5"}
    assert walker.next({"next": "6"}, {}, 3).params == {"cursor": "6"}
    assert walker.next({"next": "5"}, {}, 3) is None
    assert walker.stop_reason == "repeated cursor"
    assert walker.warning == (
        "Stopped after 3 pages: the cursor '5' came back a second time "
        "(pull_cursor_path 'next')"
    )


def test_cursor_path_gives_object():
    walker = pull.Walker(pull.PagePlan("cursor", cursor_path="next"), BASE)
    walker.first()
    with pytest.raises(pull.PullError, match="'next' gives an object, not a cursor"):
        walker.next({"next": {"id": 1}}, {}, 1)


# -------------------------------------------------------------- max pages


def test_max_pages_stops_endless_pages():
    def endless(request):
        return {"data": [{"id": int(query(request)["page"])}]}, {}

    walker, requests, objects = walk(pull.PagePlan("page", max_pages=3), endless)
    assert ids(objects) == [1, 2, 3]
    assert (walker.pages, walker.stop_reason) == (3, "max pages")
    assert walker.warning == "Stopped after 3 pages (pull_max_pages)"


def test_max_pages_default_1000():
    def endless(request):
        return {"data": [{"id": 1}]}, {}

    walker, requests, _objects = walk(pull.PagePlan("offset"), endless)
    assert len(requests) == 1000
    assert walker.warning == "Stopped after 1000 pages (pull_max_pages)"


def test_max_pages_next_link_and_cursor():
    walker, requests, _objects = walk(
        pull.PagePlan("next_link", max_pages=2), link_server(size=50)
    )
    assert len(requests) == 2
    assert walker.stop_reason == "max pages"
    plan = pull.PagePlan("cursor", cursor_path="meta.next", max_pages=1)
    walker, requests, _objects = walk(plan, cursor_server())
    assert [r.params for r in requests] == [{}]
    assert walker.warning == "Stopped after 1 page (pull_max_pages)"


def test_max_pages_not_reached_on_last_page():
    walker, requests, _objects = walk(
        pull.PagePlan("page", size_param="size", max_pages=3), page_server()
    )
    assert len(requests) == 3
    assert (walker.stop_reason, walker.warning) == ("short page", None)
