"""tools/jsonenc.py: compact JSON with dates, decimals, bytes; nested keys."""

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from bj_api_sync.tools import jsonenc


def test_dumps_is_compact_and_keeps_unicode():
    assert (
        jsonenc.dumps({"a": 1, "b": [1, 2], "c": "é€"}) == '{"a":1,"b":[1,2],"c":"é€"}'
    )
    assert jsonenc.encode({"c": "é"}) == '{"c":"é"}'.encode()
    assert isinstance(jsonenc.encode([]), bytes)


def test_datetimes_are_utc_z():
    naive = datetime(2024, 3, 5, 7, 8, 9, 123456)
    assert jsonenc.dumps(naive) == '"2024-03-05T07:08:09Z"'
    aware = datetime(2024, 3, 5, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert jsonenc.dumps(aware) == '"2024-03-05T07:08:09Z"'
    assert jsonenc.format_datetime(naive) == "2024-03-05T07:08:09Z"


def test_other_types():
    data = {
        "date": date(2024, 1, 31),
        "decimal": Decimal("12.50"),
        "bytes": b"\x00\xffhi",
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "none": None,
        "bool": True,
        "other": complex(1, 2),
    }
    decoded = json.loads(jsonenc.dumps(data))
    assert decoded == {
        "date": "2024-01-31",
        "decimal": 12.5,
        "bytes": "AP9oaQ==",
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "none": None,
        "bool": True,
        "other": "(1+2j)",
    }
    assert json.loads(jsonenc.dumps({"mixed": {1, "a"}}))["mixed"] in (
        [1, "a"],
        ["a", 1],
    )


def test_dumps_pretty():
    assert jsonenc.dumps_pretty({"a": [1], "d": date(2024, 1, 1)}) == (
        '{\n  "a": [\n    1\n  ],\n  "d": "2024-01-01"\n}'
    )


def test_set_nested_builds_objects():
    target = {}
    jsonenc.set_nested(target, "id", 7)
    jsonenc.set_nested(target, "customer.email", "a@b.c")
    jsonenc.set_nested(target, "customer.name", "Ann")
    jsonenc.set_nested(target, "customer.address.city", "Paris")
    assert target == {
        "id": 7,
        "customer": {"email": "a@b.c", "name": "Ann", "address": {"city": "Paris"}},
    }
    assert jsonenc.set_nested({}, "a", None) == {"a": None}


def test_set_nested_merges_objects_and_replaces_leaves():
    target = {"customer": {"email": "a@b.c"}}
    jsonenc.set_nested(target, "customer", {"name": "Ann"})
    assert target == {"customer": {"email": "a@b.c", "name": "Ann"}}
    jsonenc.set_nested(target, "customer.email", "new@b.c")
    assert target["customer"]["email"] == "new@b.c"


def test_set_nested_conflict():
    target = {"customer": "Ann"}
    with pytest.raises(ValueError, match="'customer' already holds a str"):
        jsonenc.set_nested(target, "customer.email", "a@b.c")
    target = {"a": {"b": [1]}}
    with pytest.raises(ValueError, match="'a.b'"):
        jsonenc.set_nested(target, "a.b.c", 1)


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a."])
def test_set_nested_bad_keys(key):
    with pytest.raises(ValueError, match="empty part"):
        jsonenc.set_nested({}, key, 1)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        (float("nan"), "$ is nan"),
        ({"price": float("inf")}, "$.price is inf"),
        ({"lines": [{"qty": 1}, {"qty": -float("inf")}]}, "$.lines[1].qty is -inf"),
        ({"amount": Decimal("NaN")}, "$.amount is Decimal('NaN')"),
        ({"amount": Decimal("-Infinity")}, "$.amount is Decimal('-Infinity')"),
        ({"tags": {float("nan")}}, "$.tags[0] is nan"),
        ({"odd key": (1, float("nan"))}, "$['odd key'][1] is nan"),
        ({float("nan"): 1}, "$ (a key) is nan"),
    ],
)
def test_nan_and_infinity_are_never_sent(payload, where):
    message = f"NaN and Infinity cannot be sent as JSON: {where}."
    with pytest.raises(ValueError) as info:
        jsonenc.dumps(payload)
    assert str(info.value) == message
    with pytest.raises(ValueError, match="NaN and Infinity cannot be sent"):
        jsonenc.encode(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({(1, 2): 1}, "$ has the key (1, 2) (a tuple)"),
        ({"a": [{"b": {date(2024, 1, 1): 3}}]}, "$.a[0].b has the key "),
        ({"a": {Decimal("1.5"): 3}}, "$.a has the key Decimal('1.5') (a Decimal)"),
        ({"a": {frozenset(): 3}}, "(a frozenset)"),
    ],
)
def test_keys_json_cannot_carry_are_refused(payload, message):
    with pytest.raises(ValueError) as info:
        jsonenc.dumps(payload)
    assert str(info.value).startswith(
        "JSON object keys must be text, numbers, booleans or null: "
    )
    assert message in str(info.value)


def test_keys_json_can_carry_still_work():
    assert jsonenc.dumps({2: "a", 1.5: "b", True: "c", None: "d"}) == (
        '{"2":"a","1.5":"b","true":"c","null":"d"}'
    )


def test_other_encoding_errors_are_left_alone():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonenc.dumps(loop)


def test_dumps_pretty_is_lenient_for_previews():
    assert jsonenc.dumps_pretty({"x": float("nan"), "y": -float("inf")}) == (
        '{\n  "x": NaN,\n  "y": -Infinity\n}'
    )
    assert jsonenc.dumps_pretty({(1, 2): [{date(2024, 1, 2): 1}]}) == (
        '{\n  "(1, 2)": [\n    {\n      "2024-01-02": 1\n    }\n  ]\n}'
    )
