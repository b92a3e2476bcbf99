"""exceptions.py: the two transport errors."""

import pytest

from bj_api_sync.exceptions import RetryableSyncError, SyncError


def test_sync_error():
    error = SyncError("HTTP 400", status_code=400)
    assert str(error) == "HTTP 400"
    assert error.message == "HTTP 400"
    assert error.status_code == 400
    assert error.retry_after is None
    assert SyncError("bad config").status_code is None


def test_retryable_sync_error():
    error = RetryableSyncError("HTTP 429", status_code=429, retry_after=120.0)
    assert isinstance(error, SyncError)
    assert (error.status_code, error.retry_after) == (429, 120.0)
    assert RetryableSyncError("Connection refused").retry_after is None
    with pytest.raises(SyncError):
        raise RetryableSyncError("x")


def test_no_odoo_import():
    import sys

    import bj_api_sync.exceptions  # noqa: F401
    import bj_api_sync.tools.jsonenc  # noqa: F401
    import bj_api_sync.tools.redact  # noqa: F401
    import bj_api_sync.tools.signing  # noqa: F401
    import bj_api_sync.tools.transport  # noqa: F401

    assert "odoo" not in sys.modules
