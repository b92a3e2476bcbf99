"""tools/jsonbody.py: size, content type, JSON and depth of incoming bodies."""

import pytest

from bj_api_sync.tools import jsonbody


@pytest.mark.parametrize(
    "value, expected",
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_is_json_type(value, expected):
    assert jsonbody.is_json_type(value) is expected


def test_size_limits():
    jsonbody.check_length(5, None, 5)
    jsonbody.check_length(None, None, 5)
    with pytest.raises(jsonbody.BodyError) as caught:
        jsonbody.check_length(6, None, 5)
    assert caught.value.status == 413
    with pytest.raises(jsonbody.BodyError, match="Content-Length") as caught:
        jsonbody.check_length(None, "chunked", 5)
    assert caught.value.status == 411
    assert jsonbody.check_read(b"12345", 5) == b"12345"
    # a client sending more than it announced is caught by the bytes read
    with pytest.raises(jsonbody.BodyError) as caught:
        jsonbody.check_read(b"123456", 5)
    assert caught.value.status == 413


def test_parse_values():
    assert jsonbody.parse(b'{"a": [1, 2, {"b": null}]}') == {"a": [1, 2, {"b": None}]}
    assert jsonbody.parse('[{"é": "ü"}]'.encode()) == [{"é": "ü"}]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"[Infinity]", "not valid JSON"),
    ],
)
def test_parse_refuses(data, message):
    with pytest.raises(jsonbody.BodyError, match=message) as caught:
        jsonbody.parse(data)
    assert caught.value.status == 400


def test_depth():
    assert jsonbody.depth(1) == 0
    assert jsonbody.depth({}) == 1
    assert jsonbody.depth({"a": [{"b": 1}]}) == 3
    nested = b"[" * 32 + b"]" * 32
    assert jsonbody.depth(jsonbody.parse(nested)) == 32
    for data in (b"[" * 33 + b"]" * 33, b'{"a":' * 40 + b"1" + b"}" * 40):
        with pytest.raises(jsonbody.BodyError, match="deeper than 32"):
            jsonbody.parse(data)
    # far deeper than Python's recursion limit: still a clean 400
    with pytest.raises(jsonbody.BodyError, match="deeper than 32"):
        jsonbody.parse(b"[" * 100000 + b"]" * 100000)
