"""exceptions.py: the two transport errors."""

import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

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


def test_no_odoo_import():
    """The tools import without Odoo (checked in a fresh interpreter: pytest-odoo,
    when installed, imports Odoo into this one)."""
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("bj_api_sync")
        package.__path__ = [{str(REPO_ROOT)!r}]
        sys.modules["bj_api_sync"] = package
        import bj_api_sync.exceptions
        import bj_api_sync.tools
        from bj_api_sync.tools import jsonenc, redact, sandbox, signing, transport
        sandbox.check_source  # its checks need no Odoo until code is compiled
        assert "odoo" not in sys.modules, "odoo imported"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
