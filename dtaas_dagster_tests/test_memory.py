"""Peak memory with (max) columns: within 1.5 x the same table without them plus the largest value.

Measured the way bench/full_load.py does: the product's load path (``open_snapshot`` +
``write_partition``, no Dagster) in a fresh child process that reports its own peak RSS
(``VmHWM``). Before buffers were bounded by bytes, 2,000 rows with one 1,000,000-character
``nvarchar(max)`` value peaked at about 1,170 MB against 180 MB without the column: arrow-odbc
sized its transit buffers as 50,000 rows x the longest value, twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench" / "full_load.py"
PASSWORD_ENV = "BENCH_SQLSERVER_PASSWORD"  # the variable the bench child reads

pytestmark = pytest.mark.slow


def _seed(sqlserver_db: Any, rows: int, longest: int) -> int:
    """id, code, notes nvarchar(max), attachment varbinary(max); returns the largest DATALENGTH."""
    lengths = [(i * 37) % 200 if i % 20 else 1_000 + (i * 53) % 5_500 for i in range(rows)]
    lengths[rows // 2] = longest
    text = "Lorem ipsum dolor sit amet, é ü ß 東京 " * (longest // 36 + 1)
    data = pa.table({
        "id": pa.array(range(rows), pa.int32()),
        "code": pa.array([f"ORD-{i:08d}" for i in range(rows)]),
        "notes": pa.array([text[:n] for n in lengths]),
        "attachment": pa.array([bytes(n // 4) for n in lengths], pa.binary()),
    })  # fmt: skip
    sqlserver_db.seed_table(
        "dbo",
        "with_max",
        data,
        primary_key=["id"],
        columns={"id": "int", "code": "nvarchar(50)", "notes": "nvarchar(max)", "attachment": "varbinary(max)"},
    )
    return 2 * longest  # nvarchar stores UTF-16: 2 bytes a character here


def _peak_rss_mb(sqlserver: Any, database: str, tmp_path: Path, columns: str = "") -> float:
    command = [
        sys.executable,
        str(BENCH),
        "--child",
        "pipeline",
        "--host",
        sqlserver.host,
        "--port",
        str(sqlserver.port),
        "--user",
        sqlserver.user,
        "--database",
        database,
        "--driver",
        "msodbc18",
        "--table",
        "with_max",
        "--out",
        f"file://{tmp_path}/{columns or 'all'}",
    ]
    if columns:
        command += ["--columns", columns]
    env = {**os.environ, PASSWORD_ENV: sqlserver.password}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    result = json.loads(line.removeprefix("BENCH-RESULT "))
    assert result["rows"] == 2_000
    return float(result["maxrss_mb"])


def test_max_columns_cost_about_their_largest_value_not_rows_times_it(
    sqlserver: Any, sqlserver_db: Any, tmp_path: Path
) -> None:
    largest = _seed(sqlserver_db, 2_000, 1_000_000)
    plain = _peak_rss_mb(sqlserver, sqlserver_db.name, tmp_path, columns="id,code")
    with_max = _peak_rss_mb(sqlserver, sqlserver_db.name, tmp_path)
    bound = 1.5 * (plain + largest / (1024 * 1024))
    assert with_max <= bound, (
        f"peak RSS {with_max:.0f} MB with (max) columns, {plain:.0f} MB without (bound {bound:.0f})"
    )
