"""Connection probe of the Test Connection button: DNS, TCP, then TLS.

No ``odoo`` import. :func:`probe` resolves the URL's host, opens a TCP
connection and, for https, completes a TLS handshake with the same client
certificate and trust settings as the requests (``cert`` and ``verify`` as
``requests`` takes them), then reports each step's duration, the TLS version
and the server certificate (:class:`~.tls.CertInfo`: subject, issuer, expiry).
When certificate verification fails, a second, unverified handshake still reads
the server's certificate so the user sees what was presented. Nothing is sent
over the connection. It never raises for network problems: :class:`ProbeResult`
says at which step (``stage``) it failed and why, in the transport's words.
When an environment proxy applies to the URL, nothing is probed (the HTTP
request goes through the proxy; ``proxy`` says which).
"""

import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from .redact import redact_url
from .tls import certificate_info

RESOLVE = "resolve"
CONNECT = "connect"
TLS = "tls"


@dataclass
class ProbeResult:
    """What :func:`probe` found; ``error`` is None when every step passed."""

    host: str
    port: int
    tls: bool
    addresses: list = field(default_factory=list)
    address: str | None = None
    proxy: str | None = None
    resolve_ms: int = 0
    connect_ms: int = 0
    tls_ms: int = 0
    tls_version: str | None = None
    peer_cert: object = None
    verified: bool = False
    stage: str | None = None
    error: str | None = None

    @property
    def ok(self):
        return self.error is None

    @property
    def where(self):
        return f"{self.host}:{self.port}"


def _ms(start):
    return int(round((time.monotonic() - start) * 1000))


def _proxy_for(url):
    """The environment proxy ``requests`` would use for ``url``, or None."""
    proxies = requests.utils.get_environ_proxies(url)
    scheme = urlsplit(url).scheme
    return proxies.get(scheme) or proxies.get("all")


def _default_ca_bundle():
    """The CA file ``requests`` verifies against when ``verify=True``."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )


def _context(cert, verify):
    if verify:
        cafile = verify if isinstance(verify, str) else _default_ca_bundle()
        context = ssl.create_default_context(cafile=cafile)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        context.load_cert_chain(certfile, keyfile)
    return context


def _connect(result, infos, timeout):
    """A connected socket (the first address that answers), or None with
    ``result`` telling why."""
    start = time.monotonic()
    last = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as error:
            sock.close()
            last = error
            continue
        result.address = sockaddr[0]
        result.connect_ms = _ms(start)
        return sock
    result.connect_ms = _ms(start)
    result.stage = CONNECT
    if isinstance(last, TimeoutError):
        result.error = f"Connect timed out after {timeout:g} s ({result.where})"
    elif isinstance(last, ConnectionRefusedError):
        result.error = f"Connection refused ({result.where})"
    else:
        reason = getattr(last, "strerror", None) or str(last) or "unknown error"
        result.error = f"Connection failed ({result.where}): {reason}"
    return None


def _handshake(result, sock, context, timeout):
    """Wrap ``sock`` in TLS; return the TLS socket or None (``result`` says
    why). ``sock`` is closed on failure."""
    start = time.monotonic()
    try:
        tls_sock = context.wrap_socket(sock, server_hostname=result.host)
    except ssl.SSLCertVerificationError as error:
        sock.close()
        reason = error.verify_message or error.reason or str(error)
        result.error = f"SSL certificate verification failed ({result.where}): {reason}"
    except TimeoutError:
        sock.close()
        result.error = f"TLS handshake timed out after {timeout:g} s ({result.where})"
    except ssl.SSLError as error:
        sock.close()
        result.error = f"SSL error ({result.where}): {error.reason or error}"
    except (OSError, ValueError) as error:
        sock.close()
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        result.error = f"Connection closed during the TLS handshake ({result.where}): "
        result.error += reason
    else:
        result.tls_ms = _ms(start)
        return tls_sock
    result.tls_ms = _ms(start)
    result.stage = TLS
    return None


def _read_peer(result, tls_sock):
    result.tls_version = tls_sock.version()
    der = tls_sock.getpeercert(binary_form=True)
    if der:
        try:
            result.peer_cert = certificate_info(der)
        except ValueError:
            result.peer_cert = None


def probe(url, timeout=5.0, cert=None, verify=True):
    """Resolve, connect and (https) shake hands with ``url``'s server.

    :param timeout: seconds for the TCP connect and for the TLS handshake
    :param cert: client certificate as ``requests`` takes it: a path or a
        ``(cert_path, key_path)`` pair
    :param verify: True (the CA bundle ``requests`` uses), False, or the path
        of a CA bundle to verify the server against instead
    :return: :class:`ProbeResult`
    """
    parts = urlsplit(url)
    is_tls = parts.scheme.lower() == "https"
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if is_tls else 80)
    result = ProbeResult(host=host, port=port, tls=is_tls)
    if not host:
        result.stage = RESOLVE
        result.error = "The URL has no host name"
        return result
    proxy = _proxy_for(url)
    if proxy:
        result.proxy = redact_url(proxy)
        return result
    if is_tls:
        try:
            context = _context(cert, verify)
        except (OSError, ssl.SSLError) as error:
            result.stage = TLS
            result.error = f"Cannot load the TLS settings: {error}"
            return result
    start = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        result.resolve_ms = _ms(start)
        result.stage = RESOLVE
        reason = getattr(error, "strerror", None) or str(error)
        result.error = f"Cannot resolve host name ({result.where}): {reason}"
        return result
    result.resolve_ms = _ms(start)
    result.addresses = list(dict.fromkeys(info[4][0] for info in infos))
    sock = _connect(result, infos, timeout)
    if sock is None or not is_tls:
        if sock is not None:
            sock.close()
        return result
    tls_sock = _handshake(result, sock, context, timeout)
    if tls_sock is not None:
        result.verified = bool(verify)
        with tls_sock:
            _read_peer(result, tls_sock)
        return result
    if result.error.startswith("SSL certificate verification failed"):
        # Show what the server presented all the same: an expired or
        # self-signed certificate is what the user needs to see.
        _peek_unverified(result, infos, timeout, cert)
    return result


def _peek_unverified(result, infos, timeout, cert):
    """Read the server certificate without verifying it (``result``'s error
    stays the verification failure)."""
    shadow = ProbeResult(host=result.host, port=result.port, tls=True)
    try:
        context = _context(cert, False)
    except (OSError, ssl.SSLError):
        return
    sock = _connect(shadow, infos, timeout)
    if sock is None:
        return
    tls_sock = _handshake(shadow, sock, context, timeout)
    if tls_sock is not None:
        with tls_sock:
            _read_peer(result, tls_sock)
