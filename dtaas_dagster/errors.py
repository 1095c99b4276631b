"""Errors that a retry cannot fix: the step fails at once, naming the thing and the fix.

A table step (dtaas_dagster/assets.py) spends its RetryPolicy only on other
errors (a dropped connection, a deadlock, a throttled store).
"""


class PermanentLoadError(RuntimeError):
    """A load that a retry cannot fix; the message names the thing and the fix."""


class WindowUnavailable(PermanentLoadError):
    """A change window that can no longer be read as planned: its changes were purged (a retention
    gap), or its capture instance is gone. A retry of the same window cannot fix it; the CDC
    sensor plans the table again (the gap policy, or the table's current capture instance)
    instead of holding it."""


class DestinationConfigError(PermanentLoadError):
    """The destination cannot be written as configured (missing bucket, credentials, path)."""
