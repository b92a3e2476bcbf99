"""tools/signing.verify as the inbound endpoints use it: several secrets during a
rotation, the 5-minute window, unusable secrets."""

import time

import pytest

from bj_api_sync.tools import signing

BODY = b'{"name": "Ada"}'


def signed(secrets, msg_id="msg_1", when=None, body=BODY):
    when = int(time.time()) if when is None else when
    return signing.signature_headers(secrets, msg_id, when, body)


def test_either_secret_of_a_rotation():
    old, new = signing.generate_secret(), signing.generate_secret()
    for sender in (old, new):
        headers = signed([sender])
        assert signing.verify([new, old], headers, BODY)
    # a sender signing with both secrets is accepted by a receiver knowing one
    assert signing.verify([new], signed([old, new]), BODY)
    with pytest.raises(signing.SignatureError, match="No matching"):
        signing.verify([new], signed([old]), BODY)


def test_window_of_five_minutes():
    secret = signing.generate_secret()
    now = int(time.time())
    assert signing.verify(secret, signed([secret], when=now - 299), BODY, now=now)
    for when in (now - 301, now + 301):
        with pytest.raises(signing.SignatureError, match="too old or too new"):
            signing.verify(secret, signed([secret], when=when), BODY, now=now)


def test_unusable_secrets_are_skipped():
    secret = signing.generate_secret()
    headers = signed([secret])
    assert signing.verify(["", "whsec_not base64!", secret], headers, BODY)
    with pytest.raises(signing.SignatureError, match="No usable"):
        signing.verify(["", None], headers, BODY)
    with pytest.raises(signing.SignatureError, match="No usable"):
        signing.verify([], headers, BODY)


def test_tampering():
    secret = signing.generate_secret()
    headers = signed([secret], msg_id="msg_a")
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, dict(headers, **{"webhook-id": "msg_b"}), BODY)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, headers, BODY + b" ")
    bad_version = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(signing.SignatureError):
        signing.verify(
            secret, dict(headers, **{"webhook-signature": bad_version}), BODY
        )
    with pytest.raises(signing.SignatureError, match="Invalid webhook-timestamp"):
        signing.verify(secret, dict(headers, **{"webhook-timestamp": "soon"}), BODY)
    # a non-ASCII signature value is refused, not an error
    weird = dict(headers, **{"webhook-signature": "v1,é"})
    with pytest.raises(signing.SignatureError, match="No matching"):
        signing.verify(secret, weird, BODY)
