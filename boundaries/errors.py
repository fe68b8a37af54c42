"""How a boundary says what went wrong, so that tasks know whether to retry.

A :class:`PermanentError` (missing observation, no permission, bad URI) fails
at once: running again cannot help.  A :class:`TransientError` (server error,
timeout, dropped connection, checksum mismatch) is retried with back-off.
"""


class BoundaryError(Exception):
    """Something at the edge of the system failed."""


class PermanentError(BoundaryError):
    """Retrying cannot help; the message says what to check."""


class NotFound(PermanentError):
    """The observation or node does not exist."""


class PermissionDenied(PermanentError):
    """The credential is missing, expired or not allowed."""


class TransientError(BoundaryError):
    """Worth retrying: a server error, a timeout, a dropped connection."""


class ChecksumMismatch(TransientError):
    """The bytes received are not the bytes the server announced."""
