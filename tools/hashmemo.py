"""Remember which (secret, stored hash) pairs verified, so a slow password hash
runs once per secret and process, not once per request.

No ``odoo`` import. Odoo stores API keys as PBKDF2 hashes (thousands of rounds,
on purpose): checking one costs milliseconds of CPU, paid again by every request
that presents the key. Whether a secret matches a stored hash never changes, so
the answer can be remembered; everything else about the key (that its row still
exists, is not expired, belongs to an active user) is still read from the
database for every request by the caller.

What is kept is an HMAC-SHA256 of the pair under a key made at random for this
process, never the secret: the memory of a process tells nothing about the
secrets it has seen. Only successes are kept (a wrong secret costs the full
hash every time), in a bounded least-recently-used set.
"""

import hashlib
import hmac
import os
import threading
from collections import OrderedDict

DEFAULT_SIZE = 1024


class VerifiedPairs:
    """A bounded set of (secret, stored hash) pairs known to verify.

    :param size: how many pairs are kept (the least recently used go first)
    """

    def __init__(self, size=DEFAULT_SIZE):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._key = os.urandom(32)
        self._seen = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, secret, stored_hash):
        message = b"\0".join(
            part.encode() if isinstance(part, str) else bytes(part)
            for part in (secret, stored_hash)
        )
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, secret, stored_hash, check):
        """Whether ``secret`` matches ``stored_hash``: remembered, or asked of
        ``check(secret, stored_hash)`` (the slow hash) and remembered when it
        says yes."""
        if not secret or not stored_hash:
            return False
        digest = self._digest(secret, stored_hash)
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
        if not check(secret, stored_hash):
            return False
        with self._lock:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
        return True

    def forget(self):
        """Drop every remembered pair."""
        with self._lock:
            self._seen.clear()

    def __len__(self):
        return len(self._seen)
