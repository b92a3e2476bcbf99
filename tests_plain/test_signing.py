"""tools/signing.py against the Standard Webhooks test vector and library."""

import base64
import time
from datetime import datetime, timezone

import pytest

from bj_api_sync.tools import signing

# published in the Standard Webhooks specification and its libraries' tests
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_vector():
    assert signing.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    # without the prefix, and with a str body
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert signing.sign(bare, VECTOR_ID, VECTOR_TS, VECTOR_BODY.decode()) == VECTOR_SIG


def test_generate_secret():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    assert signing.generate_secret() != secret


def test_signature_headers_and_rotation():
    new = signing.generate_secret()
    headers = signing.signature_headers(
        [new, VECTOR_SECRET, "", new], VECTOR_ID, VECTOR_TS, VECTOR_BODY
    )
    assert headers["webhook-id"] == VECTOR_ID
    assert headers["webhook-timestamp"] == str(VECTOR_TS)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert signatures[1] == VECTOR_SIG
    for secret in (new, VECTOR_SECRET):
        assert signing.verify(secret, headers, VECTOR_BODY, now=VECTOR_TS + 10)
    with pytest.raises(signing.SignatureError):
        signing.signature_headers([], VECTOR_ID, VECTOR_TS, VECTOR_BODY)


def test_verify_rejects():
    now = int(time.time())
    headers = signing.signature_headers([VECTOR_SECRET], "msg_1", now, b"{}")
    assert signing.verify(VECTOR_SECRET, headers, b"{}")
    with pytest.raises(signing.SignatureError, match="No matching"):
        signing.verify(VECTOR_SECRET, headers, b'{"x":1}')
    with pytest.raises(signing.SignatureError, match="No matching"):
        signing.verify(signing.generate_secret(), headers, b"{}")
    with pytest.raises(signing.SignatureError, match="too old"):
        signing.verify(VECTOR_SECRET, headers, b"{}", now=now + 301)
    with pytest.raises(signing.SignatureError, match="Missing"):
        signing.verify(VECTOR_SECRET, {"webhook-id": "x"}, b"{}")
    upper = {k.upper(): v for k, v in headers.items()}
    assert signing.verify(VECTOR_SECRET, upper, b"{}")


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!"])
def test_bad_secret(secret):
    with pytest.raises(signing.SignatureError):
        signing.sign(secret, "msg", 1, b"")


def test_against_standardwebhooks_library():
    """The reference library (test-only; .ci/run installs it or fails)."""
    import standardwebhooks  # noqa: PLC0415 - a missing library fails this test

    webhook = standardwebhooks.Webhook(VECTOR_SECRET)
    when = datetime.fromtimestamp(VECTOR_TS, tz=timezone.utc)
    assert webhook.sign(VECTOR_ID, when, VECTOR_BODY.decode()) == VECTOR_SIG
    # a receiver using the library accepts what we send, rotation included
    now = int(time.time())
    body = '{"id":7,"name":"é"}'.encode()
    headers = signing.signature_headers(
        [signing.generate_secret(), VECTOR_SECRET], "msg_abc", now, body
    )
    assert webhook.verify(body, headers) == {"id": 7, "name": "é"}
