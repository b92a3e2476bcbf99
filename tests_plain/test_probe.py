"""tools/probe.py (DNS, TCP, TLS) and mutual TLS through tools/transport.py,
against a real TLS server on 127.0.0.1 (testkit/tls_server.py)."""

import socket

import pytest
from conftest import make_request

from bj_api_sync.testkit.tls_server import TlsServer, make_pki
from bj_api_sync.tools import probe, tls, transport


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture(scope="module")
def files(pki, tmp_path_factory):
    """The PEM of ``pki`` as a configuration's private files."""
    store = tls.PemFileStore(str(tmp_path_factory.mktemp("tls") / "db"))
    return {
        "cert": (
            store.save(1, "cert", pki.client.cert),
            store.save(1, "key", pki.client.key),
        ),
        "ca": store.save(1, "ca", pki.ca.cert),
        "other_ca": store.save(2, "ca", pki.other_ca.cert),
    }


@pytest.fixture
def mtls_server(pki):
    server = TlsServer(pki).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------


def test_probe_tls_reports_the_server_certificate(mtls_server, pki, files):
    result = probe.probe(mtls_server.url(), 5, cert=files["cert"], verify=files["ca"])
    assert result.ok, result.error
    assert result.addresses == ["127.0.0.1"] and result.address == "127.0.0.1"
    assert result.tls_version.startswith("TLS")
    assert result.verified
    assert result.peer_cert.not_after == pki.server.not_after
    assert "CN=127.0.0.1" in result.peer_cert.subject
    assert mtls_server.received == []  # nothing is sent over the connection


def test_probe_wrong_ca_fails_verification_but_shows_the_certificate(
    mtls_server, pki, files
):
    result = probe.probe(
        mtls_server.url(), 5, cert=files["cert"], verify=files["other_ca"]
    )
    assert result.stage == probe.TLS
    assert result.error.startswith("SSL certificate verification failed")
    assert f"127.0.0.1:{mtls_server.port}" in result.error
    assert not result.verified
    assert result.peer_cert.not_after == pki.server.not_after


def test_probe_refused_connection(closed_port):
    result = probe.probe(f"http://127.0.0.1:{closed_port}/x", 2)
    assert result.stage == probe.CONNECT
    assert result.error == f"Connection refused (127.0.0.1:{closed_port})"
    assert not result.tls


def test_probe_plain_http(scripted_server):
    result = probe.probe(scripted_server.url("/x"), 2)
    assert result.ok and result.address == "127.0.0.1"
    assert result.tls_version is None and result.peer_cert is None


def test_probe_dns_failure(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    result = probe.probe("https://api.invalid/x", 2)
    assert result.stage == probe.RESOLVE
    assert result.error == (
        "Cannot resolve host name (api.invalid:443): Name or service not known"
    )


def test_probe_url_without_host():
    result = probe.probe("https:///x", 2)
    assert (result.stage, result.error) == (probe.RESOLVE, "The URL has no host name")


def test_probe_unloadable_client_certificate(tmp_path, mtls_server):
    bad = tmp_path / "bad.pem"
    bad.write_text("nothing")
    result = probe.probe(mtls_server.url(), 2, cert=(str(bad), str(bad)))
    assert result.stage == probe.TLS
    assert result.error.startswith("Cannot load the TLS settings")


def test_probe_skips_when_a_proxy_applies(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example:3128")
    result = probe.probe("https://api.example.com/x", 2)
    assert result.ok and result.addresses == []
    assert "pw" not in result.proxy and "proxy.example" in result.proxy


# --------------------------------------------------------------------------
# mutual TLS through the transport
# --------------------------------------------------------------------------


def test_transport_sends_the_client_certificate(mtls_server, files):
    request = make_request(
        mtls_server.url(),
        max_retries=0,
        client_cert=files["cert"],
        ca_bundle=files["ca"],
    )
    result = transport.send(request)
    assert result.outcome == "success", result.error
    assert mtls_server.received[0].client_subject == (
        "CN=bj-client,O=bj_api_sync tests"
    )


def test_transport_without_client_certificate_explains(mtls_server, files):
    request = make_request(mtls_server.url(), max_retries=0, ca_bundle=files["ca"])
    result = transport.send(request)
    assert result.outcome == "retryable"
    assert "client certificate" in result.error
    assert "Max retries" not in result.error
    assert mtls_server.received == []


def test_transport_ca_bundle_replaces_the_default_store(mtls_server, files):
    request = make_request(
        mtls_server.url(),
        max_retries=0,
        client_cert=files["cert"],
        ca_bundle=files["other_ca"],
    )
    result = transport.send(request)
    assert result.outcome == "permanent"
    assert result.error.startswith("SSL certificate verification failed")
    # no CA bundle: the default store does not know the test CA either
    result = transport.send(
        make_request(mtls_server.url(), max_retries=0, client_cert=files["cert"])
    )
    assert result.error.startswith("SSL certificate verification failed")
