"""tools/bodyenc.py: form and XML request bodies, content types."""

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from bj_api_sync.tools import bodyenc


def test_content_types():
    assert bodyenc.content_type("json") == "application/json"
    assert bodyenc.content_type("form") == "application/x-www-form-urlencoded"
    assert bodyenc.content_type("xml") == "application/xml; charset=utf-8"
    assert bodyenc.content_type(None) == "application/json"


def test_json_is_the_compact_json_text():
    assert bodyenc.encode({"a": [1, None]}, "json") == '{"a":[1,null]}'
    assert bodyenc.encode({"é": "€"}) == '{"é":"€"}'


# -- form ------------------------------------------------------------------


def test_form_nested_objects_and_lists_use_indexed_brackets():
    body = {
        "name": "Ann",
        "customer": {"email": "a@example.com", "tags": ["x", "y"]},
        "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1.5}],
    }
    text = bodyenc.encode(body, "form")
    assert text == (
        "name=Ann&customer%5Bemail%5D=a%40example.com"
        "&customer%5Btags%5D%5B0%5D=x&customer%5Btags%5D%5B1%5D=y"
        "&lines%5B0%5D%5Bsku%5D=A&lines%5B0%5D%5Bqty%5D=2"
        "&lines%5B1%5D%5Bsku%5D=B&lines%5B1%5D%5Bqty%5D=1.5"
    )
    assert parse_qsl(text) == [
        ("name", "Ann"),
        ("customer[email]", "a@example.com"),
        ("customer[tags][0]", "x"),
        ("customer[tags][1]", "y"),
        ("lines[0][sku]", "A"),
        ("lines[0][qty]", "2"),
        ("lines[1][sku]", "B"),
        ("lines[1][qty]", "1.5"),
    ]


def test_form_booleans_null_and_empty_containers():
    pairs = bodyenc.form_pairs({"t": True, "f": False, "n": None, "l": [], "o": {}})
    assert pairs == [("t", "true"), ("f", "false"), ("n", ""), ("l", ""), ("o", "")]
    text = bodyenc.encode({"t": True, "f": False, "n": None}, "form")
    assert text == "t=true&f=false&n="


def test_form_unicode_and_reserved_characters_are_percent_encoded():
    text = bodyenc.encode({"city": "Liège & Zürich", "q": "a=b+c d"}, "form")
    assert text == "city=Li%C3%A8ge+%26+Z%C3%BCrich&q=a%3Db%2Bc+d"
    assert dict(parse_qsl(text)) == {"city": "Liège & Zürich", "q": "a=b+c d"}


def test_form_values_are_converted_like_json():
    text = bodyenc.encode({"d": date(2024, 1, 31), "amount": Decimal("12.50")}, "form")
    assert dict(parse_qsl(text)) == {"d": "2024-01-31", "amount": "12.5"}


def test_form_top_level_list_is_indexed_and_null_is_empty():
    assert bodyenc.form_pairs([{"a": 1}, {"a": 2}]) == [("0[a]", "1"), ("1[a]", "2")]
    assert bodyenc.encode(None, "form") == ""
    assert bodyenc.encode({}, "form") == ""


def test_form_refuses_a_scalar_body():
    with pytest.raises(bodyenc.BodyFormatError, match="must be an object or a list"):
        bodyenc.encode("already encoded", "form")


def test_nan_is_refused_like_json():
    with pytest.raises(ValueError, match=r"NaN and Infinity.*\$\.x"):
        bodyenc.encode({"x": float("nan")}, "form")
    with pytest.raises(ValueError, match="NaN and Infinity"):
        bodyenc.encode({"x": float("inf")}, "xml")


# -- xml -------------------------------------------------------------------


def test_xml_nested_objects_lists_and_scalars():
    body = {
        "name": "Ann",
        "active": True,
        "archived": False,
        "phone": None,
        "score": 1.5,
        "count": 3,
        "customer": {"email": "a@example.com"},
        "tags": ["x", "y"],
        "lines": [{"sku": "A"}],
        "empty": [],
    }
    text = bodyenc.encode(body, "xml")
    assert text == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<data><name>Ann</name><active>true</active><archived>false</archived>"
        "<phone/><score>1.5</score><count>3</count>"
        "<customer><email>a@example.com</email></customer>"
        "<tags><item>x</item><item>y</item></tags>"
        "<lines><item><sku>A</sku></item></lines><empty/></data>"
    )
    root = ET.fromstring(text.encode())
    assert root.tag == "data"
    assert root.findtext("customer/email") == "a@example.com"
    assert [item.text for item in root.find("tags")] == ["x", "y"]


def test_xml_root_tag_and_top_level_list():
    text = bodyenc.encode([{"a": 1}, {"a": 2}], "xml", root_tag="partners")
    root = ET.fromstring(text.encode())
    assert root.tag == "partners"
    assert [item.tag for item in root] == ["item", "item"]
    assert [item.findtext("a") for item in root] == ["1", "2"]
    assert bodyenc.encode(None, "xml").endswith("<data/>")
    assert bodyenc.encode("plain", "xml").endswith("<data>plain</data>")


def test_xml_escapes_text_and_keeps_unicode():
    body = {"note": "a < b && c > d ]]> \"q\" 'x'\r\nnext", "city": "Liège €"}
    text = bodyenc.encode(body, "xml")
    escaped = "a &lt; b &amp;&amp; c &gt; d ]]&gt; \"q\" 'x'&#13;\nnext"
    assert f"<note>{escaped}</note>" in text
    root = ET.fromstring(text.encode("utf-8"))
    assert root.findtext("note") == body["note"]
    assert root.findtext("city") == "Liège €"


def test_xml_markup_in_values_stays_text():
    text = bodyenc.encode({"x": "<evil/>&xxe;"}, "xml")
    root = ET.fromstring(text.encode())
    assert list(root.find("x")) == []
    assert root.findtext("x") == "<evil/>&xxe;"


@pytest.mark.parametrize(
    "key", ["first name", "1st", "a:b", "", "-x", "a/b", "a<b", "0"]
)
def test_xml_refuses_keys_that_are_not_xml_names(key):
    with pytest.raises(bodyenc.BodyFormatError) as caught:
        bodyenc.encode({"ok": {key: 1}}, "xml")
    assert caught.value.key == key
    assert f"The key {key!r} at $.ok is not a valid XML element name" in str(
        caught.value
    )


def test_xml_refuses_characters_xml_cannot_carry():
    with pytest.raises(bodyenc.BodyFormatError, match=r"\$\.items\[1\].*U\+0001"):
        bodyenc.encode({"items": ["fine", "bad\x01"]}, "xml")


def test_xml_refuses_a_bad_root_tag():
    with pytest.raises(bodyenc.BodyFormatError, match="XML Root Tag 'my root'"):
        bodyenc.encode({}, "xml", root_tag="my root")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("data", True),
        ("_x", True),
        ("a-b.c_1", True),
        ("prénom", True),
        ("数据", True),
        ("xmlish", True),
        ("1a", False),
        (".a", False),
        ("a b", False),
        ("ns:tag", False),
        ("", False),
        (None, False),
        (3, False),
    ],
)
def test_is_xml_name(name, valid):
    assert bodyenc.is_xml_name(name) is valid


def test_unknown_format_is_refused():
    with pytest.raises(bodyenc.BodyFormatError, match="Unknown body format"):
        bodyenc.encode({}, "yaml")


def test_deep_nesting_does_not_recurse():
    body = current = {}
    for _ in range(150):
        current["n"] = {}
        current = current["n"]
    current["leaf"] = "x"
    assert bodyenc.encode(body, "xml").count("<n>") == 150
    assert bodyenc.form_pairs(body)[0][1] == "x"
