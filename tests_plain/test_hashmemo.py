"""tools/hashmemo.py: the slow check runs once per good pair, never for a
remembered one, always for a bad one; nothing of the secret is kept."""

import hashlib
import threading

import pytest

from bj_api_sync.tools import hashmemo


class Counting:
    """A check that compares with a pbkdf2 hash of the secret and counts calls."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def hash(secret):
        return hashlib.pbkdf2_hmac("sha256", secret.encode(), b"salt", 1000).hex()

    def __call__(self, secret, stored):
        self.calls += 1
        return self.hash(secret) == stored


def test_good_pair_checked_once():
    memo, check = hashmemo.VerifiedPairs(), Counting()
    stored = check.hash("key-1")
    for _i in range(5):
        assert memo.verify("key-1", stored, check)
    assert check.calls == 1
    assert len(memo) == 1


def test_bad_secret_checked_every_time_and_never_kept():
    memo, check = hashmemo.VerifiedPairs(), Counting()
    stored = check.hash("key-1")
    for _i in range(3):
        assert not memo.verify("wrong", stored, check)
    assert check.calls == 3
    assert len(memo) == 0
    # a remembered good pair does not make another secret pass
    assert memo.verify("key-1", stored, check)
    assert not memo.verify("key-1x", stored, check)
    assert not memo.verify("key-", stored, check)


def test_pair_not_secret_alone():
    """The same secret against another stored hash (a key deleted and made
    again, another row with the same index) is checked again."""
    memo, check = hashmemo.VerifiedPairs(), Counting()
    assert memo.verify("key-1", check.hash("key-1"), check)
    assert not memo.verify("key-1", check.hash("key-2"), check)
    assert check.calls == 2


@pytest.mark.parametrize(
    "secret, stored", [("", "h"), (None, "h"), ("s", ""), ("s", None)]
)
def test_empty_never_verifies(secret, stored):
    memo = hashmemo.VerifiedPairs()
    assert not memo.verify(secret, stored, lambda *_a: True)
    assert len(memo) == 0


def test_bounded_least_recently_used():
    memo, check = hashmemo.VerifiedPairs(size=2), Counting()
    hashes = {name: check.hash(name) for name in ("a", "b", "c")}
    memo.verify("a", hashes["a"], check)
    memo.verify("b", hashes["b"], check)
    memo.verify("a", hashes["a"], check)  # a is now the most recent
    memo.verify("c", hashes["c"], check)  # b goes
    assert len(memo) == 2 and check.calls == 3
    memo.verify("a", hashes["a"], check)
    assert check.calls == 3
    memo.verify("b", hashes["b"], check)
    assert check.calls == 4
    with pytest.raises(ValueError):
        hashmemo.VerifiedPairs(size=0)


def test_forget_and_no_secret_in_memory():
    memo, check = hashmemo.VerifiedPairs(), Counting()
    memo.verify("super-secret-key", check.hash("super-secret-key"), check)
    kept = b"".join(memo._seen)
    assert b"super-secret-key" not in kept
    # another process (another random key) keeps another digest
    other = hashmemo.VerifiedPairs()
    other.verify("super-secret-key", check.hash("super-secret-key"), check)
    assert set(other._seen) != set(memo._seen)
    memo.forget()
    assert len(memo) == 0
    memo.verify("super-secret-key", check.hash("super-secret-key"), check)
    assert check.calls == 3


def test_threads():
    memo, check = hashmemo.VerifiedPairs(size=50), Counting()
    names = [f"k{i}" for i in range(100)]
    hashes = {name: check.hash(name) for name in names}
    failures = []

    def work(offset):
        for name in names[offset:] + names[:offset]:
            if not memo.verify(name, hashes[name], check):
                failures.append(name)
            if memo.verify(name, hashes[name] + "0", check):
                failures.append(name + " (bad)")

    threads = [threading.Thread(target=work, args=(i * 10,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(memo) <= 50
