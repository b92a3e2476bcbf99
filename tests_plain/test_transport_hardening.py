"""tools/transport.py against hostile URLs and receivers (real local servers).

Host allow-list bypasses, slow-drip responses, decompression bombs, header
values that cannot be sent, TLS handshakes that never end.
"""

import gc
import gzip
import struct
import time
import tracemalloc
import zlib
from urllib.parse import urlsplit

import pytest
from conftest import Reply, make_request

from bj_api_sync.tools import transport

# --------------------------------------------------------------------------
# the host requests connects to, and the allow-list
# --------------------------------------------------------------------------

BACKSLASH_URL = "http://127.0.0.1:8069\\@allowed.example.com/ok"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (BACKSLASH_URL, "127.0.0.1"),
        ("http://allowed.example.com\\@127.0.0.1/ok", "allowed.example.com"),
        ("https://API.Example.COM/v1", "api.example.com"),
        ("http://user:pw@api.example.com:8443/x", "api.example.com"),
        ("http://allowed.example.com@127.0.0.1/", "127.0.0.1"),
        ("http://127.0.0.1:80#@allowed.example.com", "127.0.0.1"),
        ("http://[::1]:8069/x", "::1"),
        ("https://bücher.example/x", "xn--bcher-kva.example"),
        ("example.com/x", None),
        ("http://", None),
        ("", None),
        (None, None),
    ],
)
def test_url_host(url, host):
    assert transport.url_host(url) == host


def test_url_host_is_not_what_urlsplit_reads():
    # the hole: urllib.parse and requests disagree on this URL
    assert urlsplit(BACKSLASH_URL).hostname == "allowed.example.com"
    assert transport.url_host(BACKSLASH_URL) == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "patterns", "allowed"),
    [
        ("api.example.com", [], True),
        ("api.example.com", (), True),
        ("anything", "", True),
        ("api.example.com", ["api.example.com"], True),
        ("API.example.com", ["api.EXAMPLE.com"], True),
        ("api.example.com.", ["api.example.com"], True),
        ("api.example.com", ["api.example.com."], True),
        ("a.b.example.com", ["*.example.com"], True),
        ("example.com", ["*.example.com"], False),
        ("api-7.example.com", ["api-*.example.com"], True),
        ("api.example.com.evil.net", ["api.example.com"], False),
        ("evil.net", ["api.example.com", "*.example.org"], False),
        ("x.example.org", ["api.example.com", "*.example.org"], True),
        ("x.example.org", " api.example.com , *.example.org ", True),
        ("127.0.0.1", ["allowed.example.com"], False),
        ("abc", ["a?c"], False),  # only * is a wildcard
        ("a?c", ["a?c"], True),
        ("::1", ["[::1]"], True),
        ("[::1]", ["::1"], True),
        (None, ["*"], False),
        ("", ["*"], False),
        ("anything.example", ["*"], True),
    ],
)
def test_host_allowed(host, patterns, allowed):
    assert transport.host_allowed(host, patterns) is allowed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (BACKSLASH_URL, "a backslash ('\\') at position 22"),
        ("https://h/a\tb", "a tab"),
        ("https://h/a\nb", "a line break (LF)"),
        ("https://h/a\rb", "a line break (CR)"),
        ("https://h/a\x00", "a NUL character"),
        ("https://h/a\x7f", "the invisible character U+007F"),
        ("https://h/café", "'é' (U+00E9 LATIN SMALL LETTER E WITH ACUTE)"),
        ("https://bücher.example/", "'ü'"),
        ("https://h/a\u200bb", "invisible character U+200B ZERO WIDTH SPACE"),
        ("https://h/<x>", "'<'"),
        ("https://h/a>", "'>'"),
        ('https://h/"x"', "'\"'"),
        ("https://h/{}", "'{'"),
        ("https://h/{1x}", "'{'"),
        ("https://h/a}", "'}'"),
        ("https://h/a|b", "'|'"),
        ("https://h/a^b", "'^'"),
        ("https://h/a`b", "'`'"),
        ("http://allowed.example.com%40evil.net/", "percent-encoded"),
    ],
)
def test_validate_url_refuses_characters_outside_rfc3986(url, message):
    assert message in (transport.validate_url(url) or "accepted")


@pytest.mark.parametrize(
    "url",
    [
        "https://h/{partner_id.ref}/orders/{name}?id={id}",
        "https://{tenant}.example.com/v1",
        "https://h/p?q=a%20b&x=~y;z=(1)*!$'+,",
        "http://[::1]:8069/x",
        "https://user:p%40ss@h/x",
    ],
)
def test_validate_url_keeps_placeholders_and_rfc3986(url):
    assert transport.validate_url(url) is None


def test_allowed_hosts_refuse_the_backslash_trick_before_connecting(scripted_server):
    url = f"http://127.0.0.1:{scripted_server.port}\\@allowed.example.com/ok"
    result = transport.send(make_request(url, allowed_hosts=("allowed.example.com",)))
    assert result.outcome == "permanent"
    assert result.error == "Host 127.0.0.1 is not in the allowed hosts"
    assert result.status_code is None
    assert result.attempts == 0
    assert scripted_server.received == []
    assert scripted_server.connections == 0


def test_allowed_hosts_wildcards_and_params(scripted_server):
    refused = transport.send(
        make_request(
            scripted_server.url + "/x",
            params=[("host", "allowed.example.com")],
            allowed_hosts=("*.example.com",),
        )
    )
    assert refused.error == "Host 127.0.0.1 is not in the allowed hosts"
    assert refused.url == scripted_server.url + "/x?host=allowed.example.com"
    assert scripted_server.connections == 0
    accepted = transport.send(
        make_request(
            scripted_server.url + "/x", allowed_hosts=("api.example.com", "127.0.0.*")
        )
    )
    assert accepted.outcome == "success"
    assert len(scripted_server.received) == 1


# --------------------------------------------------------------------------
# read timeout = the whole response of one attempt
# --------------------------------------------------------------------------


def test_dripping_headers_time_out_on_the_whole_response(scripted_server):
    # one byte every 0.25 s: each socket read is quick, the response is not
    scripted_server.script(Reply(200, {}, b"x" * 20, drip=0.25), 200)
    start = time.monotonic()
    result = transport.send(
        make_request(scripted_server.url, read_timeout=1, max_retries=3)
    )
    elapsed = time.monotonic() - start
    assert elapsed < 1 + 1.5
    assert result.outcome == "retryable"
    assert result.status_code is None
    assert result.attempts == 1, "a read timeout is not quick-retried"
    assert (
        result.error == f"Read timed out after 1 s (127.0.0.1:{scripted_server.port})"
    )
    assert len(scripted_server.received) == 1
    assert transport._WATCHDOG.pending() == 0


def test_dripping_body_times_out_on_the_whole_response(scripted_server):
    scripted_server.script(Reply(200, {}, b"x" * 100, body_drip=0.25))
    start = time.monotonic()
    result = transport.send(make_request(scripted_server.url, read_timeout=1))
    elapsed = time.monotonic() - start
    assert elapsed < 1 + 1.5
    assert result.outcome == "retryable"
    assert result.status_code == 200
    assert result.error == (
        f"HTTP 200, then read timed out after 1 s (127.0.0.1:{scripted_server.port})"
    )
    assert transport._WATCHDOG.pending() == 0


def test_cut_connection_is_not_reused_and_keep_alive_goes_on(scripted_server):
    session = transport.SessionPool().get("k")
    scripted_server.script(
        Reply(200, {}, b"x" * 100, body_drip=0.2), Reply(200, {}, b"a"), 200
    )
    cut = transport.send(make_request(scripted_server.url, read_timeout=0.5), session)
    assert cut.error.startswith("HTTP 200, then read timed out after 0.5 s")
    first = transport.send(make_request(scripted_server.url, read_timeout=0.5), session)
    second = transport.send(
        make_request(scripted_server.url, read_timeout=0.5), session
    )
    assert (first.response_text, second.outcome) == ("a", "success")
    ports = [r.client_port for r in scripted_server.received]
    assert ports[1] != ports[0], "the cut connection is not reused"
    assert ports[2] == ports[1], "normal responses keep the connection alive"
    # the deadlines of finished responses never fire on idle pooled sockets
    time.sleep(0.7)
    third = transport.send(make_request(scripted_server.url, read_timeout=0.5), session)
    assert third.outcome == "success"
    assert scripted_server.received[-1].client_port == ports[2]
    assert transport._WATCHDOG.pending() == 0
    session.close()


def test_quick_retries_each_get_their_own_deadline(scripted_server):
    scripted_server.script(Reply(503, delay=0.3), Reply(503, delay=0.3), 200)
    result = transport.send(
        make_request(scripted_server.url, read_timeout=0.5, max_retries=3)
    )
    assert (result.outcome, result.attempts) == ("success", 3)
    assert transport._WATCHDOG.pending() == 0


def test_slow_but_steady_response_within_the_deadline(scripted_server):
    scripted_server.script(Reply(200, {}, b"0123456789", body_drip=0.02))
    result = transport.send(make_request(scripted_server.url, read_timeout=2))
    assert (result.outcome, result.response_text) == ("success", "0123456789")


# --------------------------------------------------------------------------
# TLS handshake
# --------------------------------------------------------------------------


def test_silent_tls_server_is_a_handshake_timeout(silent_server):
    server = silent_server()
    start = time.monotonic()
    result = transport.send(
        make_request(
            f"https://127.0.0.1:{server.port}/x", connect_timeout=0.5, read_timeout=5
        )
    )
    assert time.monotonic() - start < 2
    assert result.outcome == "retryable"
    assert result.status_code is None
    assert result.error == (
        f"TLS handshake timed out after 0.5 s (127.0.0.1:{server.port})"
    )
    assert server.accepted == 1


def test_dripping_tls_handshake_is_bounded(silent_server):
    # a TLS record header announcing 16 KB of handshake, then one byte at a time
    server = silent_server(greeting=b"\x16\x03\x03\x40\x00" + b"\x02" * 200, drip=0.1)
    start = time.monotonic()
    result = transport.send(
        make_request(
            f"https://127.0.0.1:{server.port}/x", connect_timeout=0.8, read_timeout=5
        )
    )
    assert time.monotonic() - start < 0.8 + 1.5
    assert result.outcome == "retryable"
    assert result.error.startswith("TLS handshake timed out after 0.8 s")
    assert transport._WATCHDOG.pending() == 0


# --------------------------------------------------------------------------
# response bodies: decoded here, with a size limit
# --------------------------------------------------------------------------


def _gzip_of_zeros(size_mib):
    """A valid single-member gzip of ``size_mib`` MiB of zeros, built fast."""
    block = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    zeros = bytes(block)
    for _ in range(size_mib):
        crc = zlib.crc32(zeros, crc)
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        + segment * size_mib
        + compressor.flush()
        + struct.pack("<II", crc, (size_mib * block) & 0xFFFFFFFF)
    )


@pytest.fixture(scope="module")
def gzip_bomb():
    """gzip of gzip: under 10 KB on the wire, 1 GiB once decoded."""
    inner = _gzip_of_zeros(1024)
    bomb = gzip.compress(inner, 9)
    assert len(bomb) < 10_000
    return bomb


def test_gzip_bomb_is_decoded_with_a_limit(scripted_server, gzip_bomb):
    scripted_server.script(
        Reply(200, {"Content-Encoding": "gzip, gzip"}, gzip_bomb),
        Reply(200, {"Content-Type": "text/plain"}, "after"),
    )
    session = transport.SessionPool().get("bomb")
    gc.collect()
    tracemalloc.start()
    try:
        start = time.monotonic()
        result = transport.send(make_request(scripted_server.url), session)
        elapsed = time.monotonic() - start
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome == "success"
    assert result.response_truncated is True
    assert len(result.response_text) == transport.RESPONSE_READ_LIMIT
    assert set(result.response_text) == {"\ufffd"}, "NUL bytes are not kept as is"
    assert elapsed < 5
    assert peak < 50 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    again = transport.send(make_request(scripted_server.url), session)
    assert again.response_text == "after"
    session.close()


def test_accept_encoding_offers_only_what_send_decodes(scripted_server):
    transport.send(make_request(scripted_server.url))
    assert scripted_server.received[0].headers["Accept-Encoding"] == "gzip, deflate"
    transport.send(
        make_request(scripted_server.url, headers={"accept-encoding": "identity"})
    )
    sent = {k.lower(): v for k, v in scripted_server.received[1].headers.items()}
    assert sent["accept-encoding"] == "identity"


def _deflate_raw(data):
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


TEXT = '{"id": 42, "name": "café"}' * 50


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(TEXT.encode())),
        ("x-gzip", gzip.compress(TEXT.encode())),
        ("GZIP", gzip.compress(TEXT.encode())),
        ("deflate", zlib.compress(TEXT.encode())),
        ("deflate", _deflate_raw(TEXT.encode())),
        ("identity", TEXT.encode()),
        ("", TEXT.encode()),
        ("gzip, gzip", gzip.compress(gzip.compress(TEXT.encode()))),
        ("deflate, gzip", gzip.compress(zlib.compress(TEXT.encode()))),
        ("gzip, identity", gzip.compress(TEXT.encode())),
        # two gzip members in a row
        (
            "gzip",
            gzip.compress(TEXT[:500].encode()) + gzip.compress(TEXT[500:].encode()),
        ),
    ],
)
def test_content_encodings_are_decoded(scripted_server, encoding, body):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if encoding:
        headers["Content-Encoding"] = encoding
    scripted_server.script(Reply(200, headers, body))
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "success"
    assert result.response_text == TEXT
    assert result.response_truncated is False


def test_decoded_body_is_cut_at_the_limit(scripted_server, monkeypatch):
    monkeypatch.setattr(transport, "RESPONSE_READ_LIMIT", 1000)
    monkeypatch.setattr(transport, "RESPONSE_CHUNK", 256)
    scripted_server.script(
        Reply(200, {"Content-Encoding": "gzip"}, gzip.compress(b"y" * 100_000))
    )
    result = transport.send(make_request(scripted_server.url))
    assert result.response_text == "y" * 1000
    assert result.response_truncated is True


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "gzip, " * 5 + "gzip"])
def test_unsupported_encoding_is_not_shown(scripted_server, encoding):
    scripted_server.script(
        Reply(201, {"Content-Encoding": encoding}, b"\x00\x8b\xff" * 10)
    )
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "success", "the receiver's answer still counts"
    assert result.status_code == 201
    assert result.response_text == (
        f"[response body not read: unsupported Content-Encoding {encoding!r}]"
    )


def test_corrupt_gzip_body_is_reported(scripted_server):
    scripted_server.script(Reply(200, {"Content-Encoding": "gzip"}, b"not gzip"))
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "retryable"
    assert result.status_code == 200
    assert result.error.startswith("HTTP 200, then broken response body")
    assert "gzip" in result.error


def test_head_and_empty_encoded_bodies(scripted_server):
    scripted_server.script(Reply(204, {"Content-Encoding": "gzip"}, b""))
    result = transport.send(make_request(scripted_server.url))
    assert (result.outcome, result.response_text) == ("success", "")


# --------------------------------------------------------------------------
# header values
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Bearer abc", None),
        ("", None),
        (None, None),
        ("tab\tinside", None),
        ("café ÿ", None),  # Latin-1
        (b"bytes", None),
        (12, None),
        ("a\r\nX-Injected: 1", "contains a line break (CR/LF)"),
        ("a\nb", "contains a line break (CR/LF)"),
        ("a\rb", "contains a line break (CR/LF)"),
        ("a\x00b", "contains a NUL character"),
        ("a\x01b", "contains the control character U+0001"),
        ("a\x7fb", "contains the control character U+007F"),
        ("5 €", "contains the non-Latin-1 character '€' (U+20AC EURO SIGN)"),
        ("a\u2028b", "contains the non-Latin-1 character (U+2028 LINE SEPARATOR)"),
    ],
)
def test_header_value_checks(value, reason):
    assert transport.invalid_value_reason(value) == reason
    assert transport.is_valid_header_value(value) is (reason is None)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Bearer s3cr3t-t0ken\r\nX-Evil: 1", "contains a line break (CR/LF)"),
        ("Bearer s3cr3t-t0ken€", "contains the non-Latin-1 character '€'"),
    ],
)
def test_unsendable_header_value_is_refused_without_showing_it(
    scripted_server, value, reason
):
    result = transport.send(
        make_request(scripted_server.url, headers={"Authorization": value})
    )
    assert result.outcome == "permanent"
    assert result.attempts == 0
    assert result.error.startswith(
        f"Invalid header: the value of Authorization {reason}"
    )
    assert "s3cr3t" not in result.error
    assert scripted_server.connections == 0
