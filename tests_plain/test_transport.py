"""tools/transport.py against real local HTTP servers (no mocking)."""

import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests
from conftest import Reply, make_request

from bj_api_sync.tools import transport

# --------------------------------------------------------------------------
# classification and URL helpers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "success"),
        (201, "success"),
        (204, "success"),
        (100, "permanent"),
        (301, "permanent"),
        (302, "permanent"),
        (304, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (409, "permanent"),
        (413, "permanent"),
        (408, "retryable"),
        (425, "retryable"),
        (429, "retryable"),
        (500, "retryable"),
        (502, "retryable"),
        (503, "retryable"),
        (504, "retryable"),
        (599, "retryable"),
    ],
)
def test_classify(status, outcome):
    assert transport.classify(status) == outcome


def test_build_url():
    assert transport.build_url("http://h/p", None) == "http://h/p"
    assert transport.build_url("http://h/p", []) == "http://h/p"
    assert transport.build_url("http://h/p", [("a", "1"), ("b", "x y")]) == (
        "http://h/p?a=1&b=x+y"
    )
    assert transport.build_url("http://h/p?x=0", [("a", "1")]) == "http://h/p?x=0&a=1"
    assert transport.build_url("http://h/p?", [("a", "1")]) == "http://h/p?a=1"
    assert transport.build_url("http://h/p#frag", [("a", "é&")]) == (
        "http://h/p?a=%C3%A9%26#frag"
    )
    assert transport.build_url(
        "http://h/p", [("t", True), ("f", False), ("n", None), ("ids", [1, 2])]
    ) == ("http://h/p?t=true&f=false&n=&ids=1&ids=2")
    assert transport.build_url("http://h/p", {"a": 1}) == "http://h/p?a=1"


def test_url_placeholders_and_render_url():
    template = (
        "https://api.example.com/v1/partners/{partner_id.ref}/orders/{name}?x={id}"
    )
    assert transport.url_placeholders(template) == ["partner_id.ref", "name", "id"]
    assert transport.url_placeholders("https://api.example.com/v1/orders") == []
    assert transport.url_placeholders("") == []
    assert transport.url_placeholders("https://h/{a}/{a}") == ["a"]
    rendered = transport.render_url(
        template, {"partner_id.ref": "A/B 1", "name": "SO001", "id": 7}
    )
    assert rendered == "https://api.example.com/v1/partners/A%2FB%201/orders/SO001?x=7"
    assert transport.render_url("https://h/{a}/{b}", {"a": None, "b": False}) == (
        "https://h//"
    )
    assert transport.render_url("https://h/{ids}", {"ids": [1, 2]}) == "https://h/1%2C2"
    # no placeholder, or braces that are not placeholders: unchanged
    assert transport.render_url("https://h/p?q=1", {}) == "https://h/p?q=1"
    assert transport.render_url("https://h/{}/{1x}", {}) == "https://h/{}/{1x}"
    with pytest.raises(ValueError, match=r"\{name\}"):
        transport.render_url("https://h/{name}", {})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://api.example.com/v1", None),
        ("http://127.0.0.1:8069/x?y=1", None),
        ("HTTPS://EXAMPLE.COM", None),
        ("https://h/{partner_id.ref}", None),
        ("", "empty"),
        (None, "empty"),
        ("ftp://example.com/file", "http:// or https://"),
        ("example.com/api", "http:// or https://"),
        ("https://", "no host"),
        ("http:///path", "no host"),
        ("https://exa mple.com", "a space at position 12"),
        ("http://h:99999/", "not valid"),
    ],
)
def test_validate_url(url, message):
    error = transport.validate_url(url)
    if message is None:
        assert error is None
    else:
        assert message in error


def test_parse_retry_after():
    assert transport.parse_retry_after(None) is None
    assert transport.parse_retry_after("") is None
    assert transport.parse_retry_after("soon") is None
    assert transport.parse_retry_after("120") == 120.0
    assert transport.parse_retry_after(" 1.5 ") == 1.5
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert transport.parse_retry_after(later, now=now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert transport.parse_retry_after(earlier, now=now) == 0.0


# --------------------------------------------------------------------------
# sending
# --------------------------------------------------------------------------


def test_success(scripted_server):
    scripted_server.script(
        Reply(201, {"Content-Type": "application/json"}, '{"id": 42, "name": "é"}')
    )
    result = transport.send(make_request(scripted_server.url + "/orders"))
    assert result.outcome == "success"
    assert result.status_code == 201
    assert result.attempts == 1
    assert result.error is None
    assert result.response_text == '{"id": 42, "name": "é"}'
    assert result.response_headers["Content-Type"] == "application/json"
    assert result.url == scripted_server.url + "/orders"
    assert result.retry_after is None and result.location is None
    assert result.elapsed_ms >= 0
    (seen,) = scripted_server.received
    assert seen.method == "POST"
    assert seen.path == "/orders"
    assert seen.body == b'{"a":1}'
    assert seen.headers["Idempotency-Key"] == "key-123"
    assert seen.headers["Authorization"] == "Bearer s3cr3t"
    assert seen.headers["Content-Type"] == "application/json"


def test_empty_and_non_json_responses(scripted_server):
    scripted_server.script(Reply(204), Reply(200, {"Content-Type": "text/html"}, "<p>"))
    first = transport.send(make_request(scripted_server.url))
    second = transport.send(make_request(scripted_server.url))
    assert (first.outcome, first.status_code, first.response_text) == (
        "success",
        204,
        "",
    )
    assert second.response_text == "<p>"


def test_response_charset(scripted_server):
    scripted_server.script(
        Reply(
            200,
            {"Content-Type": "text/plain; charset=latin-1"},
            "café".encode("latin-1"),
        ),
        Reply(400, {"Content-Type": "text/plain"}, b"bad \xff byte"),
    )
    assert transport.send(make_request(scripted_server.url)).response_text == "café"
    result = transport.send(make_request(scripted_server.url))
    assert result.response_text == "bad \ufffd byte"
    assert result.error == "HTTP 400"


def test_get_with_params_has_no_body(scripted_server):
    request = make_request(
        scripted_server.url + "/search?fixed=1",
        method="GET",
        body=None,
        params=[("q", "a b"), ("ref", "é")],
    )
    result = transport.send(request)
    assert result.outcome == "success"
    assert result.url == scripted_server.url + "/search?fixed=1&q=a+b&ref=%C3%A9"
    (seen,) = scripted_server.received
    assert seen.method == "GET"
    assert seen.path == "/search?fixed=1&q=a+b&ref=%C3%A9"
    assert seen.body == b""
    assert "Content-Length" not in seen.headers


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_send_body(scripted_server, method):
    result = transport.send(make_request(scripted_server.url, method=method))
    assert result.outcome == "success"
    assert scripted_server.received[0].method == method
    assert scripted_server.received[0].body == b'{"a":1}'


def test_503_503_200_retried_with_same_headers(scripted_server):
    scripted_server.script(503, 503, 200)
    result = transport.send(make_request(scripted_server.url, max_retries=3))
    assert result.outcome == "success"
    assert result.status_code == 200
    assert result.attempts == 3
    assert len(scripted_server.received) == 3
    assert [r.headers["Idempotency-Key"] for r in scripted_server.received] == [
        "key-123"
    ] * 3
    first = scripted_server.received[0]
    for seen in scripted_server.received[1:]:
        assert seen.headers == first.headers
        assert seen.body == first.body


def test_429_retry_after_short_is_honoured(scripted_server):
    scripted_server.script(Reply(429, {"Retry-After": "1"}, "slow down"), 200)
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "success"
    assert result.attempts == 2
    assert result.elapsed_ms >= 900


def test_retry_after_above_cap_returns_at_once(scripted_server):
    scripted_server.script(Reply(429, {"Retry-After": "120"}, "later"), 200)
    start = time.monotonic()
    result = transport.send(make_request(scripted_server.url))
    assert time.monotonic() - start < 5
    assert result.outcome == "retryable"
    assert result.status_code == 429
    assert result.retry_after == 120.0
    assert result.attempts == 1
    assert result.error == "HTTP 429"
    assert result.response_text == "later"
    assert len(scripted_server.received) == 1


def test_retry_after_http_date_above_cap(scripted_server):
    when = datetime.now(timezone.utc) + timedelta(minutes=10)
    scripted_server.script(
        Reply(503, {"Retry-After": format_datetime(when, usegmt=True)}), 200
    )
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "retryable"
    assert result.attempts == 1
    assert 500 < result.retry_after <= 600


def test_413_with_retry_after_not_retried(scripted_server):
    scripted_server.script(Reply(413, {"Retry-After": "0"}), 200)
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "permanent"
    assert result.attempts == 1
    assert len(scripted_server.received) == 1


def test_400_not_retried(scripted_server):
    scripted_server.script(
        Reply(400, {"Content-Type": "application/json"}, '{"error":"bad"}'), 200
    )
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "permanent"
    assert result.status_code == 400
    assert result.error == "HTTP 400"
    assert result.response_text == '{"error":"bad"}'
    assert result.attempts == 1
    assert len(scripted_server.received) == 1


def test_408_is_retryable_but_not_quick_retried(scripted_server):
    scripted_server.script(408, 200)
    result = transport.send(make_request(scripted_server.url))
    assert (result.outcome, result.attempts) == ("retryable", 1)


def test_500_exhausts_retries(scripted_server):
    scripted_server.script(*[500] * 10)
    result = transport.send(make_request(scripted_server.url, max_retries=3))
    assert result.outcome == "retryable"
    assert result.status_code == 500
    assert result.error == "HTTP 500"
    assert result.attempts == 4
    assert len(scripted_server.received) == 4


def test_no_quick_retry_when_max_retries_is_zero(scripted_server):
    scripted_server.script(503, 200)
    result = transport.send(make_request(scripted_server.url, max_retries=0))
    assert (result.outcome, result.attempts) == ("retryable", 1)
    assert len(scripted_server.received) == 1


def test_backoff_is_used_between_retries(scripted_server):
    # urllib3 sleeps 0 before the first retry, then factor * 2 ** (n - 1)
    scripted_server.script(503, 503, 200)
    start = time.monotonic()
    result = transport.send(make_request(scripted_server.url, backoff_factor=0.2))
    assert result.attempts == 3
    assert time.monotonic() - start >= 0.35


def test_backoff_capped_at_30_seconds():
    retry = transport.SyncRetry.for_request(
        make_request("http://127.0.0.1", backoff_factor=100, max_retries=10)
    )
    for _ in range(5):
        retry = retry.increment(method="POST", url="/", error=ConnectionError())
    assert retry.get_backoff_time() == 30.0
    assert retry.attempts == 6


def test_connection_refused(closed_port):
    request = make_request(f"http://127.0.0.1:{closed_port}/x", max_retries=3)
    result = transport.send(request)
    assert result.outcome == "retryable"
    assert result.status_code is None
    assert result.attempts == 4
    assert result.error.startswith("Connection refused")
    assert result.url == f"http://127.0.0.1:{closed_port}/x"


def test_dropped_connection_then_200(scripted_server):
    scripted_server.script("drop", 200)
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "success"
    assert result.attempts == 2
    assert len(scripted_server.received) == 2


def test_dropped_connection_exhausts_retries(scripted_server):
    scripted_server.script(*["drop"] * 5)
    result = transport.send(make_request(scripted_server.url, max_retries=2))
    assert result.outcome == "retryable"
    assert result.attempts == 3
    assert "closed by the server" in result.error or "reset" in result.error


def test_read_timeout_not_retried(scripted_server):
    scripted_server.script(Reply(200, delay=2), 200, 200)
    start = time.monotonic()
    result = transport.send(
        make_request(scripted_server.url, read_timeout=0.5, max_retries=3)
    )
    assert time.monotonic() - start < 1.5
    assert result.outcome == "retryable"
    assert result.attempts == 1
    assert result.status_code is None
    assert result.error.startswith("Read timed out after 0.5 s")
    assert len(scripted_server.received) == 1


def test_read_timeout_after_retries_counts_attempts(scripted_server):
    scripted_server.script(503, Reply(200, delay=2))
    result = transport.send(make_request(scripted_server.url, read_timeout=0.3))
    assert result.outcome == "retryable"
    assert result.attempts == 2
    assert result.error.startswith("Read timed out")


def test_read_timeout_while_reading_the_body(scripted_server):
    scripted_server.script(Reply(200, {}, b"x" * 100, body_delay=2))
    result = transport.send(make_request(scripted_server.url, read_timeout=0.3))
    assert result.outcome == "retryable"
    assert result.status_code == 200
    assert result.error.startswith("HTTP 200, then read timed out after 0.3 s")
    assert result.elapsed_ms < 1500


def test_urllib3_retry_log_lines_are_redacted(scripted_server, caplog):
    scripted_server.script("drop", 200)
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        result = transport.send(
            make_request(scripted_server.url + "/p?api_key=SECRET123&q=1")
        )
    assert result.attempts == 2
    assert "Retrying" in caplog.text
    assert "SECRET123" not in caplog.text
    assert "api_key=***" in caplog.text


def _fill_backlog():
    """A loopback listener whose accept queue is full: new connects hang."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(16):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(0.2)
        try:
            sock.connect(listener.getsockname())
        except TimeoutError:
            sock.close()
            return listener, fillers
        except OSError:
            sock.close()
            break
        fillers.append(sock)
    for sock in fillers:
        sock.close()
    listener.close()
    return None, []


def test_connect_timeout_is_retried():
    listener, fillers = _fill_backlog()
    if listener is None:
        pytest.skip("cannot make a loopback connect hang on this platform")
    try:
        port = listener.getsockname()[1]
        start = time.monotonic()
        result = transport.send(
            make_request(
                f"http://127.0.0.1:{port}/", connect_timeout=0.3, max_retries=1
            )
        )
        elapsed = time.monotonic() - start
    finally:
        for sock in fillers:
            sock.close()
        listener.close()
    assert result.outcome == "retryable"
    assert result.attempts == 2
    assert result.error.startswith("Connect timed out after 0.3 s")
    assert 0.5 <= elapsed < 3


def test_redirect_is_not_followed(scripted_server):
    scripted_server.script(
        Reply(302, {"Location": "https://elsewhere.example/login?token=abc"}), 200
    )
    result = transport.send(make_request(scripted_server.url))
    assert result.outcome == "permanent"
    assert result.status_code == 302
    assert result.location == "https://elsewhere.example/login?token=abc"
    assert result.error == (
        "Redirect (302) to https://elsewhere.example/login?token=*** not followed"
    )
    assert len(scripted_server.received) == 1


def test_get_redirect_is_not_followed_either(scripted_server):
    scripted_server.script(Reply(301, {"Location": "/moved"}), 200)
    result = transport.send(make_request(scripted_server.url, method="GET", body=None))
    assert (result.outcome, result.location) == ("permanent", "/moved")
    assert len(scripted_server.received) == 1


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("htp://example.com/x", "Invalid URL"),
        ("example.com/x", "Invalid URL"),
        ("http://", "Invalid URL"),
    ],
)
def test_invalid_url_is_permanent(url, fragment):
    result = transport.send(make_request(url))
    assert result.outcome == "permanent"
    assert fragment in result.error
    assert result.status_code is None


def test_unresolvable_host_is_retryable():
    # ".invalid" never resolves (RFC 2606); a failing lookup sends no packet out
    result = transport.send(make_request("http://bj-api-sync.invalid/", max_retries=0))
    assert result.outcome == "retryable"
    assert result.attempts == 1
    assert result.error.startswith(("Cannot resolve host name", "Connection"))


def test_bad_header_value_is_permanent(scripted_server):
    request = make_request(scripted_server.url, headers={"X-Bad": "a\nb"})
    result = transport.send(request)
    assert result.outcome == "permanent"
    assert "header" in result.error.lower()
    assert scripted_server.received == []


def test_large_response_is_capped(scripted_server, monkeypatch):
    monkeypatch.setattr(transport, "RESPONSE_READ_LIMIT", 1000)
    scripted_server.script(Reply(200, {}, b"x" * 5000), Reply(200, {}, b"next"))
    session = transport.SessionPool().get("k")
    result = transport.send(make_request(scripted_server.url), session=session)
    assert result.outcome == "success"
    assert result.response_text == "x" * 1000
    # the connection cut short is not reused in a broken state
    again = transport.send(make_request(scripted_server.url), session=session)
    assert again.response_text == "next"
    session.close()


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------


def test_pooled_session_reuses_the_connection(scripted_server):
    pool = transport.SessionPool()
    session = pool.get(("db", 1, "2024-01-01"))
    assert pool.get(("db", 1, "2024-01-01")) is session
    assert pool.get(("db", 2, "2024-01-01")) is not session
    first = transport.send(make_request(scripted_server.url), session=session)
    second = transport.send(make_request(scripted_server.url), session=session)
    assert first.outcome == second.outcome == "success"
    ports = {r.client_port for r in scripted_server.received}
    assert len(scripted_server.received) == 2
    assert len(ports) == 1
    for prefix in ("http://", "https://"):
        assert isinstance(
            session.get_adapter(prefix + "x"), requests.adapters.HTTPAdapter
        )
    pool.clear()
    assert len(pool) == 0
    assert pool.get(("db", 1, "2024-01-01")) is not session
    pool.clear()


def test_one_shot_sessions_do_not_leak(scripted_server):
    for _ in range(2):
        assert transport.send(make_request(scripted_server.url)).outcome == "success"
    ports = {r.client_port for r in scripted_server.received}
    assert len(ports) == 2


def test_pool_is_per_thread():
    pool = transport.SessionPool()
    mine = pool.get("k")
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(pool.get("k")))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert len(pool) == 1
    pool.clear()


def test_pool_evicts_least_recently_used():
    pool = transport.SessionPool(max_sessions=2)
    a = pool.get("a")
    pool.get("b")
    assert pool.get("a") is a
    pool.get("c")  # evicts "b"
    assert len(pool) == 2
    assert pool.get("a") is a
    pool.clear()
    assert len(pool) == 0
    assert pool.get("a") is not a


def test_default_pool_exists():
    assert isinstance(transport.DEFAULT_POOL, transport.SessionPool)


def test_goes_through_patched_session_send(scripted_server, monkeypatch):
    """Odoo's test harness patches Session.send; our requests must go through it."""
    seen = []
    original = requests.sessions.Session.send

    def patched(session, prepared, **kwargs):
        seen.append((prepared.method, prepared.url, kwargs.get("timeout")))
        return original(session, prepared, **kwargs)

    monkeypatch.setattr(requests.sessions.Session, "send", patched)
    scripted_server.script(503, 200)
    result = transport.send(
        make_request(scripted_server.url, connect_timeout=2, read_timeout=7),
        session=transport.SessionPool().get("x"),
    )
    assert result.outcome == "success" and result.attempts == 2
    # quick retries happen below Session.send: one call for the logical request
    assert seen == [("POST", scripted_server.url + "/", (2, 7))]


def test_blocked_by_patched_send_is_reported(monkeypatch):
    class BlockedRequest(requests.exceptions.ConnectionError):
        pass

    def blocked(session, prepared, **kwargs):
        raise BlockedRequest(f"External requests verboten (was {prepared.url})")

    monkeypatch.setattr(requests.sessions.Session, "send", blocked)
    result = transport.send(make_request("https://api.example.com/x"))
    assert result.outcome == "retryable"
    assert "verboten" in result.error


# --------------------------------------------------------------------------
# TLS (skipped without the openssl command)
# --------------------------------------------------------------------------


@pytest.fixture
def self_signed_server(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl command not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode:
        pytest.skip("openssl could not make a certificate")
    from conftest import ScriptedServer

    server = ScriptedServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.url = f"https://127.0.0.1:{server.port}"
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_untrusted_certificate_is_permanent(self_signed_server):
    result = transport.send(make_request(self_signed_server.url, max_retries=3))
    assert result.outcome == "permanent"
    assert result.attempts == 1
    assert result.error.startswith("SSL certificate verification failed")


def test_send_many_lanes_bound_concurrency(scripted_server):
    for _i in range(6):
        scripted_server.script(Reply(200, delay=0.3))
    jobs = [(make_request(scripted_server.url + f"/{i}"), "cfg-a") for i in range(6)]
    start = time.monotonic()
    results = transport.send_many(jobs, limits={"cfg-a": 3})
    elapsed = time.monotonic() - start
    assert [r.outcome for r in results] == ["success"] * 6
    assert 0.55 < elapsed < 1.2, "6 requests in 3 lanes: two rounds of 0.3 s"
    assert sorted(r.path for r in scripted_server.received) == [
        f"/{i}" for i in range(6)
    ]


def test_send_many_lane_stops_after_retryable_failure(scripted_server):
    scripted_server.script(Reply(503), Reply(200), Reply(200))
    jobs = [
        (make_request(scripted_server.url + f"/{i}", max_retries=0), "k")
        for i in range(3)
    ]
    results = transport.send_many(jobs, limits={"k": 1})
    assert results[0].outcome == "retryable"
    assert results[1:] == [None, None], "the rest of the lane is left unsent"
    assert len(scripted_server.received) == 1


def test_send_many_keys_run_in_parallel(scripted_server):
    for _i in range(4):
        scripted_server.script(Reply(200, delay=0.3))
    jobs = [(make_request(scripted_server.url + "/x"), f"cfg-{i}") for i in range(4)]
    start = time.monotonic()
    results = transport.send_many(jobs)
    assert all(r.outcome == "success" for r in results)
    assert time.monotonic() - start < 0.55, "one lane per key, keys in parallel"


def take_all(dispatcher, timeout=5):
    """Every result of ``dispatcher``, in the order they came, as taken."""
    taken = []
    while len(dispatcher):
        batch = dispatcher.take(timeout=timeout)
        assert batch, "a result is overdue"
        taken.append(batch)
    return taken


def test_dispatcher_bounds_concurrency_and_streams_results(scripted_server):
    for i in range(6):
        scripted_server.script(Reply(200, delay=0.1 + 0.15 * (i % 3)))
    dispatcher = transport.Dispatcher()
    start = time.monotonic()
    for i in range(6):
        dispatcher.submit(i, make_request(scripted_server.url + f"/{i}"), "k", 3)
    assert len(dispatcher) == 6
    first = dispatcher.take(timeout=5)
    assert time.monotonic() - start < 0.3, "results come as they are in"
    taken = [first, *take_all(dispatcher)]
    assert len(dispatcher) == 0
    assert dispatcher.take(timeout=5) == [], "nothing outstanding: no wait"
    tokens = [token for batch in taken for token, _result in batch]
    assert sorted(tokens) == list(range(6))
    assert all(result.outcome == "success" for b in taken for _t, result in b)
    assert scripted_server.max_in_flight == 3


def test_dispatcher_keeps_submission_order_per_key(scripted_server):
    dispatcher = transport.Dispatcher()
    for i in range(4):
        dispatcher.submit(i, make_request(scripted_server.url + f"/{i}"), "k", 1)
    take_all(dispatcher)
    assert [r.path for r in scripted_server.received] == ["/0", "/1", "/2", "/3"]


def test_dispatcher_gives_back_waiting_requests_after_retryable_failure(
    scripted_server,
):
    scripted_server.script(Reply(503))
    dispatcher = transport.Dispatcher()
    for i in range(3):
        request = make_request(scripted_server.url + f"/{i}", max_retries=0)
        dispatcher.submit(i, request, "k", 1)
    results = dict(pair for batch in take_all(dispatcher) for pair in batch)
    assert results[0].outcome == "retryable"
    assert results[1] is None and results[2] is None, "given back unsent"
    assert len(scripted_server.received) == 1


def test_dispatcher_keys_do_not_wait_for_each_other(scripted_server):
    scripted_server.script(Reply(200, delay=0.6))
    dispatcher = transport.Dispatcher()
    dispatcher.submit("slow", make_request(scripted_server.url + "/slow"), "a", 1)
    time.sleep(0.05)
    dispatcher.submit("fast", make_request(scripted_server.url + "/fast"), "b", 1)
    [(token, result)] = dispatcher.take(timeout=5)
    assert token == "fast" and result.outcome == "success"
    take_all(dispatcher)


@pytest.mark.parametrize(
    "name, valid",
    [
        ("X-API-Key", True),
        ("x_custom.1", True),
        ("Bad Header", False),
        ("a:b", False),
        ("", False),
        ("Té", False),
        ("X\r\nInjected", False),
    ],
)
def test_is_valid_header_name(name, valid):
    assert transport.is_valid_header_name(name) is valid
