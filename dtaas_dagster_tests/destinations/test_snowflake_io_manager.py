"""The Snowflake IO manager's snapshots against a real Snowflake process (fakesnow's server, or an account).

Streams are built from Arrow tables; ``write_stream`` is what a table step
calls. The end-to-end runs through Dagster are in test_snowflake_load.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster.destinations.snowflake.connection import SnowflakeConfigError
from dtaas_dagster.destinations.snowflake.load import OlderSnapshotError
from dtaas_dagster.destinations.snowflake.names import SnowflakeNameError
from dtaas_dagster.destinations.snowflake.session import SnowflakeStatementError
from dtaas_dagster.destinations.snowflake.tables import SchemaDriftError
from dtaas_dagster_tests.destinations.snowflake_samples import (
    SNAPSHOT_1,
    SNAPSHOT_2,
    control_row,
    manager,
    orders,
    read,
    rows,
    snapshot,
    write,
)
from dtaas_dagster_tests.snowflake_fixtures import SnowflakeSchema, SnowflakeTarget

# Each load opens a connector session to a real server process: seconds each, more on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

V1 = [(i, f"name {i}", i * 10) for i in range(1, 31)]
V2 = [(i, f"renamed {i}", i * 20) for i in range(5, 41)]


def test_a_snapshot_creates_the_table_and_a_newer_one_replaces_it_exactly(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema, task={"file_size": {"rows": 8}})
    first = write(io, snapshot(orders(V1), SNAPSHOT_1))
    assert first["dagster/row_count"] == 30 and first["files"] == 4 and first["table_created"] is True
    assert first["dagster/table_name"] == f"{snowflake_schema.database}.{snowflake_schema.schema}.ORDERS"
    assert {"put_s", "copy_s", "replace_s"} <= set(first)
    assert rows(read(io, snowflake_schema)) == sorted(V1)
    keys = snowflake_schema.query(f'SHOW PRIMARY KEYS IN TABLE "{snowflake_schema.schema}"."ORDERS"')
    assert [k[4] for k in keys if k[2] == snowflake_schema.schema] == ["ID"]

    second = write(io, snapshot(orders(V2), SNAPSHOT_2), run_id="run00002")
    assert second["dagster/row_count"] == 36 and "table_created" not in second
    assert rows(read(io, snowflake_schema)) == sorted(V2)  # replaced: no row of V1 left, none twice
    assert control_row(snowflake_schema)["SNAPSHOT_PARTITION"] == SNAPSHOT_2
    # nothing staged is left behind
    assert snowflake_schema.tables() == ["ORDERS", "_DTAAS_STATE", "_DTAAS_STATE_LOADS"]
    assert snowflake_schema.stage_files() == []


def test_a_missing_schema_is_created_from_the_template(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(
        snowflake_schema, schema=f"{snowflake_schema.schema}_$sourceSchemaName", table="T_$sourceTableShortName"
    )
    created = f"{snowflake_schema.schema}_DBO"
    try:
        metadata = write(io, snapshot(orders(V1[:3]), SNAPSHOT_1))
        assert metadata["dagster/table_name"] == f"{snowflake_schema.database}.{created}.T_ORDERS"
        assert snowflake_schema.query(f'SELECT COUNT(*) FROM "{created}"."T_ORDERS"') == [(3,)]
    finally:
        if not snowflake_schema.target.is_fake:
            snowflake_schema.query(f'DROP SCHEMA IF EXISTS "{snowflake_schema.database}"."{created}" CASCADE')


def test_an_older_snapshot_is_refused_and_the_table_keeps_the_newer_data(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    write(io, snapshot(orders(V2), SNAPSHOT_2))
    with pytest.raises(OlderSnapshotError) as info:
        write(io, snapshot(orders(V1), SNAPSHOT_1), run_id="run00002")
    assert SNAPSHOT_1 in str(info.value) and SNAPSHOT_2 in str(info.value) and "t_full_load" in str(info.value)
    assert rows(read(io, snowflake_schema)) == sorted(V2)
    # the same (newest) partition may be re-run: it replaces the table with what it reads now
    write(io, snapshot(orders(V1), SNAPSHOT_2), run_id="run00003")
    assert rows(read(io, snowflake_schema)) == sorted(V1)


def test_an_empty_source_table_empties_the_target(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    metadata = write(io, snapshot(orders([]), SNAPSHOT_2), run_id="run00002")
    assert metadata["dagster/row_count"] == 0 and metadata["files"] == 0
    assert read(io, snowflake_schema).num_rows == 0


def _wider(rows_: list[tuple[int, str, int]]) -> tuple[pa.Table, dict[str, str]]:
    base = orders(rows_)
    table = base.append_column("note", pa.array([f"note {r[0]}" for r in rows_], pa.string()))
    table = table.set_column(1, "name", pa.array([r[1] + " and a much longer text" for r in rows_], pa.string()))
    return table, {"id": "int", "name": "nvarchar(80)", "qty": "int", "note": "varchar(10)"}


def test_evolve_adds_columns_and_widens_varchar(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    table, types = _wider(V1)
    metadata = write(io, snapshot(table, SNAPSHOT_2, source_types=types), run_id="run00002")
    assert metadata["schema_drift"] == ["new column NOTE VARCHAR(10)", "wider type NAME: VARCHAR(40) -> VARCHAR(80)"]
    columns = dict(
        snowflake_schema.query(
            "SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH "
            f'FROM "{snowflake_schema.database}".INFORMATION_SCHEMA.COLUMNS '
            "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ORDERS'",
            (snowflake_schema.schema,),
        )
    )
    assert columns["NAME"] == 80 and columns["NOTE"] == 10
    assert read(io, snowflake_schema).equals(table.sort_by("id").cast(read(io, snowflake_schema).schema)) or rows(
        read(io, snowflake_schema)
    ) == rows(table)


def test_fail_lists_every_difference_and_changes_nothing(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema, task={"schema_drift": "fail"})
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    table, types = _wider(V1)
    with pytest.raises(SchemaDriftError) as info:
        write(io, snapshot(table.drop_columns(["qty"]), SNAPSHOT_2, source_types=types), run_id="run00002")
    message = str(info.value)
    for part in (
        "new column NOTE VARCHAR(10)",
        "wider type NAME: VARCHAR(40) -> VARCHAR(80)",
        "column QTY no longer in the source",
        "schema_drift: evolve or ignore",
    ):
        assert part in message, part
    assert rows(read(io, snowflake_schema)) == sorted(V1)


def test_ignore_loads_the_columns_the_target_has(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema, task={"schema_drift": "ignore"})
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    table, types = _wider(V1[:3])
    write(io, snapshot(table, SNAPSHOT_2, source_types=types), run_id="run00002")
    names = [
        r[0]
        for r in snowflake_schema.query(
            f'SELECT COLUMN_NAME FROM "{snowflake_schema.database}".INFORMATION_SCHEMA.COLUMNS '
            "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ORDERS' ORDER BY ORDINAL_POSITION",
            (snowflake_schema.schema,),
        )
    ]
    assert names == ["ID", "NAME", "QTY"]
    assert snowflake_schema.query('SELECT "NAME" FROM "ORDERS" WHERE "ID" = 2') == [("name 2 and a much longer text",)]


def test_a_type_snowflake_cannot_change_in_place_fails_under_evolve(snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    table = orders(V1).set_column(2, "qty", pa.array([f"{r[2]}" for r in V1], pa.string()))
    with pytest.raises(SchemaDriftError, match="QTY: NUMBER\\(10,0\\) -> VARCHAR"):
        write(io, snapshot(table, SNAPSHOT_2, source_types={"qty": "varchar(10)"}), run_id="run00002")
    assert rows(read(io, snowflake_schema)) == sorted(V1)


def test_names_follow_the_identifier_policy(snowflake_schema: SnowflakeSchema) -> None:
    table = pa.table({"Id": pa.array([1, 2], pa.int32()), "Order Date": ["a", "b"]})
    upper = manager(snowflake_schema, table="$sourceTableShortName")
    write(upper, snapshot(table, SNAPSHOT_1, name="Order Lines", source_types={}, key=("Id",)))
    assert snowflake_schema.query('SELECT "ID", "ORDER DATE" FROM "ORDER LINES" ORDER BY 1') == [(1, "a"), (2, "b")]
    # fakesnow's quoted names are case-insensitive and its COPY upper-cases the table's column
    # names (docs/snowflake.md#fakesnow): there, preserve is checked on a table name only
    preserve = manager(snowflake_schema, identifier_case="preserve")
    mixed = table if not snowflake_schema.target.is_fake else table.rename_columns(["ID", "ORDER DATE"])
    write(preserve, snapshot(mixed, SNAPSHOT_1, name="Mixed Lines", source_types={}, key=(mixed.column_names[0],)))
    assert "Mixed Lines" in snowflake_schema.tables()
    quoted = ", ".join(f'"{c}"' for c in mixed.column_names)
    assert snowflake_schema.query(f'SELECT {quoted} FROM "Mixed Lines" ORDER BY 1') == [(1, "a"), (2, "b")]
    clash = pa.table({"name": ["a"], "Name": ["b"]})
    with pytest.raises(SnowflakeNameError, match="identifier_case: preserve"):
        write(upper, snapshot(clash, SNAPSHOT_1, name="clash", source_types={}, key=()))


def test_a_failure_after_copy_leaves_the_previous_load_and_no_left_overs(
    fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema
) -> None:
    io = manager(snowflake_schema)
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    before = control_row(snowflake_schema)
    fakesnow.set_faults({"match": r'^DELETE FROM ".*"\."ORDERS"$', "action": "error", "times": 1})
    with pytest.raises(SnowflakeStatementError, match="DELETE_TARGET .* failed: Snowflake error 000630"):
        write(io, snapshot(orders(V2), SNAPSHOT_2), run_id="run00002")
    statements = fakesnow.statements()
    copy_at = max(i for i, s in enumerate(statements) if s.startswith("COPY INTO") and "_DTAAS_STG_ORDERS_" in s)
    assert "ROLLBACK" in statements[copy_at:]  # the staged rows were in Snowflake; the transaction was undone
    assert rows(read(io, snowflake_schema)) == sorted(V1)
    assert control_row(snowflake_schema) == before
    assert snowflake_schema.tables() == [
        "ORDERS",
        "_DTAAS_STATE",
        "_DTAAS_STATE_LOADS",
    ]  # the staging table was dropped
    write(io, snapshot(orders(V2), SNAPSHOT_2), run_id="run00003")
    assert rows(read(io, snowflake_schema)) == sorted(V2)


def test_no_rows_are_inserted_one_by_one(fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema) -> None:
    io = manager(snowflake_schema)
    start = len(fakesnow.statements())
    write(io, snapshot(orders(V1), SNAPSHOT_1))
    sent = fakesnow.statements()[start:]
    # (the connector sends each PUT twice: the second, naming the bare file, asks for the upload URL)
    words = [
        s.split()[0]
        for s in sent
        if s.startswith(("PUT", "COPY", "INSERT", "DELETE")) and not s.startswith("PUT 'file://part-")
    ]
    # a file, one COPY, the replace, the control row, the load log row
    assert words == ["PUT", "COPY", "DELETE", "INSERT", "INSERT", "INSERT"]
    assert all("VALUES" not in s for s in sent if s.startswith('INSERT INTO "') and "_DTAAS_STATE" not in s)


def _encrypted_key(passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase)
    )


def test_key_pair_authentication_from_a_variable_or_a_file(
    fakesnow: SnowflakeTarget, snowflake_schema: SnowflakeSchema, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """fakesnow accepts any login, so this checks that the key is read, decrypted and used (a JWT login)."""
    pem = _encrypted_key(b"correct horse")
    monkeypatch.setenv("DTAAS_TEST_SF_KEY", pem.decode())
    monkeypatch.setenv("DTAAS_TEST_SF_KEY_PASSPHRASE", "correct horse")
    by_env = manager(
        snowflake_schema,
        password_env=None,
        private_key_env="DTAAS_TEST_SF_KEY",
        private_key_passphrase_env="DTAAS_TEST_SF_KEY_PASSPHRASE",
    )
    write(by_env, snapshot(orders(V1[:2]), SNAPSHOT_1))
    (tmp_path / "key.p8").write_bytes(pem)
    by_file = manager(
        snowflake_schema,
        password_env=None,
        private_key_file=str(tmp_path / "key.p8"),
        private_key_passphrase_env="DTAAS_TEST_SF_KEY_PASSPHRASE",
    )
    write(by_file, snapshot(orders(V1[:3]), SNAPSHOT_2))
    assert rows(read(by_file, snowflake_schema)) == sorted(V1[:3])

    monkeypatch.setenv("DTAAS_TEST_SF_KEY_PASSPHRASE", "wrong")
    with pytest.raises(SnowflakeConfigError, match="private key could not be read") as info:
        write(by_env, snapshot(orders(V1), SNAPSHOT_2), run_id="run00002")
    assert "correct horse" not in str(info.value) and "BEGIN" not in str(info.value)


def test_dtaas_health_probes_a_snowflake_destination_by_logging_in(snowflake_schema: SnowflakeSchema) -> None:
    from dtaas_dagster.config import parse_config
    from dtaas_dagster.health import FAIL, OK, destination_probes

    def config(**overrides: Any) -> Any:
        return parse_config(
            {
                "sources": {
                    "s": {
                        "host": "127.0.0.1",
                        "port": 1433,
                        "database": "sales",
                        "user": "u",
                        "password_env": "DTAAS_UNUSED_PASSWORD",
                    }
                },
                "destinations": {"wh": snowflake_schema.destination(**overrides)},
                "tasks": {"t": {"source": "s", "destination": "wh", "tables": ["dbo.orders"]}},
            }
        )

    [probe] = destination_probes(config())
    assert probe.status == OK, probe.reason
    assert probe.reason.startswith("writable at snowflake://") and "role" in probe.reason
    [failed] = destination_probes(config(password_env="DTAAS_NO_SUCH_SNOWFLAKE_PASSWORD"))
    assert failed.status == FAIL and "DTAAS_NO_SUCH_SNOWFLAKE_PASSWORD" in failed.reason
