"""Errors of preparing a request that cannot (or cannot yet) be sent.

The transport never raises for network or HTTP problems: it returns a result
classified success / retryable / permanent. These exceptions are raised while a
request is being prepared: a host the allow-list refuses or a signing secret
missing (``SyncError``), an OAuth2 token endpoint failing (``RetryableSyncError``).
Delivery code records them on the delivery and its log; ``action_*`` methods turn
them into ``UserError``. Plain Python (no ``odoo`` import).
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
