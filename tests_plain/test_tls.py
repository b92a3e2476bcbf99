"""tools/tls.py: PEM checks and the private PEM files (mutual TLS)."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from bj_api_sync.testkit.tls_server import issue, make_ca, make_pki
from bj_api_sync.tools import tls


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def _one_line(pem, joiner=""):
    """What a one-line password input makes of a PEM pasted into it."""
    return joiner.join(pem.splitlines())


# --------------------------------------------------------------------------
# PEM text
# --------------------------------------------------------------------------


@pytest.mark.parametrize("joiner", ["", " "])
def test_normalize_pem_restores_lines_lost_in_a_one_line_input(pki, joiner):
    chain = pki.client.cert + pki.ca.cert
    assert tls.normalize_pem(_one_line(chain, joiner)) == chain
    assert len(tls.load_certificates(_one_line(chain, joiner))) == 2


def test_normalize_pem_drops_text_around_blocks(pki):
    text = "Bag Attributes\n    friendlyName: client\n" + pki.client.cert + "\ntrailer"
    assert tls.normalize_pem(text) == pki.client.cert


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no PEM block found"),
        ("not a certificate", "no PEM block found"),
        ("-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----", "base64"),
        ("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----", "empty"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n"
            "-----END RSA PRIVATE KEY-----",
            "encrypted",
        ),
    ],
)
def test_pem_blocks_refuses_what_is_no_pem(text, message):
    with pytest.raises(tls.PemError, match=message):
        tls.pem_blocks(text)


def test_load_certificates_refuses_a_key_and_garbage(pki):
    with pytest.raises(tls.PemError, match="contains a private key"):
        tls.load_certificates(pki.client.cert + pki.client.key)
    garbage = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(tls.PemError, match="does not parse"):
        tls.load_certificates(garbage)
    with pytest.raises(tls.PemError, match="unexpected PUBLIC KEY block"):
        tls.load_certificates(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )


def test_load_private_key_formats(pki):
    key = tls.load_private_key(pki.client.key)  # PKCS#8
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert "BEGIN EC PRIVATE KEY" in traditional
    assert tls.load_private_key(_one_line(traditional))


def test_load_private_key_refusals(pki):
    key = tls.load_private_key(pki.client.key)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    with pytest.raises(tls.PemError, match="encrypted"):
        tls.load_private_key(encrypted)
    with pytest.raises(tls.PemError, match="found 2"):
        tls.load_private_key(pki.client.key + pki.server.key)
    with pytest.raises(tls.PemError, match="unexpected CERTIFICATE block"):
        tls.load_private_key(pki.client.key + pki.client.cert)
    broken = "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(tls.PemError, match="does not parse"):
        tls.load_private_key(broken)


def test_check_client_pair(pki):
    cert = tls.check_client_pair(pki.client.cert + pki.ca.cert, pki.client.key)
    assert tls.certificate_info(cert).subject.endswith("CN=bj-client")
    with pytest.raises(tls.PemError, match="does not match the certificate"):
        tls.check_client_pair(pki.client.cert, pki.server.key)


def test_certificate_info(pki):
    info = tls.certificate_info(pki.server.cert)
    assert info.not_after == pki.server.not_after
    assert info.not_after.tzinfo is not None
    assert "CN=127.0.0.1" in info.subject
    assert "CN=bj_api_sync test CA" in info.issuer
    assert 28 <= info.days_left() <= 30
    assert not info.is_expired()


def test_fingerprint_tells_settings_apart(pki):
    base = tls.fingerprint(pki.client.cert, pki.client.key, None)
    assert base == tls.fingerprint(pki.client.cert, pki.client.key, "")
    assert base != tls.fingerprint(pki.client.cert, pki.client.key, pki.ca.cert)
    # the position counts: a CA moved to another field is another setting
    assert tls.fingerprint("a", None, None) != tls.fingerprint(None, "a", None)
    assert pki.client.key not in base


# --------------------------------------------------------------------------
# Private files
# --------------------------------------------------------------------------


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_store_writes_private_files(tmp_path, pki):
    old_umask = os.umask(0)  # the most permissive umask: modes still private
    try:
        store = tls.PemFileStore(str(tmp_path / "tls" / "db"))
        path = store.save(7, "key", pki.client.key)
    finally:
        os.umask(old_umask)
    assert _mode(store.root) == 0o700
    assert _mode(path) == 0o600
    with open(path) as handle:
        assert handle.read() == pki.client.key
    name = os.path.basename(path)
    assert name.startswith("7-key-") and name.endswith(".pem")
    assert os.listdir(store.root) == [name]  # no temporary file left behind


def test_store_same_content_is_not_rewritten(tmp_path, pki):
    store = tls.PemFileStore(str(tmp_path / "db"))
    path = store.save(1, "cert", pki.client.cert)
    inode = os.stat(path).st_ino
    assert store.save(1, "cert", pki.client.cert) == path
    assert os.stat(path).st_ino == inode


def test_store_rewrites_a_tampered_or_loose_file(tmp_path, pki):
    store = tls.PemFileStore(str(tmp_path / "db"))
    path = store.save(1, "cert", pki.client.cert)
    os.chmod(path, 0o644)
    with open(path, "w") as handle:
        handle.write("tampered")
    assert store.save(1, "cert", pki.client.cert) == path
    assert _mode(path) == 0o600
    with open(path) as handle:
        assert handle.read() == pki.client.cert


def test_store_changed_pem_replaces_the_old_file_only_for_its_owner(tmp_path, pki):
    store = tls.PemFileStore(str(tmp_path / "db"))
    first = store.save(1, "cert", pki.client.cert)
    other_owner = store.save(2, "cert", pki.client.cert)
    other_kind = store.save(1, "ca", pki.ca.cert)
    assert first != other_owner  # same PEM, two owners: two files
    second = store.save(1, "cert", pki.server.cert)
    assert second != first
    assert not os.path.exists(first)
    assert os.path.exists(other_owner) and os.path.exists(other_kind)
    store.purge(1)
    assert sorted(os.listdir(store.root)) == [os.path.basename(other_owner)]


def test_private_dir_tightens_and_refuses(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    tls.private_dir(str(loose))
    assert _mode(str(loose)) == 0o700
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError, match="not a directory"):
        tls.private_dir(str(link))
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    with pytest.raises(OSError):
        tls.private_dir(str(plain_file))


def test_make_pki_helpers_issue_distinct_material():
    ca = make_ca("another CA")
    leaf = issue(ca, "leaf")
    assert tls.check_client_pair(leaf.cert, leaf.key)
    with pytest.raises(tls.PemError):
        tls.check_client_pair(leaf.cert, ca.key)
