"""Transforms benchmark: the full-load pipeline with and without a chain of 5 transforms, same run.

The table (1,000,000 rows x 10 mixed-type columns, the one bench/full_load.py
uses) is seeded into the SQL Server double once. Then, alternating, each in a
fresh child process, the product's own path as a table step runs it
(``open_snapshot`` -> ``write_partition``, Parquet to a temp dir):

- ``plain``: no transforms;
- ``transforms``: add_column ($variable, bigint), rename_column, cast_type
  (decimal -> float), apply_function (upper on Unicode text) and filter_rows
  with arithmetic (``ratio * 2 >= 0``: it keeps every row and cannot be pushed
  down, so every batch is filtered in Arrow and both variants write the same
  number of rows).

The last line is ``transforms overhead=<median transforms s / median plain s>``.
Run: ``.venv/bin/python bench/transforms.py [--rows N] [--repeats R]``; results in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.full_load import (  # noqa: E402 - after the sys.path set-up
    BATCH_ROWS,
    PASSWORD_ENV,
    RESULT_PREFIX,
    SCHEMA,
    _resource,
    peak_rss_mb,
    seed_tables,
    table_name,
)

CHAIN = [
    {
        "type": "add_column",
        "config": {"column_name": "ETLCustomerId", "value": "$ETLCustomerId", "data_type": "bigint"},
    },
    {"type": "rename_column", "config": {"old_name": "code", "new_name": "order_code"}},
    {"type": "cast_type", "config": {"column_name": "amount", "target_type": "float"}},
    {"type": "apply_function", "config": {"column_name": "name", "function": "upper"}},
    {"type": "filter_rows", "config": {"condition": "ratio * 2 >= 0"}},
]


def run_child(args: argparse.Namespace) -> None:
    import logging

    from pydantic import TypeAdapter

    from dtaas_dagster.config.transforms import TransformSpec
    from dtaas_dagster.destinations.commit import write_partition
    from dtaas_dagster.destinations.files import WriteOptions, new_load_id
    from dtaas_dagster.destinations.location import open_location, render_partition_dir
    from dtaas_dagster.table_load import TableSpec, open_snapshot

    transforms = TypeAdapter(list[TransformSpec]).validate_python(CHAIN) if args.child == "transforms" else []
    sqlserver = _resource(args.port, "msodbc18")
    location = open_location(args.out)
    spec = TableSpec(
        task="bench",
        source="bench",
        destination="lake",
        schema=SCHEMA,
        table=args.table,
        mode="full_load",
        batch_rows=BATCH_ROWS,
    )
    cpu_started, started = time.process_time(), time.perf_counter()
    stream = open_snapshot(
        spec,
        sqlserver,
        partition_key="2026-11-23T000000Z-full-bench",
        run_id="bench",
        global_variables={"ETLCustomerId": "12345"},
        log=logging.getLogger("bench"),  # type: ignore[arg-type]
        transforms=transforms,
    )
    relative = render_partition_dir(f"{args.child}/$partitionKey", stream.variables)
    written = write_partition(
        location.fs, location.path(relative), stream, WriteOptions(), load_id=new_load_id("bench"), run_id="bench"
    )
    result = {
        "rows": written.rows,
        "columns": len(stream.schema),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "maxrss_mb": peak_rss_mb(),
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_variant(port: int, variant: str, rows: int, out: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--port",
        str(port),
        "--table",
        table_name(rows),
        "--out",
        out,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if result["rows"] != rows:
        raise RuntimeError(f"{variant} wrote {result['rows']} rows, expected {rows}")
    return result


def run_parent(args: argparse.Namespace) -> None:
    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    password = "Bench-" + secrets.token_hex(8) + "!"
    os.environ[PASSWORD_ENV] = password
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "transforms": []}
    with tempfile.TemporaryDirectory(prefix="dtaas-bench-") as tmp, DoubleProcess(port=0, password=password) as double:
        seed_tables(double, args.rows, copies=1)
        print(f"seeded {args.rows:,} rows; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        run_variant(double.port, "plain", args.rows, f"file://{tmp}")  # warm-up (OS caches, the double's plan)
        for round_number in range(args.repeats):
            order = ("plain", "transforms") if round_number % 2 == 0 else ("transforms", "plain")
            for variant in order:
                result = run_variant(double.port, variant, args.rows, f"file://{tmp}")
                results[variant].append(result)
                print(
                    f"  round {round_number + 1} {variant:10s} {result['seconds']:6.2f}s "
                    f"{args.rows / result['seconds']:>10,.0f} rows/s cpu {result['cpu_seconds']:.2f}s "
                    f"rss {result['maxrss_mb']:.0f} MB columns {result['columns']}",
                    flush=True,
                )
    plain = statistics.median(r["seconds"] for r in results["plain"])
    with_chain = statistics.median(r["seconds"] for r in results["transforms"])
    cpu_plain = statistics.median(r["cpu_seconds"] for r in results["plain"])
    cpu_chain = statistics.median(r["cpu_seconds"] for r in results["transforms"])
    print(
        f"median plain {plain:.2f}s, with 5 transforms {with_chain:.2f}s; load average now "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"CPU seconds of the loading process: plain {cpu_plain:.2f}, with transforms {cpu_chain:.2f} "
        f"(ratio {cpu_chain / cpu_plain:.3f})"
    )
    print(f"transforms overhead={with_chain / plain:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=("plain", "transforms"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
