"""Errors raised by bj_api_sync's transport layer.

Plain Python on purpose (no ``odoo`` import): the tools and their tests run without
Odoo. Models turn these into ``UserError`` only in ``action_*`` methods.
"""


class SyncError(Exception):
    """A synchronisation failure that retrying will not fix (bad config, 4xx)."""

    status_code = None
    retry_after = None

    def __init__(self, message="", status_code=None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class RetryableSyncError(SyncError):
    """A failure worth retrying later (connection error, timeout, 408/425/429/5xx).

    ``retry_after`` is the server's ``Retry-After`` in seconds, or None.
    """

    def __init__(self, message="", status_code=None, retry_after=None):
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after
