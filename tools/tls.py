"""Mutual TLS material of bj_api_sync: PEM checks and private PEM files.

No ``odoo`` import. The models keep a configuration's client certificate, its
private key and an optional CA bundle as PEM text; ``requests`` wants file
paths. This module

- normalizes PEM text (:func:`normalize_pem`: a PEM pasted into a one-line
  password input loses its line breaks) and checks it with ``cryptography``
  (:func:`load_certificates`, :func:`load_private_key`, :func:`check_client_pair`),
  raising :class:`PemError` with a message meant for the user;
- describes certificates (:func:`certificate_info`, also for the peer
  certificate of :mod:`.probe`);
- writes the PEM files (:class:`PemFileStore`): mode 0600 in a 0700 directory
  owned by this process's user, named by the owner (a configuration id), the
  kind and a hash of the content, written atomically, so an unchanged PEM is
  never rewritten and a changed one replaces the old file.
"""

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

#: A PEM block: ``-----BEGIN <label>-----`` base64 ``-----END <label>-----``.
_PEM_BLOCK_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL
)
_CERT_LABELS = ("CERTIFICATE",)
_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
#: Largest PEM text accepted (a long CA bundle is ~250 KB).
MAX_PEM_SIZE = 1024 * 1024
#: The kinds of PEM a store writes, and their file names' middle part.
KINDS = ("cert", "key", "ca")


class PemError(ValueError):
    """PEM text that cannot be used; the message says why, never the content."""


@dataclass(frozen=True)
class CertInfo:
    """What a user wants to know of a certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    serial: int

    def days_left(self, now=None):
        """Whole days until ``not_after`` (negative once expired)."""
        now = now or datetime.now(timezone.utc)
        return (self.not_after - now).days

    def is_expired(self, now=None):
        return (now or datetime.now(timezone.utc)) > self.not_after


# ----------------------------------------------------------------------------
# PEM text
# ----------------------------------------------------------------------------


def pem_blocks(text):
    """``[(label, der bytes)]`` of the PEM blocks of ``text``, in order.

    Whitespace inside a block is ignored (line breaks lost or turned into
    spaces by a one-line input), text around the blocks too (``Bag
    Attributes`` lines of ``openssl pkcs12``).

    :raises PemError: when ``text`` holds no block, a block's base64 is broken,
        or a block has headers (a legacy encrypted key)
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = str(text or "")
    if len(text) > MAX_PEM_SIZE:
        raise PemError(f"it is larger than {MAX_PEM_SIZE // 1024} KB")
    blocks = []
    for match in _PEM_BLOCK_RE.finditer(text):
        label, body = match.group(1).strip(), match.group(2)
        if ":" in body:
            raise PemError(
                f"the {label} block has headers (an encrypted key?): give the "
                "key unencrypted, without a passphrase"
            )
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PemError(f"the {label} block is not valid base64") from None
        if not der:
            raise PemError(f"the {label} block is empty")
        blocks.append((label, der))
    if not blocks:
        raise PemError(
            "no PEM block found (text between -----BEGIN ...----- and "
            "-----END ...----- lines)"
        )
    return blocks


def _wrap(label, der):
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def normalize_pem(text):
    """``text``'s PEM blocks only, in the canonical form (64-character lines,
    one final newline).

    :raises PemError: see :func:`pem_blocks`
    """
    return "\n".join(_wrap(label, der) for label, der in pem_blocks(text)) + "\n"


def load_certificates(text):
    """The certificates of ``text`` (one or more CERTIFICATE blocks).

    :raises PemError: no certificate, one that does not parse, or a private
        key mixed in (keys belong in their own field)
    """
    certificates = []
    for label, der in pem_blocks(text):
        if label in _KEY_LABELS or label.endswith("PRIVATE KEY"):
            raise PemError(
                "it contains a private key: certificates only (the key has its "
                "own field)"
            )
        if label not in _CERT_LABELS:
            raise PemError(f"unexpected {label} block: certificates only")
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError as error:
            raise PemError(f"a certificate does not parse ({error})") from None
    return certificates


def load_private_key(text):
    """The one private key of ``text`` (PKCS#8, PKCS#1 RSA or SEC1 EC).

    :raises PemError: no key, several, an encrypted one, or one that does not
        parse
    """
    blocks = pem_blocks(text)
    if any(label == "ENCRYPTED PRIVATE KEY" for label, _der in blocks):
        raise PemError(
            "the private key is encrypted: give it unencrypted, without a passphrase"
        )
    keys = [(label, der) for label, der in blocks if label in _KEY_LABELS]
    others = [label for label, _der in blocks if label not in _KEY_LABELS]
    if others:
        raise PemError(f"unexpected {others[0]} block: the private key only")
    if len(keys) != 1:
        raise PemError(f"one private key expected, found {len(keys)}")
    label, der = keys[0]
    try:
        return serialization.load_pem_private_key(
            _wrap(label, der).encode(), password=None
        )
    except TypeError:
        raise PemError(
            "the private key is encrypted: give it unencrypted, without a passphrase"
        ) from None
    except Exception as error:  # noqa: BLE001
        # ValueError, or UnsupportedAlgorithm for a key type OpenSSL lacks
        raise PemError(f"the private key does not parse ({error})") from None


def _public_der(key):
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_client_pair(cert_text, key_text):
    """Check that ``key_text`` is the private key of ``cert_text``'s first
    certificate (the others are its chain); return that certificate.

    :raises PemError: when either does not parse or they do not match
    """
    certificates = load_certificates(cert_text)
    key = load_private_key(key_text)
    if _public_der(certificates[0].public_key()) != _public_der(key.public_key()):
        raise PemError(
            "the private key does not match the certificate "
            f"({_name(certificates[0].subject)})"
        )
    return certificates[0]


def _name(name):
    return name.rfc4514_string() or "-"


def _utc(cert, attribute):
    value = getattr(cert, f"{attribute}_utc", None)  # cryptography >= 42
    if value is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = getattr(cert, attribute).replace(tzinfo=timezone.utc)
    return value


def certificate_info(cert):
    """:class:`CertInfo` of a certificate (a ``cryptography`` object, DER bytes
    or PEM text)."""
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    elif isinstance(cert, str):
        cert = load_certificates(cert)[0]
    return CertInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        not_before=_utc(cert, "not_valid_before"),
        not_after=_utc(cert, "not_valid_after"),
        serial=cert.serial_number,
    )


def fingerprint(*texts):
    """Short hash of several texts (None counts as empty): tells TLS settings
    apart without showing them."""
    digest = hashlib.sha256()
    for text in texts:
        data = (text or "").encode() if not isinstance(text, bytes) else text
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:32]


# ----------------------------------------------------------------------------
# Private PEM files
# ----------------------------------------------------------------------------


def private_dir(path):
    """Create ``path`` (and its parents) as needed; make sure it is a real
    directory owned by this process's user, readable by nobody else (0700).

    :raises OSError: when it is a symlink, not a directory or somebody else's
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a directory")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise OSError(f"{path} belongs to another user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _safe_name(value):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(value))


class PemFileStore:
    """PEM files in a private directory, one per owner and kind.

    File names are ``<owner>-<kind>-<sha256 of the content>.pem``: the same
    content is never rewritten, two owners never share a file (removing one's
    stale files never touches the other's), and nothing of the content shows
    in the name beyond its hash.
    """

    def __init__(self, root):
        self.root = root

    def _prefix(self, owner, kind):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        return f"{_safe_name(owner)}-{kind}-"

    def path_for(self, owner, kind, text):
        """Where the PEM ``text`` of ``owner`` and ``kind`` lives (not written)."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        return os.path.join(self.root, f"{self._prefix(owner, kind)}{digest}.pem")

    def save(self, owner, kind, text):
        """Write ``text`` (once) with mode 0600; remove ``owner``'s older files
        of that kind; return the path."""
        private_dir(self.root)
        path = self.path_for(owner, kind, text)
        data = text.encode()
        if not self._holds(path, data):
            # mkstemp: a new file, mode 0600, that no other thread or process
            # opens; renamed over the final name once complete
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    os.fchmod(handle.fileno(), 0o600)  # whatever the umask
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self.purge(owner, kind, keep=(path,))
        return path

    @staticmethod
    def _holds(path, data):
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o600:
                return False
            with open(path, "rb") as handle:
                return handle.read() == data
        except OSError:
            return False

    def purge(self, owner, kind=None, keep=()):
        """Remove ``owner``'s files (of ``kind``, or all kinds) but ``keep``."""
        kinds = [kind] if kind else KINDS
        prefixes = tuple(self._prefix(owner, k) for k in kinds)
        keep = {os.path.basename(p) for p in keep}
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in names:
            if name.startswith(prefixes) and name not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.root, name))
