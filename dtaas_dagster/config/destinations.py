"""Destinations: where a task writes. A union discriminated on ``type``.

``type: s3`` is files in S3, an S3-compatible store or a local directory;
``type: snowflake`` is tables in a Snowflake schema. Everything that needs to
know the kind dispatches on the model class (or the small properties every
member has: ``asset_kind``, ``display``, ``writes_text``, ``name_templates``),
not on strings.
"""

from __future__ import annotations

import re
import string
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from dtaas_dagster.config.base import ENV_NAME_RE, ConfigError, Model, fix, problems_error
from dtaas_dagster.variables import BUILTIN_VARIABLES, NOT_IN_PATH_TEMPLATES


class S3Destination(Model):
    """Files in S3 (or an S3-compatible store), or under a local directory for local runs."""

    type: Literal["s3"] = Field(
        "s3",
        description="Destination kind: 's3' (this model) or 'snowflake'.",
        json_schema_extra=fix("use type: s3 or type: snowflake"),
    )
    url: str = Field(description="Base location: s3://bucket[/prefix], file:///abs/path or file://relative/path.")
    path_template: str = Field(
        "$sourceDatabaseName/$sourceSchemaName/$sourceTableShortName/$partitionKey",
        description=(
            "Path of each table's files under url, string.Template syntax ($name or ${name}); "
            "variables: built-ins (" + ", ".join(BUILTIN_VARIABLES) + ") or keys of `variables`."
        ),
    )
    format: Literal["parquet", "csv", "jsonl"] = Field(
        "parquet", description="File format.", json_schema_extra=fix("use parquet, csv or jsonl")
    )
    compression: Literal["none", "snappy", "gzip", "zstd"] | None = Field(
        None,
        description="Compression; unset = snappy for parquet, none for csv/jsonl. snappy is parquet-only.",
        json_schema_extra=fix("use none, snappy, gzip or zstd"),
    )
    endpoint_url: str | None = Field(None, description="S3 endpoint override (http(s) URL) for MinIO/LocalStack/moto.")
    region: str | None = Field(None, description="AWS region; unset = the default chain (AWS_REGION, profile).")
    access_key_id_env: str | None = Field(None, description="NAME of the env var with the access key id.")
    secret_access_key_env: str | None = Field(None, description="NAME of the env var with the secret access key.")
    session_token_env: str | None = Field(None, description="NAME of the env var with the session token.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        accepted = "use s3://bucket[/prefix] or file:///absolute/path (file://relative/path is relative to the cwd)"
        if value.startswith("s3://"):
            bucket = value[len("s3://") :].split("/", 1)[0]
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"bucket name {bucket!r} is not a valid S3 bucket name; {accepted}")
        elif value.startswith("file://"):
            if value in ("file://", "file:///"):
                raise ValueError(f"file:// URL has no path; {accepted}")
        else:
            raise ValueError(f"unsupported URL {value!r}; {accepted}")
        return value

    @field_validator("path_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        fix = "write it like $sourceSchemaName/$sourceTableShortName/$partitionKey"
        _check_template_syntax(value, fix)
        if value.startswith("/"):
            raise ValueError(f"must be relative to url (no leading '/'); {fix}")
        if ".." in value.split("/"):
            raise ValueError(f"must not contain '..' segments; {fix}")
        if not value.strip("/ "):
            raise ValueError(f"must not be empty; {fix}")
        used = set(string.Template(value).get_identifiers())
        if "partitionKey" not in used:
            raise ValueError(
                "must contain $partitionKey: every partition (load window) needs a directory of its own, or "
                f"loading one partition would replace another's files; {fix}"
            )
        per_run = sorted(used & set(NOT_IN_PATH_TEMPLATES))
        if per_run:
            raise ValueError(
                f"must not use ${', $'.join(per_run)}: it differs on every run, so a re-run of a partition would "
                "leave a second copy in another directory. Use $partitionKey (and $loadDate, the date of the "
                "partition) instead"
            )
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL (got {value!r}); e.g. http://127.0.0.1:9000")
        return value

    @field_validator("access_key_id_env", "secret_access_key_env", "session_token_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME_RE.match(value):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not a key")
        return value

    @model_validator(mode="after")
    def _check_compression(self) -> S3Destination:
        if self.compression == "snappy" and self.format != "parquet":
            raise problems_error(
                ("compression", f"snappy is only valid for parquet (format is {self.format}); use gzip, zstd or none")
            )
        return self

    @property
    def effective_compression(self) -> Literal["none", "snappy", "gzip", "zstd"]:
        """The compression to write: the configured one, else snappy for parquet and none otherwise."""
        if self.compression is not None:
            return self.compression
        return "snappy" if self.format == "parquet" else "none"

    @property
    def is_local(self) -> bool:
        """True for a file:// destination."""
        return self.url.startswith("file://")

    @property
    def asset_kind(self) -> str:
        """The Dagster asset kind of tables written here."""
        return "file" if self.is_local else "s3"

    @property
    def display(self) -> str:
        """Where the data goes, for descriptions and logs (no secrets)."""
        return self.url

    @property
    def writes_text(self) -> bool:
        """Whether values are written as text (CSV / JSON lines), which changes the datetime2 rules."""
        return self.format != "parquet"

    @property
    def name_templates(self) -> dict[str, str]:
        """Fields holding ``$variable`` templates, by field name (checked against the known variables)."""
        return {"path_template": self.path_template}

    @property
    def local_path(self) -> Path:
        """The directory of a file:// destination, absolute (a relative one resolves against the cwd now)."""
        if not self.is_local:
            raise ConfigError(f"destination {self.url} is not a file:// URL; it has no local path")
        return Path(self.url[len("file://") :]).absolute()

    @property
    def bucket(self) -> str:
        """The bucket of an s3:// destination."""
        return self._s3_parts()[0]

    @property
    def prefix(self) -> str:
        """The key prefix of an s3:// destination, without leading/trailing '/' ('' for none)."""
        return self._s3_parts()[1]

    def _s3_parts(self) -> tuple[str, str]:
        if self.is_local:
            raise ConfigError(f"destination {self.url} is a local file:// URL; it has no bucket or prefix")
        bucket, _, prefix = self.url[len("s3://") :].partition("/")
        return bucket, prefix.strip("/")


def _check_template_syntax(value: str, fix_hint: str) -> None:
    if not string.Template(value).is_valid():
        raise ValueError(f"invalid template syntax (a lone $ or unclosed ${{); use $$ for a literal $; {fix_hint}")


_SNOWFLAKE_TYPED_ARGS = (
    "account",
    "user",
    "password",
    "private_key",
    "private_key_file",
    "private_key_path",
    "private_key_file_pwd",
    "private_key_password",
    "role",
    "warehouse",
    "database",
    "schema",
    "host",
    "port",
    "protocol",
    "paramstyle",
    "autocommit",
    "token",
)
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,252}$")


# `schema` is the word Snowflake users write; pydantic warns that it shadows the
# deprecated BaseModel.schema() method, which nothing here calls.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r'Field name "schema"', category=UserWarning)

    class SnowflakeDestination(Model):
        """Tables in Snowflake: staged Parquet, COPY INTO, then one transaction (docs/snowflake.md)."""

        type: Literal["snowflake"] = Field(
            description="Destination kind: 'snowflake' (this model) or 's3'.",
            json_schema_extra=fix("use type: snowflake"),
        )
        account: str = Field(
            description="Account identifier, e.g. myorg-myaccount or xy12345.eu-west-1.",
            json_schema_extra=fix("write the account identifier, e.g. myorg-myaccount"),
        )
        user: str = Field(min_length=1, description="Login name of the Snowflake user.")
        password_env: str | None = Field(
            None, description=("NAME of the environment variable holding the password (password authentication).")
        )
        private_key_file: str | None = Field(
            None, description=("Path of a PEM private key file (key-pair authentication).")
        )
        private_key_env: str | None = Field(
            None,
            description=(
                "NAME of the environment variable holding the PEM private key, or its base64 (key-pair authentication)."
            ),
        )
        private_key_passphrase_env: str | None = Field(
            None, description=("NAME of the environment variable holding the passphrase of an encrypted private key.")
        )
        role: str | None = Field(None, description="Role to use; unset = the user's default role.")
        warehouse: str | None = Field(
            None, description="Warehouse that runs COPY and MERGE; unset = the user's default."
        )
        database: str = Field(
            description=("Target database: a name or a $variable template (e.g. RAW or RAW_$ETLCustomerId).")
        )
        schema: str = Field(  # type: ignore[assignment]  # shadows BaseModel.schema(), see above
            description="Target schema: a name or a $variable template (e.g. $sourceSchemaName)."
        )
        table: str = Field(
            "$sourceTableShortName",
            description=(
                "Target table name: a $variable template; default $sourceTableShortName (the table's name without "
                "its schema)."
            ),
        )
        identifier_case: Literal["upper", "preserve"] = Field(
            "upper",
            description=(
                "upper: names are upper-cased, as unquoted identifiers resolve in Snowflake; "
                "preserve: exact case, quoted."
            ),
            json_schema_extra=fix("use upper or preserve"),
        )
        stage: str = Field(
            "_DTAAS_STAGE",
            min_length=1,
            max_length=255,
            description=("Internal stage created in each target schema for the Parquet files."),
        )
        state_table: str = Field(
            "_DTAAS_STATE",
            min_length=1,
            max_length=255,
            description=(
                "Control table created in each target schema: one row per target table (last snapshot, applied LSN)."
            ),
        )
        delete_mode: Literal["hard", "soft"] = Field(
            "hard",
            description=("CDC deletes: hard removes the row; soft sets _DTAAS_DELETED and _DTAAS_DELETED_AT."),
            json_schema_extra=fix("use hard or soft"),
        )
        cdc_apply: Literal["merge", "delete_insert"] = Field(
            "merge",
            description=(
                "How a change window is applied, in one transaction with the control row: merge (one MERGE) or "
                "delete_insert (DELETE the changed keys, INSERT their newest rows; same result)."
            ),
            json_schema_extra=fix("use merge or delete_insert"),
        )
        host: str | None = Field(
            None,
            description=(
                "Host to connect to instead of <account>.snowflakecomputing.com (private link, a test server)."
            ),
        )
        port: int | None = Field(
            None,
            ge=1,
            le=65535,
            description="Port for host; unset = 443.",
            json_schema_extra=fix("use the server's port, e.g. 443"),
        )
        protocol: Literal["https", "http"] | None = Field(
            None,
            description=("https (default) or http (only for a local test server such as fakesnow)."),
            json_schema_extra=fix("use https or http"),
        )
        connection_args: dict[str, str | int | float | bool] = Field(
            default_factory=dict,
            description=(
                "Extra keyword arguments for snowflake.connector.connect, e.g. {login_timeout: 30}; "
                "not the ones with typed fields, and never secrets."
            ),
        )

        @field_validator("account")
        @classmethod
        def _check_account(cls, value: str) -> str:
            if not _ACCOUNT_RE.match(value):
                raise ValueError(
                    "must be an account identifier (letters, digits, '-', '_', '.'), e.g. myorg-myaccount; not a URL"
                )
            return value

        @field_validator("host")
        @classmethod
        def _check_host(cls, value: str | None) -> str | None:
            if value is not None and not _HOST_RE.match(value):
                raise ValueError(
                    f"must be a host name or IP address without scheme or port (got {value!r}); "
                    "put the port in port and http in protocol"
                )
            return value

        @field_validator("password_env", "private_key_env", "private_key_passphrase_env")
        @classmethod
        def _check_env_name(cls, value: str | None) -> str | None:
            if value is not None and not ENV_NAME_RE.match(value):
                raise ValueError("must be the NAME of an environment variable (letters, digits, _), not a secret")
            return value

        @field_validator("database", "schema", "table")
        @classmethod
        def _check_name_template(cls, value: str) -> str:
            _check_template_syntax(value, "write a name like RAW, or a template like $sourceSchemaName")
            if not value.strip():
                raise ValueError("must not be empty; write a name like RAW or a template like $sourceTableShortName")
            return value

        @field_validator("connection_args")
        @classmethod
        def _check_connection_args(cls, value: dict[str, Any]) -> dict[str, Any]:
            bad = [
                (
                    key,
                    "is set by a typed field or is a secret; use the destination's own fields "
                    "(account, user, password_env, private_key_*, role, warehouse, host, port, protocol)",
                )
                for key in value
                if key.lower() in _SNOWFLAKE_TYPED_ARGS
            ]
            if bad:
                raise problems_error(*bad)
            return value

        @model_validator(mode="after")
        def _check_auth(self) -> SnowflakeDestination:
            methods = [n for n in ("password_env", "private_key_file", "private_key_env") if getattr(self, n)]
            if len(methods) != 1:
                found = ", ".join(methods) if methods else "none"
                raise problems_error(
                    (
                        "password_env",
                        (
                            f"give exactly one of password_env, private_key_file, private_key_env (got {found}); "
                            "e.g. password_env: SNOWFLAKE_PASSWORD"
                        ),
                    )
                )
            if self.private_key_passphrase_env and self.password_env:
                raise problems_error(
                    (
                        "private_key_passphrase_env",
                        ("is for an encrypted private key; remove it, or use private_key_file / private_key_env"),
                    )
                )
            return self

        @property
        def asset_kind(self) -> str:
            return "snowflake"

        @property
        def display(self) -> str:
            return f"snowflake://{self.account}/{self.database}/{self.schema}/{self.table}"

        @property
        def writes_text(self) -> bool:
            return False

        @property
        def name_templates(self) -> dict[str, str]:
            return {"database": self.database, "schema": self.schema, "table": self.table}


def _destination_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "s3"))
    return str(getattr(value, "type", "s3"))


Destination = Annotated[
    Annotated[S3Destination, Tag("s3")] | Annotated[SnowflakeDestination, Tag("snowflake")],
    Discriminator(
        _destination_type,
        custom_error_type="destination_type",
        custom_error_message="unknown destination type; use type: s3 or type: snowflake",
    ),
]
