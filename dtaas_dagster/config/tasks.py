"""Tasks: a source, its tables, a destination, a mode and the run options."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from dtaas_dagster.config.base import Model, fix, problems_error
from dtaas_dagster.config.transforms import TransformSpec
from dtaas_dagster.sqlserver.names import TABLE_NAME_FIX, has_wildcard, parse_table_name

StepCheck = Literal["row_count", "manifest", "column_schema_change"]
STEP_CHECK_NAMES: tuple[StepCheck, ...] = ("row_count", "manifest", "column_schema_change")
Datetime2Handling = Literal["auto", "timestamp_ns", "timestamp_us", "string"]


def _check_pattern(value: str) -> str:
    parse_table_name(value)
    return value


def _check_exact_name(value: str) -> str:
    if parse_table_name(value).is_pattern:
        raise ValueError(f"{value!r} is a pattern; a table entry with options needs an exact name; {TABLE_NAME_FIX}")
    return value


TablePattern = Annotated[str, AfterValidator(_check_pattern)]


class SizeLimit(Model):
    """A size given either in rows or in megabytes (exactly one of them)."""

    rows: int | None = Field(
        None, ge=1, le=10_000_000, description="Limit in rows.", json_schema_extra=fix("use e.g. rows: 50000")
    )
    mb: float | None = Field(
        None,
        gt=0,
        le=4096,
        description="Limit in megabytes (Arrow in-memory size).",
        json_schema_extra=fix("use e.g. mb: 64"),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SizeLimit:
        if self.rows is not None and self.mb is not None:
            raise ValueError("give either rows or mb, not both; remove one of them")
        if self.rows is None and self.mb is None:
            raise ValueError("give either rows or mb; e.g. rows: 50000")
        return self


class RetryConfig(Model):
    """How a failed table load is retried (becomes a Dagster RetryPolicy)."""

    max_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Retries after the first attempt; 0 = none.",
        json_schema_extra=fix("use 0 to disable retries"),
    )
    delay_seconds: float = Field(
        5, ge=0, le=3600, description="Base delay before a retry, in seconds.", json_schema_extra=fix("use e.g. 5")
    )
    backoff: Literal["exponential", "linear", "constant"] = Field(
        "exponential",
        description="How the delay grows between retries.",
        json_schema_extra=fix("use exponential, linear or constant"),
    )
    jitter: Literal["none", "full", "plus_minus"] = Field(
        "plus_minus",
        description="Random jitter added to the delay.",
        json_schema_extra=fix("use none, full or plus_minus"),
    )


def _cron_is_valid(expression: str) -> bool:
    """Whether Dagster accepts the expression: the schedule is built from it (public API)."""
    if len(expression.split()) != 5:
        return False
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=expression, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


def _valid_cron(value: str | None, example: str) -> str | None:
    if value is not None and not _cron_is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid five-field cron expression "
            f"(minute hour day-of-month month day-of-week); e.g. '{example}'"
        )
    return value


class ScheduleConfig(Model):
    """When a task runs on its own: a cron expression or a fixed interval."""

    cron: str | None = Field(None, description="Five-field cron expression, e.g. '0 2 * * *' (02:00 daily).")
    interval_minutes: int | None = Field(
        None, ge=1, le=10080, description="Run every N minutes (max one week).", json_schema_extra=fix("use e.g. 60")
    )
    timezone: str = Field("UTC", description="IANA time zone of the schedule, e.g. Europe/Berlin.")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return _valid_cron(value, "0 2 * * *")

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
            raise ValueError(
                "give either cron or interval_minutes, not both or neither; "
                "remove one (or drop schedule for on-demand runs)"
            )
        return self


def _asset_spec_problem(**fields: Any) -> str | None:
    """Dagster's own verdict on asset owners or tags (public API), or None when it accepts them."""
    import dagster as dg

    try:
        dg.AssetSpec("dtaas_check", **fields)
    except dg.DagsterInvalidDefinitionError as exc:
        return str(exc).replace(" for asset 'AssetKey(['dtaas_check'])'", "")
    return None


class FreshnessConfig(Model):
    """When a table counts as stale: a Dagster freshness policy on each table asset of the task."""

    max_lag_minutes: int | None = Field(
        None,
        ge=1,
        le=525_600,
        description=("Fail when the newest load of a table is older than this many minutes."),
        json_schema_extra=fix("use e.g. 1500 for a daily load with an hour of slack"),
    )
    warn_lag_minutes: int | None = Field(
        None,
        ge=1,
        le=525_600,
        description=("Warn when the newest load is older than this many minutes (less than max_lag_minutes)."),
        json_schema_extra=fix("use a number below max_lag_minutes, or leave it out"),
    )
    cron: str | None = Field(
        None,
        description=(
            "Instead of a lag: a deadline, a five-field cron expression such as '0 6 * * *' (loaded by 06:00)."
        ),
    )
    lower_bound_minutes: int = Field(
        1440,
        ge=1,
        le=525_600,
        description=("With cron: the load must have happened at most this many minutes before each deadline."),
        json_schema_extra=fix("use e.g. 1440 for 'within the day before the deadline'"),
    )
    timezone: str = Field("UTC", description="IANA time zone of cron, e.g. Europe/Berlin.")

    _check_timezone = field_validator("timezone")(ScheduleConfig._check_timezone.__func__)  # type: ignore[attr-defined]
    _check_cron = field_validator("cron")(ScheduleConfig._check_cron.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _lag_or_deadline(self) -> FreshnessConfig:
        if (self.max_lag_minutes is None) == (self.cron is None):
            raise ValueError("give either max_lag_minutes or cron, not both or neither; e.g. {max_lag_minutes: 1500}")
        if self.warn_lag_minutes is not None:
            if self.max_lag_minutes is None:
                raise ValueError("warn_lag_minutes goes with max_lag_minutes; remove it or use max_lag_minutes")
            if self.warn_lag_minutes >= self.max_lag_minutes:
                raise ValueError(
                    f"warn_lag_minutes ({self.warn_lag_minutes}) must be below max_lag_minutes "
                    f"({self.max_lag_minutes}); lower it or leave it out"
                )
        return self


class TableConfig(Model):
    """One table with options; ``name`` is exact (no pattern)."""

    name: Annotated[str, AfterValidator(_check_exact_name)] = Field(
        description="Exact table name as schema.table, e.g. dbo.orders."
    )
    primary_key: list[str] | None = Field(
        None,
        min_length=1,
        description=("Primary key columns; overrides the catalog (for tables without a declared key)."),
        json_schema_extra=fix("list the key columns, or remove primary_key to use the catalog"),
    )
    columns_include: list[str] | None = Field(
        None,
        min_length=1,
        description="Only these columns are copied.",
        json_schema_extra=fix("list at least one column or remove it"),
    )
    columns_exclude: list[str] = Field(default_factory=list, description="These columns are not copied.")
    datetime2: dict[str, Datetime2Handling] = Field(
        default_factory=dict,
        description="Per-column datetime2/datetimeoffset handling, overrides the task's.",
        json_schema_extra=fix("use auto, timestamp_ns, timestamp_us or string"),
    )
    transformations: list[TransformSpec] = Field(
        default_factory=list,
        description=("Transforms applied per batch, in order: {type: <kind>, config: {...}} (docs/transforms.md)."),
        json_schema_extra=fix("write e.g. - {type: drop_column, config: {column_name: notes}}"),
    )

    @model_validator(mode="after")
    def _include_or_exclude(self) -> TableConfig:
        found = []
        if self.columns_include is not None and self.columns_exclude:
            found.append(("columns_exclude", "give columns_include or columns_exclude, not both; remove one"))
        # SQL Server column names are case-insensitive: ID and id are one column, and a file
        # with two columns of one name cannot be read by most tools.
        named = [
            ("primary_key", self.primary_key or []),
            ("columns_include", self.columns_include or []),
            ("columns_exclude", self.columns_exclude),
            ("datetime2", list(self.datetime2)),
        ]
        for field_name, names in named:
            seen: dict[str, str] = {}
            for name in names:
                if name.lower() in seen:
                    found.append(
                        (
                            field_name,
                            f"names the column {seen[name.lower()]} twice ({name}; names compare "
                            "case-insensitively, as in SQL Server); remove one",
                        )
                    )
                seen.setdefault(name.lower(), name)
        if found:
            raise problems_error(*found)
        return self


def _check_cdc_start(value: str) -> str:
    """now, earliest, an LSN (20 hex digits) or a UTC time (ISO 8601)."""
    if value in ("now", "earliest"):
        return value
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{20}", value):
        return value.lower().removeprefix("0x")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not now, earliest, an LSN (20 hex digits) or a UTC time such as 2026-12-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; write it in UTC, e.g. 2026-12-01T00:00:00Z")
    return moment.astimezone(dt.UTC).isoformat()


class CdcConfig(Model):
    """How a cdc / full_load_and_cdc task follows SQL Server's change tables."""

    poll_seconds: int = Field(
        10,
        ge=1,
        le=86_400,
        description=(
            "Minimum seconds between two ticks of the task's CDC sensor (<task>_cdc): how often SQL Server is asked "
            "for new changes."
        ),
        json_schema_extra=fix("use e.g. 10"),
    )
    start: Annotated[str, AfterValidator(_check_cdc_start)] = Field(
        "now",
        description=(
            "Where a cdc task (no snapshot) starts: now (changes from the first tick on), earliest (the oldest change "
            "the capture instance still holds), an LSN (20 hex digits) or a UTC time (ISO 8601, mapped with "
            "sys.fn_cdc_map_time_to_lsn). full_load_and_cdc tasks start at their snapshot."
        ),
        json_schema_extra=fix(
            "use now, earliest, an LSN like 0000002a000001300001 or a time like 2026-12-01T00:00:00Z"
        ),
    )
    on_retention_gap: Literal["fail", "resnapshot"] = Field(
        "fail",
        description=(
            "When changes a table still needed were purged by SQL Server's cleanup job: fail that table with a clear "
            "error, or take a new snapshot of it and continue from there."
        ),
        json_schema_extra=fix("use fail or resnapshot"),
    )
    update_before_images: bool = Field(
        False, description=("Also write update before-images (_dtaas_op = update_before) into change files.")
    )
    min_window_seconds: int = Field(
        0,
        ge=0,
        le=86_400,
        description=(
            "Coalesce changes into windows of at least this many seconds (fewer, larger partitions); 0 = every tick "
            "that sees changes makes a window."
        ),
        json_schema_extra=fix("use 0, or e.g. 300 for five-minute windows"),
    )
    lag_warn_seconds: int = Field(
        900,
        ge=1,
        le=30 * 86_400,
        description=(
            "The cdc_lag asset check (and dtaas health) warns when a table's oldest change not yet loaded was "
            "committed more than this many seconds ago."
        ),
        json_schema_extra=fix("use e.g. 900 (15 minutes)"),
    )
    lag_fail_seconds: int = Field(
        3600,
        ge=1,
        le=30 * 86_400,
        description=(
            "The cdc_lag asset check (and dtaas health) fails when a table's oldest change not yet loaded was "
            "committed more than this many seconds ago; at least lag_warn_seconds."
        ),
        json_schema_extra=fix("use e.g. 3600 (one hour), not less than lag_warn_seconds"),
    )
    headroom_warn_percent: float = Field(
        50,
        gt=0,
        le=100,
        description=(
            "The cdc_retention_headroom asset check (and dtaas health) warns when less than this share of the "
            "cleanup job's retention is left before the oldest change not yet loaded is purged."
        ),
        json_schema_extra=fix("use e.g. 50"),
    )
    headroom_fail_percent: float = Field(
        25,
        gt=0,
        le=100,
        description=(
            "The cdc_retention_headroom asset check (and dtaas health) fails when less than this share of the "
            "cleanup job's retention is left; at most headroom_warn_percent."
        ),
        json_schema_extra=fix("use e.g. 25, not more than headroom_warn_percent"),
    )
    checks_cron: str | None = Field(
        "*/5 * * * *",
        description=(
            "When the schedule <task>_cdc_checks evaluates the cdc_lag and cdc_retention_headroom checks "
            "(five-field cron, UTC); null: no schedule (the checks still run from the UI)."
        ),
        json_schema_extra=fix("use a five-field cron such as '*/5 * * * *', or null"),
    )
    position_report_seconds: int = Field(
        3600,
        ge=1,
        le=86_400,
        description=(
            "How often the sensor records (as an asset observation) that an idle table's position moved past a "
            "range without changes, so checks and dtaas health know it is not behind; keep it well below the "
            "cleanup job's retention."
        ),
        json_schema_extra=fix("use e.g. 3600"),
    )

    @field_validator("checks_cron")
    @classmethod
    def _check_checks_cron(cls, value: str | None) -> str | None:
        return _valid_cron(value, "*/5 * * * *")

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> CdcConfig:
        found = []
        if self.lag_fail_seconds < self.lag_warn_seconds:
            found.append(
                (
                    "lag_fail_seconds",
                    f"{self.lag_fail_seconds} is below lag_warn_seconds "
                    f"({self.lag_warn_seconds}); the check warns first, then fails: raise it",
                )
            )
        if self.headroom_fail_percent > self.headroom_warn_percent:
            found.append(
                (
                    "headroom_fail_percent",
                    f"{self.headroom_fail_percent} is above headroom_warn_percent "
                    f"({self.headroom_warn_percent}); the check warns first, then fails: lower it",
                )
            )
        if self.lag_warn_seconds <= self.min_window_seconds:
            found.append(
                (
                    "lag_warn_seconds",
                    f"{self.lag_warn_seconds} is not above min_window_seconds "
                    f"({self.min_window_seconds}): changes wait that long on purpose, so the lag check "
                    "would warn on every window; raise it",
                )
            )
        if found:
            raise problems_error(*found)
        return self


def _table_entry_kind(value: Any) -> str:
    return "table" if isinstance(value, (dict, TableConfig)) else "name"


TableEntry = Annotated[
    Annotated[TablePattern, Tag("name")] | Annotated[TableConfig, Tag("table")],
    Discriminator(_table_entry_kind),
]


class TaskConfig(Model):
    """A task: tables of one source copied to one destination; one Dagster job."""

    source: str = Field(description="Name of a source under `sources`.")
    destination: str = Field(description="Name of a destination under `destinations`.")
    tables: list[TableEntry] = Field(
        min_length=1,
        description=(
            "Tables: 'schema.table', a pattern with * and ? ('dbo.*', 'sales_*.*'), or a mapping with options."
        ),
        json_schema_extra=fix("list at least one table, e.g. - dbo.orders"),
    )
    exclude_tables: list[TablePattern] = Field(
        default_factory=list,
        description=("Patterns removed from what the `tables` patterns matched (explicit names are always kept)."),
    )
    mode: Literal["full_load", "cdc", "full_load_and_cdc"] = Field(
        "full_load",
        description="full_load (snapshots), cdc (changes only) or full_load_and_cdc.",
        json_schema_extra=fix("use full_load, cdc or full_load_and_cdc"),
    )
    batch: SizeLimit = Field(
        default_factory=lambda: SizeLimit(rows=50_000),
        description="Size of each Arrow batch read from SQL Server (rows or mb).",
        json_schema_extra=fix("write {rows: 50000} or {mb: 64}"),
    )
    file_size: SizeLimit = Field(
        default_factory=lambda: SizeLimit(rows=1_000_000),
        description="Output files are split at this size (rows or mb).",
        json_schema_extra=fix("write {rows: 1000000} or {mb: 256}"),
    )
    parallel_tables: int = Field(
        4,
        ge=1,
        le=10,
        description="Tables loaded at once in one run.",
        json_schema_extra=fix("set it to the number of tables to load at once"),
    )
    tables_per_step: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Tables loaded one after the other by one run step. Unset: the tables are shared evenly among "
            "parallel_tables steps (one step per table when there are at most parallel_tables tables). "
            "1 gives every table its own step (about 2-4 CPU-seconds of process start each)."
        ),
        json_schema_extra=fix("use 1 for a step per table, or leave it unset"),
    )
    retry: RetryConfig = Field(
        default_factory=RetryConfig,
        description="Retry policy of each table load.",
        json_schema_extra=fix("write e.g. {max_retries: 3, delay_seconds: 5}"),
    )
    schedule: ScheduleConfig | None = Field(
        None,
        description="Automatic runs; unset = on demand only.",
        json_schema_extra=fix("write {cron: '0 2 * * *'} or {interval_minutes: 60}"),
    )
    cdc: CdcConfig = Field(
        default_factory=CdcConfig,
        description="Change Data Capture settings (modes cdc and full_load_and_cdc).",
        json_schema_extra=fix("write e.g. {poll_seconds: 10}"),
    )
    schema_drift: Literal["evolve", "fail", "ignore"] = Field(
        "evolve",
        description=(
            "When a table's columns change (a new capture instance after DDL, a changed column type): evolve (write "
            "the new schema from that point; a Snowflake target gets ADD COLUMN / widened types), fail (stop the "
            "table with the differences) or ignore (keep the old columns)."
        ),
        json_schema_extra=fix("use evolve, fail or ignore"),
    )
    step_checks: list[StepCheck] = Field(
        default_factory=lambda: list(STEP_CHECK_NAMES),
        description=(
            "The asset checks each table's load evaluates (docs/operations.md): row_count, manifest, "
            "column_schema_change. Each costs Dagster a few events per table and load; [] for a task over "
            "hundreds of small tables where that matters (bench/RESULTS.md, many tables)."
        ),
        json_schema_extra=fix("list some of row_count, manifest, column_schema_change, or write []"),
    )
    datetime2: Datetime2Handling = Field(
        "auto",
        description=("datetime2(7)/datetimeoffset handling: auto, timestamp_ns, timestamp_us or string (see docs)."),
        json_schema_extra=fix("use auto, timestamp_ns, timestamp_us or string"),
    )
    owners: list[str] = Field(
        default_factory=list,
        description=("Owners of the task's table assets in Dagster: email addresses or team:<name>."),
        json_schema_extra=fix("write e.g. [data-eng@example.com, team:sales_data]"),
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description=("Dagster tags on the task's table assets, e.g. {domain: sales, tier: gold}."),
        json_schema_extra=fix("use letters, digits, _ - . in keys and values (at most 63 each)"),
    )
    freshness: FreshnessConfig | None = Field(
        None,
        description=("When the task's tables count as stale (a Dagster freshness policy); unset = no policy."),
        json_schema_extra=fix("write {max_lag_minutes: 1500} or {cron: '0 6 * * *'}"),
    )

    @field_validator("owners")
    @classmethod
    def _check_owners(cls, value: list[str]) -> list[str]:
        problem = _asset_spec_problem(owners=value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = [key for key in value if key.startswith(("dtaas/", "dagster/"))]
        if reserved:
            raise ValueError(f"tag keys {', '.join(reserved)} are reserved (dtaas/ and dagster/); rename them")
        problem = _asset_spec_problem(tags=value) if value else None
        if problem:
            raise ValueError(problem)
        return value

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
            raise problems_error(*problems)
        return value

    @field_validator("step_checks")
    @classmethod
    def _checks_once(cls, value: list[StepCheck]) -> list[StepCheck]:
        problems = [
            (f"[{index}]", f"{name} is listed twice; remove one entry")
            for index, name in enumerate(value)
            if name in value[:index]
        ]
        if problems:
            raise problems_error(*problems)
        return value

    def explicit_tables(self) -> list[TableConfig]:
        """Entries without wildcards, as TableConfig (plain strings get default options)."""
        return [
            TableConfig(name=e) if isinstance(e, str) else e
            for e in self.tables
            if not (isinstance(e, str) and has_wildcard(e))
        ]

    def patterns(self) -> list[str]:
        """Entries with * or ? wildcards."""
        return [e for e in self.tables if isinstance(e, str) and has_wildcard(e)]
