"""Asset checks a table step evaluates for every table it loads (visible in the UI).

Each table asset carries three checks, declared on its step's ``multi_asset``
(``check_specs``) and evaluated by the step right after the table's load, so a
check is evaluated whenever its asset is materialized (no extra step, no
extra process):

- ``row_count``: the rows the destination's manifest lists equal the rows SQL
  Server reported for the same read (``ROWCOUNT_BIG()`` in the read's own
  batch), minus the update before-images a change window leaves out on
  purpose. The reader already refuses a short read; this records both numbers
  on every partition, and fails (the load then fails too) when a read ended
  early;
- ``manifest``: the partition's manifest exists where readers look (the
  pointer), is this partition's, and lists files that exist with their sizes
  (Parquet: footers read, with the listed rows);
- ``column_schema_change``: the columns written (name and SQL Server type)
  equal those of the previous partition (in key order), like Dagster's
  ``build_column_schema_change_checks``; a change is a WARN (``schema_drift:
  evolve`` accepts it), an ERROR when ``schema_drift: fail`` stopped the load.

Executing the checks alone (the asset's *Checks* tab, or a run that selects
only checks) re-evaluates them for the newest partition (or the run's
partition): a file deleted since the load fails ``manifest``.

The CDC checks (lag and retention headroom) are in :mod:`dtaas_dagster.cdc.checks`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from dtaas_dagster.sqlserver.bulk import IncompleteRead
from dtaas_dagster.stream import SourceCount, TableStream
from dtaas_dagster.table_load import SchemaDriftError, TableSpec, schema_change

ROW_COUNT = "row_count"
MANIFEST = "manifest"
COLUMN_SCHEMA = "column_schema_change"

_DESCRIPTIONS = {
    ROW_COUNT: "The rows the partition's manifest lists equal the rows SQL Server reported for the same read "
    "(ROWCOUNT_BIG()), less the rows left out on purpose: update before-images a change window does not "
    "write, and rows a filter_rows transform drops after the read.",
    MANIFEST: "The partition's manifest exists where readers look, is this partition's, and lists files that "
    "exist with their sizes (Parquet: footers read with the listed rows).",
    COLUMN_SCHEMA: "The columns written (names and SQL Server types) are those of the previous partition; "
    "a change warns (schema_drift: evolve) or fails (schema_drift: fail).",
}


STEP_CHECKS = (ROW_COUNT, MANIFEST, COLUMN_SCHEMA)


def step_check_specs(asset_keys: Iterable[dg.AssetKey], names: Iterable[str] = STEP_CHECKS) -> list[dg.AssetCheckSpec]:
    """The checks every table asset carries, declared on its step (the task's ``step_checks``).

    They are blocking: a load they fail (a short read, a schema change that stopped it, a
    manifest that does not verify) is re-checked by "re-execute from asset failure", which
    re-runs the failed blocking checks of an asset with it. A failed non-blocking check counts
    as executed there, so the reloaded table would keep the earlier failure, unchecked. (A
    step whose blocking check fails also fails; a failed check means a failed load anyway.)
    """
    wanted = set(names)
    return [
        dg.AssetCheckSpec(name, asset=key, description=_DESCRIPTIONS[name], blocking=True)
        for key in asset_keys
        for name in STEP_CHECKS
        if name in wanted
    ]


def step_check_keys(asset_keys: Iterable[dg.AssetKey], names: Iterable[str] = STEP_CHECKS) -> list[dg.AssetCheckKey]:
    return [spec.key for spec in step_check_specs(asset_keys, names)]


def _result(
    key: dg.AssetKey,
    name: str,
    passed: bool,
    description: str,
    metadata: Mapping[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=passed,
        description=description,
        metadata=dict(metadata),
        severity=severity,
    )


def row_count_result(
    key: dg.AssetKey, *, partition: str, written: int, sent: int | None, left_out: int = 0, changes: bool = False
) -> dg.AssetCheckResult:
    """Rows in the destination vs. rows SQL Server sent (less the rows left out on purpose: the
    filtered rows, and in a change window (``changes``) the update before-images too)."""
    metadata: dict[str, Any] = {"partition": partition, "rows_written": written}
    if sent is None:
        return _result(
            key,
            ROW_COUNT,
            False,
            f"partition {partition}: SQL Server's row count of the read was "
            "not recorded, so the rows written cannot be compared",
            metadata,
        )
    expected = sent - left_out
    metadata.update(rows_sent_by_sql_server=sent, rows_expected=expected)
    if left_out:
        metadata["rows_left_out"] = left_out
    passed = written == expected
    text = f"partition {partition}: {written:,} rows written, SQL Server sent {sent:,}" + (
        f" ({left_out:,} left out on purpose: {'update before-images, filtered rows' if changes else 'filtered rows'})"
        if left_out
        else ""
    )
    return _result(key, ROW_COUNT, passed, text if passed else text + f"; {expected:,} expected", metadata)


def incomplete_read_result(
    key: dg.AssetKey, *, partition: str, count: SourceCount, error: IncompleteRead
) -> dg.AssetCheckResult:
    """A read that ended before SQL Server's count: nothing was written (the previous manifest stays)."""
    metadata: dict[str, Any] = {"partition": partition, "rows_received": count.received}
    if count.sent is not None:
        metadata["rows_sent_by_sql_server"] = count.sent
    return _result(
        key, ROW_COUNT, False, f"partition {partition}: {error}. Nothing was written for this load.", metadata
    )


def manifest_result(
    key: dg.AssetKey, *, partition: str | None, verify: Callable[[], Mapping[str, Any]]
) -> dg.AssetCheckResult:
    """Run the destination's verification; its error is the failure's description."""
    try:
        found = verify()
    except (OSError, ValueError, RuntimeError) as exc:  # ManifestNotFoundError, ManifestError, verification
        return _result(key, MANIFEST, False, str(exc), {"partition": partition or ""})
    manifest = str(found.get("manifest", ""))
    metadata: dict[str, Any] = {
        "partition": partition or "",
        "files": int(found.get("files", 0)),
        "rows": int(found.get("rows", 0)),
    }
    if manifest:
        metadata["manifest"] = dg.MetadataValue.url(manifest) if manifest.startswith("s3://") else manifest
    return _result(
        key,
        MANIFEST,
        True,
        f"partition {partition}: manifest and its {metadata['files']} file(s) are readable",
        metadata,
    )


def column_schema_result(
    key: dg.AssetKey,
    *,
    partition: str,
    previous: Mapping[str, str] | None,
    current: Mapping[str, str],
    failed: bool = False,
) -> dg.AssetCheckResult:
    """The columns of this partition vs. the previous partition's (by SQL Server type)."""
    metadata: dict[str, Any] = {"partition": partition, "columns": len(current)}
    if previous is None:
        return _result(
            key, COLUMN_SCHEMA, True, f"partition {partition}: no previous partition to compare with", metadata
        )
    change = schema_change(previous, current)
    if not change:
        return _result(
            key, COLUMN_SCHEMA, True, f"partition {partition}: columns unchanged since the previous partition", metadata
        )
    metadata.update(change.as_dict())
    severity = dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN
    verb = "stopped the load (schema_drift: fail)" if failed else "were written"
    return _result(
        key,
        COLUMN_SCHEMA,
        False,
        f"partition {partition}: columns changed since the previous "
        f"partition ({change.describe(previous, current)}); the changes {verb}",
        metadata,
        severity,
    )


def failed_load_results(
    key: dg.AssetKey, *, partition: str, count: SourceCount | None, error: BaseException, selected: set[str]
) -> list[dg.AssetCheckResult]:
    """Check results a failed load still has to tell: a short read, or a schema change that stopped it."""
    results = []
    if ROW_COUNT in selected and isinstance(error, IncompleteRead) and count is not None:
        results.append(incomplete_read_result(key, partition=partition, count=count, error=error))
    if COLUMN_SCHEMA in selected and isinstance(error, SchemaDriftError):
        results.append(
            column_schema_result(key, partition=partition, previous=error.previous, current=error.current, failed=True)
        )
    return results


def metadata_value(value: Any) -> Any:
    """A metadata entry's value (a MetadataValue's, or the plain value as stored), None when absent."""
    return getattr(value, "value", value)


def _int(value: Any) -> int | None:
    """A metadata entry's number (MetadataValue or plain), None when absent."""
    value = metadata_value(value)
    return None if value is None else int(value)


def recheck_results(
    key: dg.AssetKey,
    checks: set[str],
    *,
    partition: str,
    metadata: Mapping[str, Any],
    verify: Callable[[], Mapping[str, Any]],
    previous: Callable[[], Mapping[str, str] | None],
) -> list[dg.AssetCheckResult]:
    """The step checks of an earlier load, evaluated again from the destination and its recorded metadata."""
    results = []
    if checks & {MANIFEST, ROW_COUNT}:
        verified = manifest_result(key, partition=partition, verify=verify)
        if MANIFEST in checks:
            results.append(verified)
        if ROW_COUNT in checks and not verified.passed:
            results.append(
                _result(
                    key,
                    ROW_COUNT,
                    False,
                    f"partition {partition}: the destination's rows cannot be counted: {verified.description}",
                    {"partition": partition},
                )
            )
        elif ROW_COUNT in checks:
            results.append(
                row_count_result(
                    key,
                    partition=partition,
                    written=_int(verified.metadata["rows"]) or 0,
                    sent=_int(metadata.get("dtaas/source_rows")),
                    left_out=_int(metadata.get("dtaas/source_rows_left_out")) or 0,
                    changes=metadata_value(metadata.get("dtaas/kind")) == "cdc",
                )
            )
    if COLUMN_SCHEMA in checks:
        types = getattr(metadata.get("dtaas/source_types"), "value", None) or {}
        results.append(
            column_schema_result(
                key, partition=partition, previous=previous(), current={str(k): str(v) for k, v in dict(types).items()}
            )
        )
    return results


Verify = Callable[..., Mapping[str, Any]]  # the destination's verify_partition(asset_key=, partition_key=)
PreviousTypes = Callable[[dg.AssetExecutionContext, dg.AssetKey, str], "Mapping[str, str] | None"]


def selected_checks(context: dg.AssetExecutionContext, key: dg.AssetKey) -> set[str]:
    """The names of the checks of ``key`` this step must evaluate."""
    return {check.name for check in context.selected_asset_check_keys if check.asset_key == key}


def load_check_results(
    key: dg.AssetKey,
    checks: set[str],
    *,
    partition: str,
    stream: TableStream,
    written: Mapping[str, Any],
    previous: Mapping[str, str] | None,
    verify: Verify,
) -> list[dg.AssetCheckResult]:
    """The step checks of a table just loaded (``written``: the load's materialization metadata)."""
    results = []
    if ROW_COUNT in checks:
        count = stream.source_count
        results.append(
            row_count_result(
                key,
                partition=partition,
                written=_int(written.get("dagster/row_count")) or 0,
                sent=count.sent,
                left_out=count.dropped,
                changes=stream.kind == "cdc",
            )
        )
    if MANIFEST in checks:
        results.append(
            manifest_result(
                key, partition=partition, verify=functools.partial(verify, asset_key=key, partition_key=partition)
            )
        )
    if COLUMN_SCHEMA in checks:
        results.append(column_schema_result(key, partition=partition, previous=previous, current=stream.source_types))
    return results


def recheck(
    context: dg.AssetExecutionContext, specs: Sequence[TableSpec], verify: Verify, previous: PreviousTypes
) -> Iterator[dg.AssetCheckResult]:
    """Checks run without their table's load: for the run's partition, else the newest loaded one."""
    for spec in specs:
        checks = selected_checks(context, spec.asset_key)
        if not checks:
            continue
        partitions = [context.partition_key] if context.has_partition_key else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=spec.asset_key, asset_partitions=partitions), limit=1
        ).records
        event = records[0].asset_materialization if records else None
        if event is None or event.partition is None:
            context.log.info(
                f"{spec.qualified}: no loaded partition to check"
                f"{' (' + context.partition_key + ')' if context.has_partition_key else ''}"
            )
            continue
        partition = str(event.partition)
        yield from recheck_results(
            spec.asset_key,
            checks,
            partition=partition,
            metadata=event.metadata,
            verify=functools.partial(verify, asset_key=spec.asset_key, partition_key=partition),
            previous=functools.partial(previous, context, spec.asset_key, partition),
        )


__all__ = [
    "COLUMN_SCHEMA",
    "MANIFEST",
    "ROW_COUNT",
    "column_schema_result",
    "failed_load_results",
    "load_check_results",
    "manifest_result",
    "recheck",
    "recheck_results",
    "row_count_result",
    "selected_checks",
    "step_check_keys",
    "step_check_specs",
]
