"""Destinations: where a task writes. A union discriminated on ``type``.

``type: s3`` is files in S3, an S3-compatible store or a local directory.
New kinds (``snowflake``) join :data:`Destination`; everything that needs to
know the kind dispatches on the model class, not on strings.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from dtaas_dagster.config.base import ENV_NAME_RE, ConfigError, Model, fix, problems_error
from dtaas_dagster.variables import BUILTIN_VARIABLES, NOT_IN_PATH_TEMPLATES


class S3Destination(Model):
    """Files in S3 (or an S3-compatible store), or under a local directory for local runs."""

    type: Literal["s3"] = Field("s3", description="Destination kind. Only 's3' exists today ('snowflake' is planned).",
                                json_schema_extra=fix("use type: s3"))
    url: str = Field(description="Base location: s3://bucket[/prefix], file:///abs/path or file://relative/path.")
    path_template: str = Field(
        "$sourceDatabaseName/$sourceSchemaName/$sourceTableShortName/$partitionKey",
        description=("Path of each table's files under url, string.Template syntax ($name or ${name}); "
                     "variables: built-ins (" + ", ".join(BUILTIN_VARIABLES) + ") or keys of `variables`."))
    format: Literal["parquet", "csv", "jsonl"] = Field(
        "parquet", description="File format.", json_schema_extra=fix("use parquet, csv or jsonl"))
    compression: Literal["none", "snappy", "gzip", "zstd"] | None = Field(
        None, description="Compression; unset = snappy for parquet, none for csv/jsonl. snappy is parquet-only.",
        json_schema_extra=fix("use none, snappy, gzip or zstd"))
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
            bucket = value[len("s3://"):].split("/", 1)[0]
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
        if not string.Template(value).is_valid():
            raise ValueError(f"invalid template syntax (a lone $ or unclosed ${{); use $$ for a literal $; {fix}")
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
                f"loading one partition would replace another's files; {fix}")
        per_run = sorted(used & set(NOT_IN_PATH_TEMPLATES))
        if per_run:
            raise ValueError(
                f"must not use ${', $'.join(per_run)}: it differs on every run, so a re-run of a partition would "
                "leave a second copy in another directory. Use $partitionKey (and $loadDate, the date of the "
                "partition) instead")
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
            raise problems_error(("compression", f"snappy is only valid for parquet (format is {self.format}); "
                                            "use gzip, zstd or none"))
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
    def local_path(self) -> Path:
        """The directory of a file:// destination, absolute (a relative one resolves against the cwd now)."""
        if not self.is_local:
            raise ConfigError(f"destination {self.url} is not a file:// URL; it has no local path")
        return Path(self.url[len("file://"):]).absolute()

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
        bucket, _, prefix = self.url[len("s3://"):].partition("/")
        return bucket, prefix.strip("/")




# One member today; a second (SnowflakeDestination) turns this into a union
# discriminated on `type` (Annotated[Union[...], Field(discriminator="type")]).
Destination = S3Destination
