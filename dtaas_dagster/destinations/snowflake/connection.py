"""Opening a Snowflake connection through ``dagster_snowflake.SnowflakeResource``, secrets from the environment.

``import dagster_snowflake`` costs about 7 s and 270 MB per process, so it
happens here, inside :func:`open_connection`, which only Snowflake steps call;
loading the definitions never imports it.

Secrets are read from the environment variables the config NAMES, at connect
time, and handed to the resource object only; they are never logged, put in
metadata or run config, or echoed in errors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dtaas_dagster.destinations.snowflake.session import translate
from dtaas_dagster.errors import PermanentLoadError


class SnowflakeConfigError(PermanentLoadError):
    """The connection settings cannot work as given (a missing variable, an unreadable key)."""


@dataclass(frozen=True)
class ConnectionSettings:
    """What to connect with: names of secrets, never their values."""

    account: str
    user: str
    password_env: str | None = None
    private_key_file: str | None = None
    private_key_env: str | None = None
    private_key_passphrase_env: str | None = None
    role: str | None = None
    warehouse: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    connection_args: Mapping[str, Any] = field(default_factory=dict)


def _secret(env_name: str, field_name: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise SnowflakeConfigError(
            f"environment variable {env_name} (the destination's {field_name}) is not set; export it before running"
        )
    return value


def resource_arguments(settings: ConnectionSettings) -> dict[str, Any]:
    """Keyword arguments of ``SnowflakeResource`` for these settings (secrets read now)."""
    args: dict[str, Any] = {
        "account": settings.account,
        "user": settings.user,
        "paramstyle": "qmark",
        "autocommit": True,  # transactions are explicit: BEGIN ... COMMIT
        "timezone": "UTC",
    }
    if settings.password_env:
        args["password"] = _secret(settings.password_env, "password_env")
    if settings.private_key_env:
        args["private_key"] = _secret(settings.private_key_env, "private_key_env")
    if settings.private_key_file:
        if not os.path.isfile(settings.private_key_file):
            raise SnowflakeConfigError(f"private_key_file {settings.private_key_file} does not exist or is not a file")
        args["private_key_path"] = settings.private_key_file
    if settings.private_key_passphrase_env:
        args["private_key_password"] = _secret(settings.private_key_passphrase_env, "private_key_passphrase_env")
    for name in ("role", "warehouse"):
        if getattr(settings, name):
            args[name] = getattr(settings, name)
    extra: dict[str, Any] = {
        k: v
        for k, v in (("host", settings.host), ("port", settings.port), ("protocol", settings.protocol))
        if v is not None
    }
    extra.update(settings.connection_args)
    if extra:
        args["additional_snowflake_connection_args"] = extra
    return args


@contextlib.contextmanager
def open_connection(settings: ConnectionSettings) -> Iterator[Any]:
    """A connector connection (qmark, autocommit, UTC), closed afterwards."""
    from dagster_snowflake import SnowflakeResource  # lazily: see the module docstring

    arguments = resource_arguments(settings)
    what = f"connecting to Snowflake account {settings.account} as {settings.user}"
    stack = contextlib.ExitStack()
    try:
        connection = stack.enter_context(SnowflakeResource(**arguments).get_connection())
    except ValueError as exc:
        if "private key" in str(exc).lower():
            raise SnowflakeConfigError(
                f"{what}: the private key could not be read ({exc}); check the key and private_key_passphrase_env"
            ) from None
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("snowflake.connector"):
            raise translate(exc, what=what) from exc
        raise
    with stack:
        try:
            yield connection
        finally:
            connection.close()
