"""SQL Server sources: where a task reads from."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from dtaas_dagster.config.base import ENV_NAME_RE, ConfigError, Model, fix, problems_error

_RESERVED_ODBC_KEYS = ("driver", "server", "uid", "pwd", "database", "encrypt", "trustservercertificate")
_ODBC_FORBIDDEN_CHARS = ";{}="


class SqlServerSource(Model):
    """A SQL Server database the tasks read from."""

    host: str = Field(description="Host name or IP address of the SQL Server.", min_length=1)
    port: int = Field(
        1433,
        ge=1,
        le=65535,
        description="TCP port of the SQL Server.",
        json_schema_extra=fix("use the server's TCP port, usually 1433"),
    )
    database: str = Field(description="Database to read from.", min_length=1)
    user: str = Field(description="SQL login name.", min_length=1)
    password_env: str = Field(
        description="NAME of the environment variable that holds the password (never the password itself).",
        json_schema_extra=fix("name an environment variable, e.g. DTAAS_SALES_PASSWORD"),
    )
    driver: str = Field(
        "auto",
        min_length=1,
        description=(
            "ODBC driver: 'auto' (Driver 18 from mssql-python-odbc, else FreeTDS), 'msodbc18', "
            "'freetds', or a driver name registered in odbcinst.ini / a path to the driver library."
        ),
    )
    encrypt: Literal["yes", "no", "optional", "strict"] = Field(
        "yes", description="ODBC Encrypt setting (TLS).", json_schema_extra=fix("use yes, no, optional or strict")
    )
    trust_server_certificate: bool = Field(False, description="Accept a server certificate without verifying it.")
    login_timeout_seconds: int = Field(
        15,
        ge=1,
        le=300,
        description="Seconds to wait for a connection.",
        json_schema_extra=fix("use 15 unless the network is slow"),
    )
    query_timeout_seconds: int = Field(
        0,
        ge=0,
        description="Seconds before a query is cancelled; 0 = no limit.",
        json_schema_extra=fix("use 0 for no limit"),
    )
    odbc_extra: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra ODBC connection-string attributes, e.g. {ApplicationIntent: ReadOnly}. Not for the "
            "attributes that have typed fields (DRIVER, SERVER, UID, PWD, DATABASE, Encrypt, TrustServerCertificate)."
        ),
    )
    pool: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]{1,100}$",
        description=(
            "Name of the Dagster concurrency pool this server's table reads share. Unset: sqlserver_<host> (lower "
            "case, other characters as _), without the port, so a restart on another port keeps the pool and its "
            "limit. Give sources on one server the same pool."
        ),
        json_schema_extra=fix("use letters, digits and _, e.g. sqlserver_erp"),
    )
    max_concurrent_reads: int = Field(
        4,
        ge=1,
        le=64,
        description=("Dagster concurrency pool limit for this server: table reads running at once across all tasks."),
        json_schema_extra=fix("set it to what the server can take, e.g. 4"),
    )

    _config_path: str = PrivateAttr(default="source")

    @field_validator("encrypt", mode="before")
    @classmethod
    def _yaml_bool_to_word(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `encrypt: yes` as True.
        return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("odbc_extra", mode="before")
    @classmethod
    def _odbc_values_as_text(cls, value: Any) -> Any:
        # `ConnectRetryCount: 3` and `MultiSubnetFailover: yes` arrive as int/bool from YAML.
        if not isinstance(value, dict):
            return value
        as_text = {True: "Yes", False: "No"}
        return {
            k: as_text[v] if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
            for k, v in value.items()
        }

    @field_validator("password_env")
    @classmethod
    def _check_password_env(cls, value: str) -> str:
        if not ENV_NAME_RE.match(value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _; not starting with a digit); "
                "put the password in an environment variable and name it here"
            )
        return value

    @field_validator("odbc_extra")
    @classmethod
    def _check_odbc_extra(cls, value: dict[str, str]) -> dict[str, str]:
        found = []
        for key, item in value.items():
            if key.lower() in _RESERVED_ODBC_KEYS:
                found.append(
                    (
                        key,
                        "is set by the typed source fields (driver, host, port, user, password_env, "
                        "database, encrypt, trust_server_certificate); remove it from odbc_extra",
                    )
                )
            elif any(c in key for c in _ODBC_FORBIDDEN_CHARS) or any(c in item for c in _ODBC_FORBIDDEN_CHARS):
                found.append((key, "key and value must not contain ; { } or =; remove those characters"))
        if found:
            raise problems_error(*found)
        return value

    def password(self) -> str:
        """The password, read from the environment now (never stored in the model)."""
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"environment variable {self.password_env} ({self._config_path}.password_env) is not set; "
                "export it before running"
            )
        return value
