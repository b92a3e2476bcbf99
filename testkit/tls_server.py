"""A throw-away PKI and a real TLS HTTP server on 127.0.0.1 (mutual TLS tests).

Plain Python (``cryptography``, ``ssl``, ``http.server``), shared by ``tests/``
and ``tests_plain/``::

    pki = make_pki()                        # CA, server cert (127.0.0.1), client cert
    server = TlsServer(pki).start()         # asks for a client cert signed by the CA
    server.url("/hook")                     # https://127.0.0.1:<port>/hook
    server.received[0].client_subject       # "CN=bj-client,O=bj_api_sync tests"
    server.handshake_errors                 # handshakes the server refused
    server.stop()
"""

import contextlib
import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bj_api_sync tests"),
        ]
    )


@dataclass
class Issued:
    """A certificate and its private key, as PEM text."""

    cert: str
    key: str
    not_after: datetime.datetime


def _issue(subject, key, issuer, issuer_key, days, extensions):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = now + datetime.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        # naive UTC datetimes: what cryptography 3.4 (Odoo's pin) expects
        .not_valid_after(not_after.replace(tzinfo=None))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Issued(_cert_pem(cert), _key_pem(key), not_after)


def make_ca(common_name="bj_api_sync test CA", days=30):
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    return _issue(
        name,
        key,
        name,
        key,
        days,
        [(x509.BasicConstraints(ca=True, path_length=0), True)],
    )


def issue(ca, common_name, days=30, server=False):
    """A leaf certificate signed by ``ca`` (an :class:`Issued` CA): a server
    certificate for 127.0.0.1 and localhost, or a client certificate."""
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    extensions = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    if server:
        extensions += [
            (
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ]
    else:
        extensions.append(
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        )
    return _issue(_name(common_name), key, ca_cert.subject, ca_key, days, extensions)


@dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it
    signed, and an unrelated CA (to make verification fail)."""

    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued


def make_pki(server_days=30, client_cn="bj-client"):
    ca = make_ca()
    return Pki(
        ca=ca,
        server=issue(ca, "127.0.0.1", days=server_days, server=True),
        client=issue(ca, client_cn),
        other_ca=make_ca("unrelated CA"),
    )


@dataclass
class TlsReceived:
    method: str
    path: str
    headers: dict
    body: bytes
    client_subject: str | None


def _subject_text(peer):
    """``"CN=...,O=..."`` of ``SSLSocket.getpeercert()``'s subject."""
    names = {"commonName": "CN", "organizationName": "O"}
    parts = [
        f"{names.get(key, key)}={value}"
        for rdn in (peer or {}).get("subject", ())
        for key, value in rdn
    ]
    return ",".join(parts) or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        return None

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        subject = _subject_text(self.connection.getpeercert())
        server = self.server.owner
        with server.lock:
            server.received.append(
                TlsReceived(
                    self.command, self.path, dict(self.headers.items()), body, subject
                )
            )
        payload = server.body
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _TlsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's thread: a client that fails
        # it is recorded, and never blocks or kills the accepting loop.
        try:
            request = self.owner.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            with self.owner.lock:
                self.owner.handshake_errors.append(str(error))
            return
        with contextlib.suppress(OSError):
            super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        return None


@dataclass
class TlsServer:
    """HTTPS on 127.0.0.1 with ``pki``'s server certificate; with
    ``require_client_cert`` (default) a client certificate signed by the CA is
    required (``ssl.CERT_REQUIRED``). Answers ``status`` (200) with ``body`` (a
    small JSON object) to any method and records each request with its
    client's subject."""

    pki: Pki
    require_client_cert: bool = True
    status: int = 200
    body: bytes = b'{"ok": true}'
    received: list = field(default_factory=list)
    handshake_errors: list = field(default_factory=list)

    def __post_init__(self):
        self.lock = threading.Lock()
        self.workdir = tempfile.mkdtemp(prefix="bj_tls_server_")
        paths = {}
        for name, text in (
            ("server.crt", self.pki.server.cert),
            ("server.key", self.pki.server.key),
            ("ca.crt", self.pki.ca.cert),
        ):
            paths[name] = os.path.join(self.workdir, name)
            with open(paths[name], "w") as handle:
                handle.write(text)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(paths["server.crt"], paths["server.key"])
        if self.require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(paths["ca.crt"])
        self.httpd = _TlsHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path="/hook"):
        return f"https://127.0.0.1:{self.port}{path}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def reset(self):
        with self.lock:
            self.received.clear()
            self.handshake_errors.clear()
