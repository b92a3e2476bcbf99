"""tools/sandbox.py: import lines rewritten on the right line, size cap."""

import ast
import re
import time

import pytest

from bj_api_sync.tools import sandbox
from bj_api_sync.tools.sandbox import LOADER_NAME, ImportRefused


def test_rewrite_keeps_lines():
    source = (
        "from datetime import datetime, timedelta as td\n"
        "import json\n"
        "x = 1  # import nothing\n"
        "import dateutil.parser\n"
        "result = json.dumps({'x': x})\n"
    )
    assert sandbox.rewrite_imports(source) == (
        f"datetime = {LOADER_NAME}('datetime').datetime; "
        f"td = {LOADER_NAME}('datetime').timedelta\n"
        f"json = {LOADER_NAME}('json')\n"
        "x = 1  # import nothing\n"
        f"dateutil = {LOADER_NAME}('dateutil')\n"
        "result = json.dumps({'x': x})\n"
    )


def test_rewrite_without_imports_is_unchanged():
    assert sandbox.rewrite_imports("") == ""
    assert sandbox.rewrite_imports(None) is None
    assert sandbox.rewrite_imports("x = 'important'\n") == "x = 'important'\n"


def test_refused_import_names_its_line():
    with pytest.raises(ImportRefused, match="line 2: import of 'os' is not allowed"):
        sandbox.rewrite_imports("x = 1\nimport os\n")
    with pytest.raises(ImportRefused, match="'.x'"):
        sandbox.rewrite_imports("from .x import y\n")


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85"]
)
def test_only_python_line_breaks_count(separator):
    # str.splitlines() also breaks on these, ast does not: the import used to be
    # rewritten on the wrong line, leaving the real one in place
    source = f"s = 'a{separator}b'\nimport json\nresult = json.dumps(s)\n"
    rewritten = sandbox.rewrite_imports(source)
    assert rewritten == (
        f"s = 'a{separator}b'\njson = {LOADER_NAME}('json')\nresult = json.dumps(s)\n"
    )
    tree = ast.parse(rewritten)
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_rewrite_keeps_each_newline_style(newline):
    source = newline.join(
        ["s = 'x\u2028y'", "import json", "r = (json", "  .dumps(s))"]
    )
    rewritten = sandbox.rewrite_imports(source + newline)
    assert rewritten.split(newline)[1] == f"json = {LOADER_NAME}('json')"
    assert rewritten.count(newline) == 4


def test_multiline_import_keeps_the_line_count():
    source = (
        "x = 'é\u2028'\nfrom datetime import (\n    date,\n    time,\n)\ny = date\n"
    )
    rewritten = sandbox.rewrite_imports(source)
    assert rewritten.splitlines()[0] == "x = 'é"  # splitlines cuts at U+2028
    lines = sandbox.split_lines(rewritten)
    assert len(lines) == len(sandbox.split_lines(source)) == 6
    assert lines[1].startswith(f"date = {LOADER_NAME}('datetime').date; ")
    assert lines[5] == "y = date\n"


def test_split_lines():
    assert sandbox.split_lines("a\r\nb\rc\nd") == ["a\r\n", "b\r", "c\n", "d"]
    assert sandbox.split_lines("a\u2028b\x0cc\n") == ["a\u2028b\x0cc\n"]
    assert sandbox.split_lines("") == []


def test_check_size():
    assert sandbox.MAX_CODE_BYTES == 65536
    sandbox.check_size(None)
    sandbox.check_size("")
    sandbox.check_size("x" * 65536)
    sandbox.check_size("é" * 32768)  # 65536 bytes
    with pytest.raises(ValueError) as info:
        sandbox.check_size("x" * 65537)
    assert str(info.value) == "The code is 65537 bytes, more than the 65536 allowed."
    with pytest.raises(ValueError, match="The code is 65538 bytes"):
        sandbox.check_size("é" * 32769)
    with pytest.raises(ValueError, match="The code is 70000 bytes"):
        sandbox.check_size(b"#" * 70000)


def test_check_size_is_quick_on_huge_code():
    source = "x = 1\n" * (10 * 1024 * 1024 // 6)
    start = time.monotonic()
    with pytest.raises(ValueError, match="more than the 65536 allowed"):
        sandbox.check_size(source)
    assert time.monotonic() - start < 0.5


# -- the sandboxed ``re`` (SPEC §13: ``import re``) ------------------------------


def test_import_re_is_rewritten_to_the_loader():
    source = "import re\nfrom re import sub as s, IGNORECASE\nimport re as r\n"
    assert sandbox.rewrite_imports(source) == (
        f"re = {LOADER_NAME}('re')\n"
        f"s = {LOADER_NAME}('re').sub; IGNORECASE = {LOADER_NAME}('re').IGNORECASE\n"
        f"r = {LOADER_NAME}('re')\n"
    )
    with pytest.raises(ImportRefused, match=r"\(only .*json, math, re, time"):
        sandbox.rewrite_imports("import sre_compile\n")
    with pytest.raises(ImportRefused, match="'re.*'"):
        sandbox.rewrite_imports("from re import *\n")


def test_sandboxed_re_functions_and_flags():
    sre = sandbox.SANDBOXED_RE
    assert sre.sub(r"\D", "", "+1 555-0100") == "15550100"
    assert sre.subn("a", "b", "aXa") == ("bXb", 2)
    assert sre.compile(r"(\w+)@", sre.I).match("Ada@x").group(1) == "Ada"
    assert sre.search("b+", "abbc").span() == (1, 3)
    assert sre.fullmatch("[a-z]+", "abc") and not sre.fullmatch("[a-z]+", "ab1")
    assert sre.findall(r"\d+", "a1b22") == ["1", "22"]
    assert [m.group() for m in sre.finditer("x.", "x1x2")] == ["x1", "x2"]
    assert sre.split(r"\s*,\s*", "a , b,c") == ["a", "b", "c"]
    assert sre.escape("a.b") == r"a\.b"
    assert sre.match("^b$", "a\nb", flags=sre.MULTILINE | sre.DOTALL) is None
    assert sre.search("^b$", "a\nb", flags=sre.M).group() == "b"
    assert sre.IGNORECASE == sre.I and sre.VERBOSE == sre.X and sre.ASCII == sre.A
    with pytest.raises(sre.error):
        sre.compile("(")


@pytest.mark.parametrize(
    "name", ["purge", "_compile", "sre_compile", "functools", "enum", "template"]
)
def test_sandboxed_re_offers_nothing_else(name):
    with pytest.raises(AttributeError):
        getattr(sandbox.SANDBOXED_RE, name)


def test_sandboxed_re_is_read_only_and_not_the_module():
    sre = sandbox.SANDBOXED_RE
    assert sre is not re
    assert repr(sre) == "<sandboxed module 're'>"
    assert not hasattr(sre, "__dict__")  # no instance dictionary to reach into
    with pytest.raises(AttributeError, match="read-only"):
        sre.sub = None
    with pytest.raises(AttributeError, match="read-only"):
        del sre.sub
    with pytest.raises(AttributeError, match="read-only"):
        sre.anything = 1
    assert sre.sub is re.sub
    assert sorted(n for n in dir(sre) if not n.startswith("_")) == sorted(
        n for n in sandbox.RE_NAMES if hasattr(re, n)
    )
