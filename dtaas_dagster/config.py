"""The configuration layer: ``dtaas.yaml`` -> frozen Pydantic models.

``load_config()`` reads YAML, interpolates ``${VAR}`` / ``${VAR:-default}`` from
the environment in string values, validates, and turns every failure into one
:class:`ConfigError` whose message has one line per problem, each naming the
file, the field path (``tasks.demo.parallel_tables``), what is wrong and the fix.

Design decisions (why it looks like this):

- Range checks use ``Field(ge=..., le=...)`` and each field may carry a ``fix``
  hint in ``json_schema_extra``; :func:`_format_error` walks the model types
  along pydantic's error ``loc`` to find the field, its bounds and its hint, so
  messages stay uniform without a custom validator per field.
- Unknown keys are errors (``extra="forbid"``) with a difflib suggestion: a typo
  must not silently fall back to a default.
- Cross-checks (task -> source/destination, path template variables) live in
  ``DtaasConfig``; they run only once every field is valid, so a config with
  field errors reports those first.
- Values of invalid inputs are echoed only for short scalars, never for
  ``odbc_extra`` values or unknown keys (a pasted ``password: ...``), and the
  pydantic error is not chained (its text would repeat the inputs).
- ``path_template`` is not env-interpolated: it has its own ``$name``
  variables. Put environment values into ``variables:`` and use them there.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import types
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

CONFIG_ENV = "DTAAS_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "dtaas.yaml"
DOCS = "docs/configuration.md"

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BUILTIN_VARIABLES = (
    "sourceDatabaseName",
    "sourceSchemaName",
    "sourceTableName",
    "partitionKey",
    "loadDate",
    "runId",
    "taskName",
)
_RESERVED_ODBC_KEYS = ("driver", "server", "uid", "pwd", "database", "encrypt", "trustservercertificate")
_ODBC_FORBIDDEN_CHARS = ";{}="

Datetime2Handling = Literal["auto", "timestamp_ns", "timestamp_us", "string"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


def _fix(hint: str) -> dict[str, str]:
    return {"fix": hint}


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[match[0]]}'?" if match else ""


def _problems(*problems: tuple[str, str]) -> PydanticCustomError:
    """An error carrying ``(sub-path, message)`` pairs relative to the validated field."""
    return PydanticCustomError("dtaas_problems", "{problems}", {"problems": list(problems)})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sources


class SqlServerSource(_Model):
    """A SQL Server database the tasks read from."""

    host: str = Field(description="Host name or IP address of the SQL Server.", min_length=1)
    port: int = Field(1433, ge=1, le=65535, description="TCP port of the SQL Server.",
                      json_schema_extra=_fix("use the server's TCP port, usually 1433"))
    database: str = Field(description="Database to read from.", min_length=1)
    user: str = Field(description="SQL login name.", min_length=1)
    password_env: str = Field(
        description="NAME of the environment variable that holds the password (never the password itself).",
        json_schema_extra=_fix("name an environment variable, e.g. DTAAS_SALES_PASSWORD"),
    )
    driver: str = Field("auto", min_length=1, description=(
        "ODBC driver: 'auto' (Driver 18 from mssql-python-odbc, else FreeTDS), 'msodbc18', "
        "'freetds', or a driver name registered in odbcinst.ini / a path to the driver library."))
    encrypt: Literal["yes", "no", "optional", "strict"] = Field(
        "yes", description="ODBC Encrypt setting (TLS).", json_schema_extra=_fix("use yes, no, optional or strict"))
    trust_server_certificate: bool = Field(False, description="Accept a server certificate without verifying it.")
    login_timeout_seconds: int = Field(15, ge=1, le=300, description="Seconds to wait for a connection.",
                                       json_schema_extra=_fix("use 15 unless the network is slow"))
    query_timeout_seconds: int = Field(0, ge=0, description="Seconds before a query is cancelled; 0 = no limit.",
                                       json_schema_extra=_fix("use 0 for no limit"))
    odbc_extra: dict[str, str] = Field(default_factory=dict, description=(
        "Extra ODBC connection-string attributes, e.g. {ApplicationIntent: ReadOnly}. Not for the "
        "attributes that have typed fields (DRIVER, SERVER, UID, PWD, DATABASE, Encrypt, TrustServerCertificate)."))
    max_concurrent_reads: int = Field(4, ge=1, le=64, description=(
        "Dagster concurrency pool limit for this server: table reads running at once across all tasks."),
        json_schema_extra=_fix("set it to what the server can take, e.g. 4"))

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
        return {k: as_text[v] if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
                for k, v in value.items()}

    @field_validator("password_env")
    @classmethod
    def _check_password_env(cls, value: str) -> str:
        if not ENV_NAME_RE.match(value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _; not starting with a digit); "
                "put the password in an environment variable and name it here")
        return value

    @field_validator("odbc_extra")
    @classmethod
    def _check_odbc_extra(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for key, item in value.items():
            if key.lower() in _RESERVED_ODBC_KEYS:
                problems.append((key, "is set by the typed source fields (driver, host, port, user, password_env, "
                                      "database, encrypt, trust_server_certificate); remove it from odbc_extra"))
            elif any(c in key for c in _ODBC_FORBIDDEN_CHARS) or any(c in item for c in _ODBC_FORBIDDEN_CHARS):
                problems.append((key, "key and value must not contain ; { } or =; remove those characters"))
        if problems:
            raise _problems(*problems)
        return value

    def password(self) -> str:
        """The password, read from the environment now (never stored in the model)."""
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"environment variable {self.password_env} ({self._config_path}.password_env) is not set; "
                "export it before running")
        return value


# ------------------------------------------------------------- destinations


class S3Destination(_Model):
    """Files in S3 (or an S3-compatible store), or under a local directory for local runs."""

    type: Literal["s3"] = Field("s3", description="Destination kind. Only 's3' exists today ('snowflake' is planned).",
                                json_schema_extra=_fix("use type: s3"))
    url: str = Field(description="Base location: s3://bucket[/prefix], file:///abs/path or file://relative/path.")
    path_template: str = Field(
        "$sourceDatabaseName/$sourceSchemaName/$sourceTableName/$partitionKey",
        description=("Path of each table's files under url, string.Template syntax ($name or ${name}); "
                     "variables: built-ins (" + ", ".join(BUILTIN_VARIABLES) + ") or keys of `variables`."))
    format: Literal["parquet", "csv", "jsonl"] = Field(
        "parquet", description="File format.", json_schema_extra=_fix("use parquet, csv or jsonl"))
    compression: Literal["none", "snappy", "gzip", "zstd"] | None = Field(
        None, description="Compression; unset = snappy for parquet, none for csv/jsonl. snappy is parquet-only.",
        json_schema_extra=_fix("use none, snappy, gzip or zstd"))
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
        fix = "write it like $sourceSchemaName/$sourceTableName/$partitionKey"
        if not string.Template(value).is_valid():
            raise ValueError(f"invalid template syntax (a lone $ or unclosed ${{); use $$ for a literal $; {fix}")
        if value.startswith("/"):
            raise ValueError(f"must be relative to url (no leading '/'); {fix}")
        if ".." in value.split("/"):
            raise ValueError(f"must not contain '..' segments; {fix}")
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
            raise _problems(("compression", f"snappy is only valid for parquet (format is {self.format}); "
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


# -------------------------------------------------------------------- tasks

_TABLE_FIX = "write it as schema.table, e.g. dbo.orders"


def _split_table_ref(value: str) -> tuple[str, str]:
    schema, dot, table = value.partition(".")
    if not dot or not schema.strip() or not table.strip() or "." in table:
        raise ValueError(f"{value!r} must be schema.table (the schema is required); {_TABLE_FIX} or dbo.*")
    return schema, table


def _check_pattern(value: str) -> str:
    _split_table_ref(value)
    return value


def _check_exact_name(value: str) -> str:
    _split_table_ref(value)
    if any(c in value for c in "*?"):
        raise ValueError(f"{value!r} is a pattern; a table entry with options needs an exact name; {_TABLE_FIX}")
    return value


TablePattern = Annotated[str, AfterValidator(_check_pattern)]


class SizeLimit(_Model):
    """A size given either in rows or in megabytes (exactly one of them)."""

    rows: int | None = Field(None, ge=1, le=10_000_000, description="Limit in rows.",
                             json_schema_extra=_fix("use e.g. rows: 50000"))
    mb: float | None = Field(None, gt=0, le=4096, description="Limit in megabytes (Arrow in-memory size).",
                             json_schema_extra=_fix("use e.g. mb: 64"))

    @model_validator(mode="after")
    def _exactly_one(self) -> SizeLimit:
        if self.rows is not None and self.mb is not None:
            raise ValueError("give either rows or mb, not both; remove one of them")
        if self.rows is None and self.mb is None:
            raise ValueError("give either rows or mb; e.g. rows: 50000")
        return self


class RetryConfig(_Model):
    """How a failed table load is retried (becomes a Dagster RetryPolicy)."""

    max_retries: int = Field(3, ge=0, le=20, description="Retries after the first attempt; 0 = none.",
                             json_schema_extra=_fix("use 0 to disable retries"))
    delay_seconds: float = Field(5, ge=0, le=3600, description="Base delay before a retry, in seconds.",
                                 json_schema_extra=_fix("use e.g. 5"))
    backoff: Literal["exponential", "linear", "constant"] = Field(
        "exponential", description="How the delay grows between retries.",
        json_schema_extra=_fix("use exponential, linear or constant"))
    jitter: Literal["none", "full", "plus_minus"] = Field(
        "plus_minus", description="Random jitter added to the delay.",
        json_schema_extra=_fix("use none, full or plus_minus"))


def _cron_is_valid(expression: str) -> bool:
    if len(expression.split()) != 5:
        return False
    try:
        from croniter import croniter  # optional; dagster no longer pulls it in
    except ImportError:
        croniter = None
    if croniter is not None:
        return bool(croniter.is_valid(expression))
    from dagster._utils.schedules import is_valid_cron_string  # what dagster itself accepts

    return bool(is_valid_cron_string(expression))


class ScheduleConfig(_Model):
    """When a task runs on its own: a cron expression or a fixed interval."""

    cron: str | None = Field(None, description="Five-field cron expression, e.g. '0 2 * * *' (02:00 daily).")
    interval_minutes: int | None = Field(None, ge=1, le=10080, description="Run every N minutes (max one week).",
                                         json_schema_extra=_fix("use e.g. 60"))
    timezone: str = Field("UTC", description="IANA time zone of the schedule, e.g. Europe/Berlin.")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and not _cron_is_valid(value):
            raise ValueError(f"{value!r} is not a valid five-field cron expression "
                             "(minute hour day-of-month month day-of-week); e.g. '0 2 * * *'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like UTC or Europe/Berlin") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval_minutes is None):
            raise ValueError("give either cron or interval_minutes, not both or neither; "
                             "remove one (or drop schedule for on-demand runs)")
        return self


class TableConfig(_Model):
    """One table with options; ``name`` is exact (no pattern)."""

    name: Annotated[str, AfterValidator(_check_exact_name)] = Field(
        description="Exact table name as schema.table, e.g. dbo.orders.")
    primary_key: list[str] | None = Field(None, min_length=1, description=(
        "Primary key columns; overrides the catalog (for tables without a declared key)."),
        json_schema_extra=_fix("list the key columns, or remove primary_key to use the catalog"))
    columns_include: list[str] | None = Field(None, min_length=1, description="Only these columns are copied.",
                                              json_schema_extra=_fix("list at least one column or remove it"))
    columns_exclude: list[str] = Field(default_factory=list, description="These columns are not copied.")
    datetime2: dict[str, Datetime2Handling] = Field(
        default_factory=dict, description="Per-column datetime2/datetimeoffset handling, overrides the task's.",
        json_schema_extra=_fix("use auto, timestamp_ns, timestamp_us or string"))

    @model_validator(mode="after")
    def _include_or_exclude(self) -> TableConfig:
        if self.columns_include is not None and self.columns_exclude:
            raise _problems(("columns_exclude", "give columns_include or columns_exclude, not both; remove one"))
        return self


def _table_entry_kind(value: Any) -> str:
    return "table" if isinstance(value, (dict, TableConfig)) else "name"


TableEntry = Annotated[
    Union[Annotated[TablePattern, Tag("name")], Annotated[TableConfig, Tag("table")]],
    Discriminator(_table_entry_kind),
]


def _has_wildcard(name: str) -> bool:
    return "*" in name or "?" in name


class TaskConfig(_Model):
    """A task: tables of one source copied to one destination; one Dagster job."""

    source: str = Field(description="Name of a source under `sources`.")
    destination: str = Field(description="Name of a destination under `destinations`.")
    tables: list[TableEntry] = Field(min_length=1, description=(
        "Tables: 'schema.table', a pattern with * and ? ('dbo.*', 'sales_*.*'), or a mapping with options."),
        json_schema_extra=_fix("list at least one table, e.g. - dbo.orders"))
    exclude_tables: list[TablePattern] = Field(default_factory=list, description=(
        "Patterns removed from what the `tables` patterns matched (explicit names are always kept)."))
    mode: Literal["full_load", "cdc", "full_load_and_cdc"] = Field(
        "full_load", description="full_load (snapshots), cdc (changes only) or full_load_and_cdc.",
        json_schema_extra=_fix("use full_load, cdc or full_load_and_cdc"))
    batch: SizeLimit = Field(default_factory=lambda: SizeLimit(rows=50_000),
                             description="Size of each Arrow batch read from SQL Server (rows or mb).",
                             json_schema_extra=_fix("write {rows: 50000} or {mb: 64}"))
    file_size: SizeLimit = Field(default_factory=lambda: SizeLimit(rows=1_000_000),
                                 description="Output files are split at this size (rows or mb).",
                                 json_schema_extra=_fix("write {rows: 1000000} or {mb: 256}"))
    parallel_tables: int = Field(4, ge=1, le=10, description="Tables loaded at once in one run.",
                                 json_schema_extra=_fix("set it to the number of tables to load at once"))
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retry policy of each table load.",
                               json_schema_extra=_fix("write e.g. {max_retries: 3, delay_seconds: 5}"))
    schedule: ScheduleConfig | None = Field(
        None, description="Automatic runs; unset = on demand only.",
        json_schema_extra=_fix("write {cron: '0 2 * * *'} or {interval_minutes: 60}"))
    datetime2: Datetime2Handling = Field("auto", description=(
        "datetime2(7)/datetimeoffset handling: auto, timestamp_ns, timestamp_us or string (see docs)."),
        json_schema_extra=_fix("use auto, timestamp_ns, timestamp_us or string"))

    @field_validator("tables")
    @classmethod
    def _no_duplicates(cls, value: list[str | TableConfig]) -> list[str | TableConfig]:
        seen: set[str] = set()
        problems = []
        for index, entry in enumerate(value):
            name = (entry if isinstance(entry, str) else entry.name).lower()
            if name in seen:
                problems.append((f"[{index}]", f"{name} is listed twice; remove one entry"))
            seen.add(name)
        if problems:
            raise _problems(*problems)
        return value

    def explicit_tables(self) -> list[TableConfig]:
        """Entries without wildcards, as TableConfig (plain strings get default options)."""
        return [TableConfig(name=e) if isinstance(e, str) else e
                for e in self.tables if not (isinstance(e, str) and _has_wildcard(e))]

    def patterns(self) -> list[str]:
        """Entries with * or ? wildcards."""
        return [e for e in self.tables if isinstance(e, str) and _has_wildcard(e)]


# ---------------------------------------------------------------- top level


def _suggest_name(name: str, kind: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return re.sub(r"[^a-z0-9_]", "_", snake).lstrip("0123456789_")[:63] or f"my_{kind}"


def _check_names(kind: str, names: typing.Iterable[str]) -> None:
    bad = [(n, f"{kind} name {n!r} must match ^[a-z][a-z0-9_]{{0,62}}$ (lowercase letter first, then lowercase "
               "letters, digits, _; it becomes a Dagster job/asset name); rename it, e.g. "
               f"{_suggest_name(n, kind)}")
           for n in names if not NAME_RE.match(n)]
    if bad:
        raise _problems(*bad)


class DtaasConfig(_Model):
    """The whole ``dtaas.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    sources: dict[str, SqlServerSource] = Field(min_length=1, description="SQL Server sources by name.",
                                                json_schema_extra=_fix("define at least one source"))
    destinations: dict[str, S3Destination] = Field(min_length=1, description=(
        "Destinations by name; each has a `type` (only s3 today)."),
        json_schema_extra=_fix("define at least one destination"))
    variables: dict[str, str] = Field(default_factory=dict, description=(
        "Static global variables usable in path templates as $name (values may use ${ENV_VAR})."))
    tasks: dict[str, TaskConfig] = Field(min_length=1, description="Tasks by name; each becomes a Dagster job.",
                                         json_schema_extra=_fix("define at least one task"))

    @field_validator("sources", "destinations", "tasks")
    @classmethod
    def _check_key_names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        _check_names(info.field_name.rstrip("s"), value)
        return value

    @field_validator("variables")
    @classmethod
    def _check_variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [(n, "must be a name like ETLCustomerId (letters, digits, _; not starting with a digit); "
                        "rename it") for n in value if not ENV_NAME_RE.match(n)]
        problems += [(n, "is a built-in variable; pick another name") for n in value if n in BUILTIN_VARIABLES]
        if problems:
            raise _problems(*problems)
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> DtaasConfig:
        problems = [*self._reference_problems(), *self._template_problems()]
        if problems:
            raise _problems(*problems)
        for name, source in self.sources.items():
            source._config_path = f"sources.{name}"
        return self

    def _reference_problems(self) -> list[tuple[str, str]]:
        problems = []
        for task_name, task in self.tasks.items():
            for kind, ref, defined in (("source", task.source, self.sources),
                                       ("destination", task.destination, self.destinations)):
                if ref not in defined:
                    hint = _did_you_mean(ref, defined)
                    problems.append((f"tasks.{task_name}.{kind}", (
                        f"task {task_name}: {kind} {ref!r} is not defined{hint}{' ' if hint else '; '}"
                        f"defined {kind}s: {', '.join(defined)}")))
        return problems

    def _template_problems(self) -> list[tuple[str, str]]:
        known = (*BUILTIN_VARIABLES, *self.variables)
        problems = []
        for name, destination in self.destinations.items():
            for ident in string.Template(destination.path_template).get_identifiers():
                if ident not in known:
                    hint = _did_you_mean(ident, known)
                    problems.append((f"destinations.{name}.path_template", (
                        f"unknown variable ${ident}{hint}{' ' if hint else '; '}use a built-in "
                        f"({', '.join(BUILTIN_VARIABLES)}) or define it under variables")))
        return problems


# ---------------------------------------------------------- table matching


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """SQL Server names compare case-insensitively (default collations); only * and ? are wildcards."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL)


def _pattern_matches(pattern: str, schema: str, table: str) -> bool:
    schema_pattern, table_pattern = _split_table_ref(pattern)
    return bool(_wildcard_regex(schema_pattern).match(schema) and _wildcard_regex(table_pattern).match(table))


def match_tables(task: TaskConfig, available: list[tuple[str, str]]) -> list[TableConfig]:
    """Resolve a task's tables against the catalog's (schema, table) names.

    Explicit entries come first, in config order, renamed to the catalog's spelling
    and keeping their options; pattern matches follow, sorted, minus
    ``exclude_tables`` (which never removes an explicit entry).
    """
    by_lower = {f"{s}.{t}".lower(): (s, t) for s, t in available}
    result: list[TableConfig] = []
    chosen: set[str] = set()
    for table in task.explicit_tables():
        found = by_lower.get(table.name.lower())
        if found is None:
            hint = _did_you_mean(table.name, (f"{s}.{t}" for s, t in available)).replace("'", "")
            raise ConfigError(f"table {table.name} not found in source {task.source}{hint or '; check the name'}")
        result.append(table.model_copy(update={"name": f"{found[0]}.{found[1]}"}))
        chosen.add(table.name.lower())
    for pattern in task.patterns():
        matched = [(s, t) for s, t in available if _pattern_matches(pattern, s, t)]
        if not matched:
            raise ConfigError(f"pattern {pattern} matched no table in source {task.source}; "
                              f"check the pattern (schema.table, * and ? wildcards) or remove it")
        for s, t in sorted(matched, key=lambda st: (st[0].lower(), st[1].lower())):
            key = f"{s}.{t}".lower()
            if key in chosen or any(_pattern_matches(x, s, t) for x in task.exclude_tables):
                continue
            result.append(TableConfig(name=f"{s}.{t}"))
            chosen.add(key)
    return result


# ------------------------------------------------------------------ loading

_ENV_REF = re.compile(r"\$\$\{|\$\{([^}:]*)(:-[^}]*)?\}")
_NOT_INTERPOLATED = re.compile(r"^destinations\.[^.]+\.path_template$")


def _interpolate(value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Replace ${VAR} / ${VAR:-default} in string values; ``$${`` is a literal ``${``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or _NOT_INTERPOLATED.match(path):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if not ENV_NAME_RE.match(name):
            problems.append((path, f"${{{name}}} is not a valid environment variable name; "
                                   "use ${NAME} or ${NAME:-default}"))
            return ""
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default[2:]
        problems.append((path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}"))
        return ""

    return _ENV_REF.sub(replace, value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; remove one of them", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _config_location(path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    if path is not None:
        return Path(path), "the path given to load_config()"
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), f"environment variable {CONFIG_ENV}"
    return DEFAULT_CONFIG_PATH, "the default (the example dtaas.yaml)"


def load_config(path: str | os.PathLike[str] | None = None) -> DtaasConfig:
    """Load and validate the config: ``path``, else ``$DTAAS_CONFIG``, else the example ``dtaas.yaml``."""
    file, origin = _config_location(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found (from {origin}); pass an existing YAML file to "
                          f"load_config() or set {CONFIG_ENV} to its path")
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{file}: {where}invalid YAML: {exc.problem or exc}; fix the syntax "
                          "(indentation, ':' after keys, quotes around values with ': ' or '#')") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}; fix the syntax") from None
    return parse_config(data, source=str(file))


def parse_config(data: Any, *, source: str = "<config>") -> DtaasConfig:
    """Validate already-parsed YAML data (interpolating ${VAR}); errors name ``source``."""
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{source}: the top level must be a mapping with keys sources, destinations, "
                          f"variables, tasks (got {kind}); see {DOCS} for an example")
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", problems)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}: {m}" for p, m in problems))
    try:
        return DtaasConfig.model_validate(data)
    except ValidationError as exc:
        # Not chained: pydantic's text repeats the inputs, which may include a pasted secret.
        raise ConfigError("\n".join(f"{source}: {line}" for line in _error_lines(exc))) from None


# ------------------------------------------------------- error formatting


def _join(path: str, sub: str) -> str:
    if not path:
        return sub
    return f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType) and type(None) in typing.get_args(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _union_member(tp: Any, tag: Any) -> Any | None:
    """The member of a tagged union that pydantic names ``tag`` in an error loc."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    for member in typing.get_args(tp):
        tags = [m.tag for m in getattr(member, "__metadata__", ()) if isinstance(m, Tag)]
        if tag in tags or getattr(_unwrap(member), "__name__", None) == tag:
            return member
    return None


def _walk(loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None, Any]:
    """Display path of ``loc``, the model that holds its last key, and the nearest field's FieldInfo."""
    tp: Any = DtaasConfig
    path, model, field = "", None, None
    for part in loc:
        tp = _unwrap(tp)
        member = _union_member(tp, part)
        if member is not None:
            tp = member
            continue
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            model, field = tp, tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field else None
        elif origin is dict:
            tp, model = typing.get_args(tp)[1], None
        elif origin is list:
            tp, model = typing.get_args(tp)[0], None
            path = f"{path}[{part}]"
            continue
        else:
            tp, model = None, None
        path = _join(path, str(part))
    return path, model, field


def _shown(value: Any, path: str) -> str:
    if "odbc_extra" in path or not isinstance(value, (str, int, float, bool)) or len(repr(value)) > 60:
        return ""
    return f" (got {value!r})"


def _bounds(field: Any) -> str:
    limits = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in getattr(field, "metadata", ())
              if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}
    low = f"at least {limits['Ge']}" if "Ge" in limits else f"greater than {limits['Gt']}" if "Gt" in limits else ""
    high = f"at most {limits['Le']}" if "Le" in limits else f"less than {limits['Lt']}" if "Lt" in limits else ""
    if "Ge" in limits and "Le" in limits:
        return f"must be between {limits['Ge']} and {limits['Le']}"
    return "must be " + " and ".join(x for x in (low, high) if x)


_TYPE_WORDS = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
    "dict": "a mapping (key: value)", "model": "a mapping (key: value)", "list": "a list",
}


def _describe(err: Any, path: str, model: type[BaseModel] | None, field: Any) -> tuple[str, str]:
    """(path, message) for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    extra = getattr(field, "json_schema_extra", None)
    fix = extra.get("fix") if isinstance(extra, dict) else None
    fix_text = f"; {fix}" if fix else f"; see {DOCS}"
    got = _shown(err.get("input"), path)
    key = str(err["loc"][-1]) if err["loc"] else ""
    if kind == "extra_forbidden":
        if model is SqlServerSource and key.lower() in ("password", "pwd"):
            return path, "a password must not be written in the config; put the password in an environment " \
                         "variable and name it in password_env"
        allowed = list(model.model_fields) if model else []
        return path, f"unknown key {key!r}{_did_you_mean(key, allowed)}{' ' if _did_you_mean(key, allowed) else '; '}" \
                     f"allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        description = f" ({field.description})" if field is not None and field.description else ""
        return path, f"is required but missing; add {key}:{description}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return path, f"{_bounds(field)}{got}{fix_text}"
    if kind == "literal_error":
        expected = str(ctx.get("expected"))
        one_of = "one of " if "," in expected or " or " in expected else ""
        return path, f"must be {one_of}{expected}{got}{fix_text}"
    if kind in ("too_short", "string_too_short"):
        return path, f"must not be empty{fix_text}"
    if kind in ("value_error", "assertion_error"):
        return path, re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
    for word, meaning in _TYPE_WORDS.items():
        if kind.startswith(f"{word}_"):
            return path, f"must be {meaning}{got}{fix_text}"
    return path, f"{err['msg']}{got}{fix_text}"


def _error_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        path, model, field = _walk(tuple(err["loc"]))
        if err["type"] == "dtaas_problems":
            lines += [f"{_join(path, sub)}: {msg}" for sub, msg in err["ctx"]["problems"]]
            continue
        where, message = _describe(err, path, model, field)
        lines.append(f"{where or 'top level'}: {message}")
    return lines
