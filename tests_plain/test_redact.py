"""tools/redact.py: headers, URLs, known secrets, 64 KiB cut."""

import json
from urllib.parse import quote, quote_plus

import pytest

from bj_api_sync.tools import redact
from bj_api_sync.tools.redact import (
    BODY_LIMIT,
    REDACTED,
    redact_headers,
    redact_text,
    redact_url,
    truncate,
)


def test_constants():
    assert REDACTED == "***"
    assert BODY_LIMIT == 65536


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-API-Key",
        "x-api-key",
        "Api-Key",
        "X-Auth-Token",
        "X-Access-Token",
        "Client-Secret",
        "X-Signature",
        "webhook-signature",
        "X-Password",
        "X-Auth",
        "X-Idempotency-Key-Secret",
    ],
)
def test_secret_headers_are_masked(name):
    assert redact_headers({name: "value"}) == {name: REDACTED}


@pytest.mark.parametrize(
    "name",
    [
        "Idempotency-Key",
        "idempotency-key",
        "X-Idempotency-Key",
        "Content-Type",
        "Accept",
        "User-Agent",
        "webhook-id",
        "webhook-timestamp",
        "Keep-Alive",
    ],
)
def test_plain_headers_are_kept(name):
    assert redact_headers({name: "value"}) == {name: "value"}


def test_redact_headers_copies_and_keeps_empty_values():
    headers = {
        "Authorization": "Basic abc",
        "Accept": "application/json",
        "X-Token": "",
    }
    result = redact_headers(headers)
    assert result == {
        "Authorization": "***",
        "Accept": "application/json",
        "X-Token": "",
    }
    assert headers["Authorization"] == "Basic abc"
    assert redact_headers(None) == {}
    assert redact.is_secret_header("X-Api-Key")
    assert not redact.is_secret_header("Idempotency-Key")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v1/x", "https://api.example.com/v1/x"),
        ("https://user:pass@api.example.com/v1", "https://***@api.example.com/v1"),
        (
            "https://token@api.example.com:8443/v1",
            "https://***@api.example.com:8443/v1",
        ),
        (
            "https://h/p?api_key=abc&q=shoes&access_token=t0k",
            "https://h/p?api_key=***&q=shoes&access_token=***",
        ),
        (
            "https://h/p?client_secret=s&Signature=x&password=p&token=t&key=k",
            "https://h/p?client_secret=***&Signature=***&password=***&token=***&key=***",
        ),
        ("https://h/p?sig=abc&sv=2024&pwd=1", "https://h/p?sig=***&sv=2024&pwd=***"),
        ("https://h/p?q=a%20b&page=2", "https://h/p?q=a%20b&page=2"),
        ("https://h/p?token=&flag", "https://h/p?token=&flag"),
        ("https://h/cb#access_token=abc&x=1", "https://h/cb#access_token=***&x=1"),
        ("https://h/{partner_id.ref}?id={id}", "https://h/{partner_id.ref}?id={id}"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_url_odd_inputs():
    assert redact_url("") == ""
    assert redact_url(None) is None
    assert redact_url("http://[::1/x?token=abc") == "http://[::1/x?token=***"
    assert redact_url("http://u:p@[::1/x") == "http://***@[::1/x"


def test_redact_text():
    text = 'curl -H "Authorization: Bearer abcd1234" -u bob:hunter22 hunter2'
    assert redact_text(text, ["abcd1234", "hunter22", "", None, "abc"]) == (
        'curl -H "Authorization: Bearer ***" -u bob:*** hunter2'
    )
    # longest first, so a secret containing another is masked whole
    assert redact_text("xx-secret-long-xx", ["secret", "secret-long"]) == "xx-***-xx"
    assert redact_text("", ["secret"]) == ""
    assert redact_text(None, ["secret"]) is None
    assert redact_text("keep", []) == "keep"


def test_truncate_keeps_small_text():
    assert truncate("hello") == "hello"
    assert truncate("") == ""
    assert truncate(None) is None
    exact = "a" * BODY_LIMIT
    assert truncate(exact) == exact


def test_truncate_cuts_with_marker():
    text = "a" * (BODY_LIMIT + 10)
    result = truncate(text)
    head, marker = result.split("\n", 1)
    assert head == "a" * BODY_LIMIT
    assert marker == f"…[truncated by bj_api_sync: {BODY_LIMIT + 10} bytes in total]"


def test_truncate_on_utf8_boundary():
    text = "é" * 10  # 20 bytes
    result = truncate(text, limit=5)
    head = result.split("\n", 1)[0]
    assert head == "éé"  # 4 bytes: the third "é" would straddle the limit
    assert len(head.encode()) <= 5
    assert result.endswith("[truncated by bj_api_sync: 20 bytes in total]")
    euro = "€" * 4  # 3 bytes each
    assert truncate(euro, limit=7).startswith("€€\n…")
    assert truncate(b"abcdef", limit=3).startswith("abc\n…")


@pytest.mark.parametrize(
    "secret",
    ["tok\r\nX-Injected: 1", "pa'ss\"wörd€", "s3cr3t/with?special&chars=+ %"],
)
def test_redact_text_masks_escaped_forms(secret):
    texts = {
        "repr": f"Invalid header value {secret!r}",
        "bytes repr": f"Invalid header value {secret.encode()!r}",
        "json": f"payload {json.dumps({'v': secret})}",
        "json unicode": json.dumps({"v": secret}, ensure_ascii=False),
        "quoted": f"GET /p?v={quote(secret, safe='')}",
        "quote_plus": f"GET /p?v={quote_plus(secret)}",
        "plain": f"value: {secret}",
    }
    for form, text in texts.items():
        masked = redact_text(text, [secret])
        assert REDACTED in masked, form
        for piece in ("tok", "wörd", "s3cr3t", "ss"):
            if piece in secret:
                assert piece not in masked, (form, masked)


def test_redact_text_escaped_forms_of_latin1_bytes():
    secret = "clé-secrète"
    text = f"Invalid header value {secret.encode('latin-1')!r}"
    assert redact_text(text, [secret]) == f"Invalid header value b'{REDACTED}'"
