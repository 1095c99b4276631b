"""The Snowflake destination's pure parts: names, types, drift, statement text, LSN rules, spooling, config.

The statements real Snowflake needs and fakesnow lacks (REMOVE, and COPY's
real options) are checked here as text; the rest also runs against fakesnow
in test_snowflake_io_manager.py, test_snowflake_merge.py and test_snowflake_load.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dtaas_dagster.config import ConfigError, parse_config
from dtaas_dagster.destinations.snowflake import loads, sql
from dtaas_dagster.destinations.snowflake.connection import ConnectionSettings, SnowflakeConfigError, resource_arguments
from dtaas_dagster.destinations.snowflake.load import (
    LsnWindow,
    OlderSnapshotError,
    WindowGapError,
    change_window,
    check_snapshot_order,
    decide_window,
    lsn_after,
    plan_columns,
    snapshot_next_lsn,
)
from dtaas_dagster.destinations.snowflake.names import (
    SnowflakeNameError,
    TableName,
    display,
    object_slug,
    quote,
    render_target,
    target_columns,
)
from dtaas_dagster.destinations.snowflake.session import SnowflakePermanentError, SnowflakeStatementError, translate
from dtaas_dagster.destinations.snowflake.spool import Column, ParquetSpool
from dtaas_dagster.destinations.snowflake.state import TableState
from dtaas_dagster.destinations.snowflake.types import SnowflakeType, plan_drift, snowflake_type
from dtaas_dagster.errors import PermanentLoadError
from dtaas_dagster.stream import TableRef, TableStream
from dtaas_dagster_tests.all_types import ALL_TYPES, expected_all_types

T = TableName("RAW", "SALES", "ORDERS")


# --------------------------------------------------------------------------- names


def test_identifiers_are_quoted_and_embedded_quotes_doubled() -> None:
    assert quote("ORDERS") == '"ORDERS"'
    assert quote('we"ird name') == '"we""ird name"'
    assert T.sql == '"RAW"."SALES"."ORDERS"'
    assert display("ORDERS") == "ORDERS" and display("Order Lines") == '"Order Lines"'


@pytest.mark.parametrize("bad", ["", "   ", "x" * 256, "tab\there", "nul\x00"])
def test_names_snowflake_cannot_hold_are_refused(bad: str) -> None:
    with pytest.raises(SnowflakeNameError):
        quote(bad)


def test_target_names_come_from_templates_under_the_case_policy() -> None:
    variables = {"sourceSchemaName": "dbo", "sourceTableName": "Order Lines", "ETLCustomerId": "42"}
    upper = render_target(
        database="RAW_$ETLCustomerId",
        schema="$sourceSchemaName",
        table="$sourceTableName",
        variables=variables,
        case="upper",
    )
    assert upper == TableName("RAW_42", "DBO", "ORDER LINES")
    assert upper.sql == '"RAW_42"."DBO"."ORDER LINES"'
    preserve = render_target(
        database="raw", schema="$sourceSchemaName", table="$sourceTableName", variables=variables, case="preserve"
    )
    assert preserve == TableName("raw", "dbo", "Order Lines")
    with pytest.raises(SnowflakeNameError, match=r"\$missing"):
        render_target(database="RAW", schema="$missing", table="t", variables=variables, case="upper")


def test_columns_that_collide_under_upper_case_are_refused_with_the_fix() -> None:
    assert target_columns(["id", "Name"], case="upper") == {"id": "ID", "Name": "NAME"}
    with pytest.raises(SnowflakeNameError, match="identifier_case: preserve"):
        target_columns(["name", "Name"], case="upper")
    assert target_columns(["name", "Name"], case="preserve") == {"name": "name", "Name": "Name"}
    with pytest.raises(SnowflakeNameError, match="reserves"):
        target_columns(["_dtaas_op"], case="upper", reserved=sql.CHANGE_COLUMNS)


def test_object_slugs_are_safe_readable_and_distinct() -> None:
    a = object_slug(TableName("RAW", "SALES", "Order Lines; DROP TABLE x"))
    b = object_slug(TableName("RAW", "SALES2", "Order Lines; DROP TABLE x"))
    assert a.startswith("order_lines_drop_table_x_") and a != b
    assert sql.SAFE_STAGE_PATH.match(a)


# --------------------------------------------------------------------------- types and drift

EXPECTED_SNOWFLAKE = {
    "c_tinyint": "NUMBER(3,0)",
    "c_smallint": "NUMBER(5,0)",
    "c_int": "NUMBER(10,0)",
    "c_bigint": "NUMBER(19,0)",
    "c_bit": "BOOLEAN",
    "c_real": "FLOAT",
    "c_float": "FLOAT",
    "c_decimal": "NUMBER(38,10)",
    "c_numeric": "NUMBER(18,2)",
    "c_money": "NUMBER(19,4)",
    "c_smallmoney": "NUMBER(10,4)",
    "c_smalldatetime": "TIMESTAMP_NTZ(9)",
    "c_char": "VARCHAR(5)",
    "c_varchar": "VARCHAR(20)",
    "c_nchar": "VARCHAR(3)",
    "c_nvarchar": "VARCHAR(50)",
    "c_nvarchar_max": "VARCHAR",
    "c_varchar_max": "VARCHAR",
    "c_binary": "BINARY",
    "c_varbinary": "BINARY",
    "c_varbinary_max": "BINARY",
    "c_date": "DATE",
    "c_time": "TIME(9)",
    "c_datetime": "TIMESTAMP_NTZ(9)",
    "c_datetime2_3": "TIMESTAMP_NTZ(9)",
    "c_datetime2_7": "TIMESTAMP_NTZ(9)",
    "c_sentinel_us": "TIMESTAMP_NTZ(9)",
    "c_sentinel_text": "VARCHAR",
    "c_dto": "TIMESTAMP_TZ(9)",
    "c_guid": "VARCHAR(36)",
}


def test_every_sql_server_type_has_its_documented_snowflake_type() -> None:
    got = {name: snowflake_type(arrow, sql_type).sql for name, sql_type, _a, _b, arrow, _v in ALL_TYPES}
    assert got == EXPECTED_SNOWFLAKE
    docs = (Path(__file__).resolve().parents[2] / "docs" / "snowflake.md").read_text()
    for sql_type in ("decimal(p,s)", "datetime2(n)", "datetimeoffset(n)", "uniqueidentifier", "TIMESTAMP_NTZ(9)"):
        assert sql_type in docs, sql_type


def test_a_type_without_exact_home_is_refused_naming_the_column() -> None:
    with pytest.raises(Exception, match="'tags'"):
        snowflake_type(pa.list_(pa.string()), None, column="tags")


def test_drift_sees_new_widened_incompatible_and_missing_columns() -> None:
    existing = {
        "ID": SnowflakeType("NUMBER", precision=10, scale=0),
        "NAME": SnowflakeType("VARCHAR", length=20),
        "PRICE": SnowflakeType("NUMBER", precision=9, scale=2),
        "CODE": SnowflakeType("VARCHAR", length=5),
        "OLD": SnowflakeType("DATE"),
        "_DTAAS_DELETED": SnowflakeType("BOOLEAN"),
    }
    wanted = [
        ("ID", SnowflakeType("NUMBER", precision=19, scale=0)),
        ("NAME", SnowflakeType("VARCHAR", length=10)),
        ("PRICE", SnowflakeType("NUMBER", precision=9, scale=4)),
        ("CODE", SnowflakeType("NUMBER", precision=3, scale=0)),
        ("NEW", SnowflakeType("BOOLEAN")),
    ]
    drift = plan_drift(existing, wanted, system_columns=frozenset({"_DTAAS_DELETED"}))
    assert drift.added == (("NEW", SnowflakeType("BOOLEAN")),)
    assert [str(c) for c in drift.widened] == ["ID: NUMBER(10,0) -> NUMBER(19,0)"]
    assert [str(c) for c in drift.incompatible] == [
        "PRICE: NUMBER(9,2) -> NUMBER(9,4)",
        "CODE: VARCHAR(5) -> NUMBER(3,0)",
    ]
    assert drift.missing == ("OLD",)
    assert not plan_drift({"N": SnowflakeType("VARCHAR")}, [("N", SnowflakeType("VARCHAR", length=9))]).any


# --------------------------------------------------------------------------- statements


def test_put_and_copy_keep_parquet_uncompressed_and_load_by_name() -> None:
    put = sql.put_file("/tmp/dtaas-sf-x/part-00001.parquet", T.sibling("_DTAAS_STAGE"), "orders_ab12cd34/run_a0_ff")
    assert put.sql == (
        "PUT 'file:///tmp/dtaas-sf-x/part-00001.parquet' "
        '@"RAW"."SALES"."_DTAAS_STAGE"/orders_ab12cd34/run_a0_ff/ AUTO_COMPRESS = FALSE OVERWRITE = TRUE'
    )
    copy = sql.copy_into(T.sibling("_DTAAS_STG_X"), T.sibling("_DTAAS_STAGE"), "orders_ab12cd34/run_a0_ff")
    for part in (
        'COPY INTO "RAW"."SALES"."_DTAAS_STG_X" FROM @"RAW"."SALES"."_DTAAS_STAGE"/orders_ab12cd34/run_a0_ff/',
        "TYPE = PARQUET",
        "USE_LOGICAL_TYPE = TRUE",
        "BINARY_AS_TEXT = FALSE",
        "MATCH_BY_COLUMN_NAME = CASE_SENSITIVE",
        "ON_ERROR = ABORT_STATEMENT",
        "PURGE = TRUE",
    ):
        assert part in copy.sql, part


def test_remove_is_the_real_snowflake_statement_fakesnow_lacks() -> None:
    statement = sql.remove_stage_path(T.sibling("_DTAAS_STAGE"), "orders_ab12cd34/run_a0_ff")
    assert statement.sql == 'REMOVE @"RAW"."SALES"."_DTAAS_STAGE"/orders_ab12cd34/run_a0_ff/'


@pytest.mark.parametrize("path", ["/tmp/x y/p.parquet", "/tmp/x'; DROP/p.parquet", "/tmp/../etc/p"])
def test_local_paths_outside_the_safe_alphabet_never_reach_sql(path: str) -> None:
    with pytest.raises(ValueError, match="bug"):
        sql.put_file(path, T.sibling("S"), "a/b")


def test_stage_paths_are_dtaas_tokens_only() -> None:
    for path in ("A/b", "a/../b", "a b", "a'"):
        with pytest.raises(ValueError):
            sql.stage_ref(T.sibling("S"), path)


def test_values_are_bound_never_formatted() -> None:
    like = sql.tables_like(T, "_DTAAS_STG_ORDERS_AB_")
    assert like.params == ("SALES", "\\_DTAAS\\_STG\\_ORDERS\\_AB\\_%") and "SALES" not in like.sql
    columns = sql.table_columns(TableName("RAW", "it's", "x"))
    assert "it's" not in columns.sql and columns.params == ("it's", "x")


def test_replace_is_delete_and_insert_so_the_control_row_can_join_the_transaction() -> None:
    assert sql.delete_all(T).sql == 'DELETE FROM "RAW"."SALES"."ORDERS"'
    insert = sql.insert_from_staging(T, T.sibling("STG"), ["ID", "NAME"], soft_delete=True)
    assert insert.sql == (
        'INSERT INTO "RAW"."SALES"."ORDERS" ("ID", "NAME", "_DTAAS_DELETED", "_DTAAS_DELETED_AT") '
        'SELECT "ID", "NAME", FALSE, NULL FROM "RAW"."SALES"."STG"'
    )


def test_merge_takes_the_newest_change_per_key_and_applies_deletes() -> None:
    hard = sql.merge_changes(T, T.sibling("STG"), ["ID", "NAME"], ["ID"], soft_delete=False).sql
    assert "\"_DTAAS_OP\" IN ('insert', 'update', 'delete') AND \"_DTAAS_LSN\" >= ?" in hard
    assert (
        'PARTITION BY "ID" ORDER BY "_DTAAS_LSN" DESC, "_DTAAS_SEQVAL" DESC, '
        "CASE \"_DTAAS_OP\" WHEN 'delete' THEN 1 WHEN 'insert' THEN 2 ELSE 4 END DESC) = 1"
    ) in hard
    assert "WHEN MATCHED AND s.\"_DTAAS_OP\" = 'delete' THEN DELETE" in hard
    assert 'WHEN MATCHED THEN UPDATE SET t."NAME" = s."NAME"' in hard
    assert 'WHEN NOT MATCHED AND s."_DTAAS_OP" <> \'delete\' THEN INSERT ("ID", "NAME")' in hard
    soft = sql.merge_changes(T, T.sibling("STG"), ["ID", "NAME"], ["ID"], soft_delete=True).sql
    assert 'THEN UPDATE SET t."_DTAAS_DELETED" = TRUE, t."_DTAAS_DELETED_AT" = s."_DTAAS_COMMIT_TIME"' in soft
    assert "THEN DELETE" not in soft


def test_delete_insert_applies_the_same_newest_changes_as_plain_dml() -> None:
    hard = [st.sql for st in sql.delete_insert_changes(T, T.sibling("STG"), ["ID", "NAME"], ["ID"], soft_delete=False)]
    newest = sql.newest_changes(T.sibling("STG"), ["ID", "NAME"], ["ID"])
    assert hard == [
        f'DELETE FROM "RAW"."SALES"."ORDERS" AS t USING {newest} AS s WHERE t."ID" = s."ID"',
        f'INSERT INTO "RAW"."SALES"."ORDERS" ("ID", "NAME") SELECT s."ID", s."NAME" FROM {newest} AS s '
        "WHERE s.\"_DTAAS_OP\" <> 'delete'",
    ]
    soft = sql.delete_insert_changes(T, T.sibling("STG"), ["ID", "NAME"], ["ID"], soft_delete=True)
    assert [st.name for st in soft] == ["FLAG_DELETED", "DELETE_CHANGED", "INSERT_CHANGED"]
    assert all(st.sql.count("?") == 1 for st in soft)


def test_connector_errors_become_permanent_or_retryable() -> None:
    class Fake(Exception):
        def __init__(self, errno: int, msg: str) -> None:
            super().__init__(msg)
            self.errno, self.msg = errno, msg

    permanent = translate(Fake(2003, "Object 'X' does not exist or not authorized."), what="COPY_INTO on T")
    assert isinstance(permanent, SnowflakePermanentError) and "grants" in str(permanent)
    transient = translate(Fake(630, "Statement reached its statement or warehouse timeout"), what="MERGE")
    assert isinstance(transient, SnowflakeStatementError) and "000630" in str(transient)


# --------------------------------------------------------------------------- LSN rules

A, B, C, D = (format(n, "020x") for n in (0x100, 0x1FF, 0x200, 0x300))


def _state(next_lsn: str | None, applied: str | None = None, snapshot: str | None = None) -> TableState:
    return TableState('"RAW"."SALES"."ORDERS"', snapshot_partition=snapshot, applied_lsn=applied, next_lsn=next_lsn)


def test_lsns_are_20_hex_digits_and_increment_like_sql_server() -> None:
    assert lsn_after("0000002a000001f00003") == "0000002a000001f00004"
    assert lsn_after("000000000000000000ff") == "00000000000000000100"
    with pytest.raises(Exception, match="20 lower-case hex"):
        lsn_after("0x2A")


def test_windows_apply_skip_or_refuse_by_the_control_row() -> None:
    first, _ = decide_window(None, LsnWindow(A, B), partition="p1", target="T")
    assert first == A
    # contiguous: starts exactly at the next LSN
    assert decide_window(_state(C, B), LsnWindow(C, D), partition="p2", target="T")[0] == C
    # overlapping (a snapshot's start inside the window): only the changes from the next LSN
    assert decide_window(_state(C), LsnWindow(A, D), partition="p2", target="T")[0] == C
    # at or below what is applied: skipped, with the reason
    skipped, reason = decide_window(_state(C, B), LsnWindow(A, B), partition="p1", target="T")
    assert skipped is None and "at or below the applied LSN" in reason
    # a gap: refused, naming both LSNs
    with pytest.raises(WindowGapError) as info:
        decide_window(_state(B, A), LsnWindow(D, D), partition="p3", target="T")
    assert D in str(info.value) and B in str(info.value) and A in str(info.value)


def test_an_older_snapshot_is_refused_and_the_same_or_newer_one_allowed() -> None:
    loaded = _state(None, snapshot="2026-12-02T021503Z-full-r3f9a1c")
    check_snapshot_order(loaded, "2026-12-02T021503Z-full-r3f9a1c", target="T", task="t")
    check_snapshot_order(loaded, "2026-12-03T000000Z-full-sched", target="T", task="t")
    with pytest.raises(OlderSnapshotError, match="t_full_load"):
        check_snapshot_order(loaded, "2026-12-01T000000Z-full-sched", target="T", task="t")


def test_change_streams_need_the_change_columns() -> None:
    schema = pa.schema([("id", pa.int32()), ("_dtaas_op", pa.string())])
    stream = TableStream(TableRef("d", "dbo", "t"), schema, iter(()), "p", kind="cdc", cdc={"from_lsn": A, "to_lsn": B})
    with pytest.raises(Exception, match="_dtaas_lsn, _dtaas_seqval, _dtaas_commit_time"):
        plan_columns(stream, "upper")


def test_the_snapshot_that_starts_cdc_hands_over_at_the_lsn_after_its_start() -> None:
    """docs/cdc.md: CDC continues right after the snapshot's start_lsn; the sensor's first window starts there."""
    schema = pa.schema([("id", pa.int32())])
    starts_cdc = TableStream(
        TableRef("d", "dbo", "t"),
        schema,
        iter(()),
        "p",
        cdc={"start_lsn": "0000002a000001f00003", "capture_instance": "dbo_t"},
    )
    assert snapshot_next_lsn(starts_cdc) == "0000002a000001f00004"
    assert change_window(starts_cdc) is None
    assert snapshot_next_lsn(TableStream(TableRef("d", "dbo", "t"), schema, iter(()), "p")) is None  # full_load
    window = TableStream(
        TableRef("d", "dbo", "t"),
        schema,
        iter(()),
        "p",
        kind="cdc",
        cdc={"capture_instance": "dbo_t", "from_lsn": A, "to_lsn": B},
    )
    assert change_window(window) == LsnWindow(A, B) and snapshot_next_lsn(window) is None
    no_window = TableStream(TableRef("d", "dbo", "t"), schema, iter(()), "p9", kind="cdc", cdc={"from_lsn": A})
    with pytest.raises(PermanentLoadError, match="partition p9 of d.dbo.t has no to_lsn"):
        change_window(no_window)


def test_the_load_log_row_is_bound_values_into_a_quoted_table() -> None:
    recorded: list[sql.Statement] = []

    class Recorder:
        def run(self, statement: sql.Statement) -> None:
            recorded.append(statement)

    log_table = TableName("RAW", "SALES", "_DTAAS_STATE_LOADS")
    loads.record(
        Recorder(),
        log_table,
        loads.LoadRecord(  # type: ignore[arg-type]
            target='"RAW"."SALES"."ORDERS"',
            partition_key="k'; DROP TABLE x",
            kind="changes",
            rows=3,
            files=1,
            from_lsn=A,
            to_lsn=B,
            applied=False,
            load_id="l",
            run_id="r",
        ),
    )
    [statement] = recorded
    assert statement.sql.startswith('INSERT INTO "RAW"."SALES"."_DTAAS_STATE_LOADS" (')
    assert "DROP" not in statement.sql and statement.params[1] == "k'; DROP TABLE x" and statement.params[7] is False
    assert loads.create_statement(log_table).sql.startswith(
        'CREATE TABLE IF NOT EXISTS "RAW"."SALES"."_DTAAS_STATE_LOADS"'
    )


# --------------------------------------------------------------------------- spooling


def test_spool_writes_exact_parquet_files_split_by_rows(tmp_path: Path) -> None:
    table = expected_all_types()
    columns = [Column(f.name, f.name.upper(), f.type) for f in table.schema]
    spool = ParquetSpool(str(tmp_path), columns, max_rows=2, max_bytes=None, row_group_rows=1)
    files = list(spool.files(iter(table.to_batches(max_chunksize=1))))
    assert [f.rows for f in files] == [2, 1] and spool.rows == 3
    back = pa.concat_tables([pq.read_table(f.path) for f in files])
    assert back.column_names == [c.upper() for c in table.column_names]
    assert back.schema.field("C_TINYINT").type == pa.int16()  # unsigned -> the signed type one size up
    for name in table.column_names:
        want = table.column(name).cast(back.schema.field(name.upper()).type)
        assert back.column(name.upper()).equals(want), name  # exact, 100 ns digits included


def test_spool_holds_one_file_at_a_time(tmp_path: Path) -> None:
    batches = (pa.record_batch({"n": pa.array(range(i * 1000, (i + 1) * 1000), pa.int64())}) for i in range(20))
    spool = ParquetSpool(str(tmp_path), [Column("n", "N", pa.int64())], max_rows=3000, max_bytes=None)
    on_disk = []
    for spooled in spool.files(batches):
        on_disk.append(len(os.listdir(tmp_path)))
        os.remove(spooled.path)
    assert on_disk == [1] * 7 and spool.rows == 20_000


# --------------------------------------------------------------------------- config and connection

BASE: dict[str, Any] = {
    "sources": {"s": {"host": "db", "database": "sales", "user": "u", "password_env": "PW"}},
    "destinations": {
        "wh": {
            "type": "snowflake",
            "account": "myorg-acct",
            "user": "LOADER",
            "password_env": "SF_PW",
            "database": "RAW",
            "schema": "$sourceSchemaName",
        }
    },
    "tasks": {"t": {"source": "s", "destination": "wh", "tables": ["dbo.orders"]}},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return data


def test_a_snowflake_destination_parses_with_its_defaults() -> None:
    destination = parse_config(BASE).destinations["wh"]
    assert destination.asset_kind == "snowflake" and destination.table == "$sourceTableShortName"
    assert destination.identifier_case == "upper" and destination.delete_mode == "hard"
    assert parse_config(BASE).tasks["t"].schema_drift == "evolve"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("destinations.wh.password_env", None, "give exactly one of password_env, private_key_file, private_key_env"),
        ("destinations.wh.private_key_env", "SF_KEY", "give exactly one of"),
        ("destinations.wh.password", "hunter2", "a secret must not be written in the config"),
        (
            "destinations.wh.schema",
            "$sourceSchemaNmae",
            "unknown variable $sourceSchemaNmae; did you mean 'sourceSchemaName'?",
        ),
        ("destinations.wh.account", "https://x.snowflakecomputing.com", "not a URL"),
        ("destinations.wh.connection_args", {"password": "x"}, "is set by a typed field or is a secret"),
        ("destinations.wh.protocol", "ftp", "must be one of 'https' or 'http' (got 'ftp')"),
        ("tasks.t.schema_drift", "merge", "must be one of 'evolve', 'fail' or 'ignore' (got 'merge')"),
    ],
)
def test_bad_snowflake_config_names_the_field_and_fix(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(path, value), source="t.yaml")
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_secrets_are_read_from_the_named_variables_at_connect_time(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ConnectionSettings(
        account="a",
        user="u",
        password_env="DTAAS_UNIT_SF_PW",
        host="127.0.0.1",
        port=8080,
        protocol="http",
        connection_args={"login_timeout": 5},
    )
    with pytest.raises(SnowflakeConfigError, match="DTAAS_UNIT_SF_PW"):
        resource_arguments(settings)
    monkeypatch.setenv("DTAAS_UNIT_SF_PW", "s3cret")
    args = resource_arguments(settings)
    assert args["password"] == "s3cret" and args["paramstyle"] == "qmark" and args["autocommit"] is True
    assert args["additional_snowflake_connection_args"] == {
        "host": "127.0.0.1",
        "port": 8080,
        "protocol": "http",
        "login_timeout": 5,
    }
    assert "s3cret" not in repr(settings)


def test_a_snowflake_task_gets_its_io_manager_and_kind_without_importing_the_connector(tmp_path: Path) -> None:
    """A code location with a Snowflake task loads without dagster_snowflake (7 s, 270 MB per process)."""
    import subprocess

    import yaml

    path = tmp_path / "dtaas.yaml"
    path.write_text(yaml.safe_dump(BASE))
    code = (
        "import sys; from dtaas_dagster.config import load_config; from dtaas_dagster.factory import "
        "build_definitions; d = build_definitions(load_config(sys.argv[1])); "
        "g = d.resolve_asset_graph(); key = next(iter(g.get_all_asset_keys())); "
        "print(sorted(g.get(key).kinds)); print(type(d.resources['io_t']).__name__); "
        "print(sorted(m for m in sys.modules if m.startswith(('dagster_snowflake', 'snowflake.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kinds, io_manager, imported = done.stdout.strip().splitlines()[-3:]
    assert kinds == "['snowflake', 'sqlserver']" and io_manager == "SnowflakeIOManager"
    assert imported == "[]"
