"""Errors that a retry cannot fix: the step fails at once, naming the thing and the fix.

A table step (dtaas_dagster/assets.py) spends its RetryPolicy only on other
errors (a dropped connection, a deadlock, a throttled store).
"""


class PermanentLoadError(RuntimeError):
    """A load that a retry cannot fix; the message names the thing and the fix."""


class DestinationConfigError(PermanentLoadError):
    """The destination cannot be written as configured (missing bucket, credentials, path)."""
