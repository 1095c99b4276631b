"""Full-load benchmark: SQL Server double -> the product's snapshot reader -> Parquet.

What it measures
----------------
A table of N rows x 10 mixed-type columns is seeded into the SQL Server double
(seeding API, plus ``INSERT ... SELECT`` copies for the 5N-row table). Then,
each in a FRESH CHILD PROCESS (``full_load.py --child <variant>``), so the
measurements share no caches, heap or threads:

- ``pipeline_file`` / ``pipeline_s3``: the product's own path, the code a
  table step runs, without Dagster: ``open_snapshot`` (table facts over one
  connection, ``plan_snapshot``, arrow-odbc with 50,000-row batches,
  ``convert_batch``, ``progress``) + ``write_partition`` (Parquet, snappy) to
  a ``file://`` temp dir or to moto S3;
- ``raw_arrow_odbc``: ``arrow_odbc.read_arrow_batches_from_odbc`` on the same
  connection string, SQL text and batch size, only iterating (the ceiling for
  the pipeline: the driver and the double, nothing of ours);
- ``pandas``: the original DTaaS approach, ``pd.read_sql(chunksize=50_000)`` on
  a pyodbc connection and ``to_parquet`` per chunk.

Each child times its own work (process start and imports excluded), reports
its peak RSS (``VmHWM``, see :func:`peak_rss_mb`) and its CPU time (all its
threads) during the run; the parent reads the double's CPU time around
each child with psutil, which shows whether the double's TDS encoder is the
limit. One warm-up run, then every variant ``--repeats`` times in alternating
order; the table shows medians. The RSS pair is the ``pipeline_file`` load of
N rows (median of its runs) against one load of 5N rows.

The ``(max)`` case: ``max_<M>`` (M = N/10 rows by default) is the same ten
columns plus ``notes nvarchar(max)`` and ``attachment varbinary(max)``: most
values short, 5% of 1,000-6,500 characters, and one ``notes`` value of
``--longest-chars`` characters (default 1,000,000, i.e. 2 MB as SQL Server
stores it). ``pipeline_file`` loads it twice: with every column
(``pipeline_max``) and with only the ten plain columns (``pipeline_max_plain``,
``columns_include``). The product's memory promise is that the first peaks at
most 1.5 x (the second + the largest single value); ``rss_max_over_plain`` is
peak RSS with the (max) columns / (peak RSS without them + the largest value's
DATALENGTH in MB).

The last line is the machine-readable summary, for ``file://``:
``full_load rows_per_s=<n> vs_raw=<ratio> vs_pandas=<ratio> rss_5m_over_1m=<ratio> rss_max_over_plain=<ratio>``.

Run: ``.venv/bin/python bench/full_load.py [--rows N] [--quick] [--driver msodbc18|freetds]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

DATABASE = "bench"
SCHEMA = "dbo"
BATCH_ROWS = 50_000
BUCKET = "bench"
PASSWORD_ENV = "BENCH_SQLSERVER_PASSWORD"
RESULT_PREFIX = "BENCH-RESULT "
VARIANTS = ("pipeline_file", "pipeline_s3", "raw_arrow_odbc", "pandas")
COLUMNS = {
    "id": "int",
    "big": "bigint",
    "name": "nvarchar(50)",
    "code": "varchar(100)",
    "amount": "decimal(18,2)",
    "ratio": "float",
    "flag": "bit",
    "day": "date",
    "ts": "datetime2(3)",
    "guid": "uniqueidentifier",
}


# --------------------------------------------------------------------------- data


def make_rows(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` deterministic rows of the ten ``COLUMNS`` types, built with Arrow compute."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = pa.array(np.arange(1, rows + 1, dtype=np.int32))
    id_text = pc.cast(ids, pa.string())
    whole = pc.cast(pa.array(rng.integers(-(10**9), 10**9, rows)), pa.string())
    cents = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 100, rows)), pa.string()), 2, "0")
    hex_text = np.frombuffer(rng.bytes(16 * rows).hex().encode("ascii"), dtype="S32")
    guids = pc.cast(pa.array(hex_text, pa.binary()), pa.string())
    guids = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(guids, 0, 8), pc.utf8_slice_codeunits(guids, 8, 12),
        pc.utf8_slice_codeunits(guids, 12, 16), pc.utf8_slice_codeunits(guids, 16, 20),
        pc.utf8_slice_codeunits(guids, 20, 32), "-",
    )  # fmt: skip
    return pa.table(
        {
            "id": ids,
            "big": pa.array(rng.integers(-(2**62), 2**62, rows), pa.int64()),
            "name": pc.binary_join_element_wise("Kundé ", id_text, ""),
            "code": pc.binary_join_element_wise(
                "ORD-", id_text, "-", pc.cast(pa.array(rng.integers(0, 10**6, rows)), pa.string()), ""
            ),
            "amount": pc.cast(pc.binary_join_element_wise(whole, cents, "."), pa.decimal128(18, 2)),
            "ratio": pa.array(rng.random(rows)),
            "flag": pa.array(rng.random(rows) < 0.5),
            "day": pa.array(np.datetime64("2000-01-01") + rng.integers(0, 9000, rows).astype("timedelta64[D]")),
            "ts": pa.array(
                np.datetime64("2020-01-01T00:00:00", "ms") + rng.integers(0, 10**11, rows).astype("timedelta64[ms]")
            ),
            "guid": pc.utf8_upper(guids),
        }
    )  # fmt: skip


MAX_COLUMNS = {"notes": "nvarchar(max)", "attachment": "varbinary(max)"}


def make_max_rows(rows: int, longest_chars: int, seed: int = 11) -> tuple[pa.Table, int]:
    """``make_rows`` plus the two (max) columns; returns the table and its largest value in bytes
    (DATALENGTH: UTF-16 for nvarchar)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 200, rows)
    medium = rng.random(rows) < 0.05
    lengths[medium] = rng.integers(1_000, 6_500, int(medium.sum()))
    lengths[rows // 2] = longest_chars
    text = "Lorem ipsum dolor sit amet, é ü ß 東京 " * (int(lengths.max()) // 36 + 1)
    binary = rng.bytes(int(lengths.max()) // 2 + 1)
    data = make_rows(rows)
    data = data.append_column("notes", pa.array([text[:n] for n in lengths], pa.string()))
    data = data.append_column("attachment", pa.array([binary[: n // 2] for n in lengths], pa.binary()))
    largest = max(2 * int(lengths.max()), int(lengths.max()) // 2)
    return data, largest


def table_name(rows: int) -> str:
    return f"load_{rows}"


def seed_tables(double: Any, rows: int, copies: int) -> None:
    """Seed ``load_<rows>``; ``load_<rows*copies>`` is that table plus id-shifted copies of it."""
    data = make_rows(rows)
    double.create_database(DATABASE, snapshot_isolation=True)
    for copy_count in sorted({1, copies}):
        name = table_name(rows * copy_count)
        double.seed_table(DATABASE, SCHEMA, name, data, columns=COLUMNS, primary_key=["id"])
        select_list = ", ".join(f"[{c}]" for c in COLUMNS if c != "id")
        for k in range(1, copy_count):
            double.control.execute(
                f"INSERT INTO [{SCHEMA}].[{name}] ([id], {select_list}) "
                f"SELECT [id] + {k * rows}, {select_list} FROM [{SCHEMA}].[{table_name(rows)}]",
                database=DATABASE,
            )


def seed_max_table(double: Any, rows: int, longest_chars: int) -> int:
    """Seed ``max_<rows>``; returns the largest value's DATALENGTH in bytes."""
    data, largest = make_max_rows(rows, longest_chars)
    double.seed_table(DATABASE, SCHEMA, f"max_{rows}", data, columns={**COLUMNS, **MAX_COLUMNS}, primary_key=["id"])
    return largest


# --------------------------------------------------------------------------- child side


def _resource(port: int, driver: str, database: str = DATABASE, user: str = "sa", host: str = "127.0.0.1") -> Any:
    from dtaas_dagster.sqlserver.resource import SqlServerResource

    return SqlServerResource(
        source_name="bench", host=host, port=port, database=database, user=user,
        password=os.environ[PASSWORD_ENV], password_env=PASSWORD_ENV, driver=driver,
        encrypt="no", trust_server_certificate=True,
    )  # fmt: skip


class _ReadClock:
    """Wraps the batch iterator: time spent waiting for the next batch (driver + double + convert)."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self.seconds = 0.0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            started = time.perf_counter()
            try:
                batch = next(self._batches)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield batch


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """open_snapshot (facts, plan, arrow-odbc read, progress) + write_partition, as a table step does."""
    import dataclasses

    from dtaas_dagster.destinations.commit import write_partition
    from dtaas_dagster.destinations.files import WriteOptions, new_load_id
    from dtaas_dagster.destinations.location import open_location, render_partition_dir
    from dtaas_dagster.table_load import TableSpec, open_snapshot

    sqlserver = _resource(args.port, args.driver, args.database, args.user, args.host)
    location = open_location(args.out, endpoint_url=args.s3_endpoint or None)
    log = logging.getLogger("bench.progress")  # progress lines as in a run (not printed)
    columns = tuple(args.columns.split(",")) if args.columns else None
    spec = TableSpec(
        task="bench",
        source="bench",
        destination="lake",
        schema=SCHEMA,
        table=args.table,
        mode="full_load",
        batch_rows=BATCH_ROWS,
        columns_include=columns,
    )
    started = time.perf_counter()
    stream = open_snapshot(
        spec, sqlserver, partition_key="2026-11-23T000000Z-full-bench", run_id="bench", global_variables={}, log=log
    )  # type: ignore[arg-type]
    clock = _ReadClock(stream.batches)
    stream = dataclasses.replace(stream, batches=iter(clock))
    relative = render_partition_dir(
        "$sourceDatabaseName/$sourceSchemaName/$sourceTableShortName/$partitionKey", stream.variables
    )
    written = write_partition(
        location.fs, location.path(relative), stream, WriteOptions(), load_id=new_load_id("bench"), run_id="bench"
    )
    seconds = time.perf_counter() - started
    return {"rows": written.rows, "seconds": seconds, "read_seconds": clock.seconds, "bytes": written.bytes}


def _plan(sqlserver: Any, table: str) -> Any:
    from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, plan_snapshot, profile_columns

    options = SnapshotOptions()
    facts = sqlserver.table_facts(SCHEMA, table, profile_columns=lambda d: profile_columns(d, options))
    return plan_snapshot(facts, options)


def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    """The same SELECT (with the same SET prefix) through arrow-odbc, iterating only."""
    from arrow_odbc import read_arrow_batches_from_odbc

    from dtaas_dagster.sqlserver import queries

    sqlserver = _resource(args.port, args.driver)
    plan = _plan(sqlserver, args.table)  # not timed: only the fetch is
    sql = f"{queries.SET_SNAPSHOT_ISOLATION};\n{plan.select_sql}" if plan.snapshot_isolation else plan.select_sql
    started = time.perf_counter()
    reader = read_arrow_batches_from_odbc(
        query=sql,
        connection_string=sqlserver.connection_string(with_password=False),
        password=sqlserver.password,
        batch_size=BATCH_ROWS,
        max_bytes_per_batch=512 * 1024 * 1024,
        max_text_size=plan.max_text_size,
        max_binary_size=plan.max_binary_size,
    )
    rows = sum(batch.num_rows for batch in reader)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def run_pandas(args: argparse.Namespace) -> dict[str, Any]:
    """pd.read_sql in 50,000-row chunks over pyodbc, to_parquet per chunk (the original DTaaS loader)."""
    import warnings

    import pandas as pd
    import pyodbc

    from dtaas_dagster.sqlserver import queries

    sqlserver = _resource(args.port, args.driver)
    sql = queries.build_snapshot_select(SCHEMA, args.table, list(COLUMNS))
    out = Path(args.out.removeprefix("file://")) / "pandas" / args.table
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    connection = pyodbc.connect(sqlserver.connection_string(), autocommit=True)
    rows = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas prefers SQLAlchemy; the DTaaS code used pyodbc
            for number, chunk in enumerate(pd.read_sql(sql, connection, chunksize=BATCH_ROWS)):
                chunk.to_parquet(out / f"part-{number:05d}.parquet", index=False)
                rows += len(chunk)
    finally:
        connection.close()
    return {"rows": rows, "seconds": time.perf_counter() - started}


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (``VmHWM``).

    Not ``getrusage().ru_maxrss``: Linux carries the forking parent's RSS high-water
    mark across ``execve`` into it, so a child of a parent holding a 1 GB table
    would report at least 1 GB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def run_child(args: argparse.Namespace) -> None:
    runner = {"pipeline": run_pipeline, "raw_arrow_odbc": run_raw, "pandas": run_pandas}[args.child]
    cpu_started = time.process_time()
    result = runner(args)
    result.update(maxrss_mb=peak_rss_mb(), cpu_seconds=time.process_time() - cpu_started)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent side


@dataclass
class Setup:
    port: int
    driver: str
    double_pid: int
    file_url: str
    s3_url: str
    s3_endpoint: str


def run_variant(
    setup: Setup, variant: str, rows: int, *, table: str | None = None, columns: list[str] | None = None
) -> dict[str, Any]:
    """One variant in a fresh child process; adds the double's CPU seconds during the run."""
    import psutil

    child = "pipeline" if variant.startswith("pipeline") else variant
    out = setup.s3_url if variant == "pipeline_s3" else setup.file_url
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--port", str(setup.port),
           "--driver", setup.driver, "--table", table or table_name(rows), "--out", out]  # fmt: skip
    if columns:
        cmd += ["--columns", ",".join(columns)]
    if variant == "pipeline_s3":
        cmd += ["--s3-endpoint", setup.s3_endpoint]
    double = psutil.Process(setup.double_pid)
    before = sum(double.cpu_times()[:2])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    double_cpu = sum(double.cpu_times()[:2]) - before
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if result["rows"] != rows:
        raise RuntimeError(f"{variant} moved {result['rows']} rows, expected {rows}")
    result["double_cpu_seconds"] = double_cpu
    return result


def measure(setup: Setup, rows: int, repeats: int, warmup: bool) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    if warmup:
        run_variant(setup, "pipeline_file", rows)
    for round_number in range(repeats):
        order = VARIANTS if round_number % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            results[variant].append(run_variant(setup, variant, rows))
            last = results[variant][-1]
            print(f"  round {round_number + 1} {variant:15s} {rows / last['seconds']:>10,.0f} rows/s", flush=True)
    return results


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


@dataclass
class MaxCase:
    """The (max) table loaded with and without its (max) columns."""

    rows: int
    largest_bytes: int
    with_max: dict[str, Any]
    plain: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.with_max["maxrss_mb"] / (self.plain["maxrss_mb"] + self.largest_bytes / (1024 * 1024))


def measure_max(setup: Setup, rows: int, largest_bytes: int) -> MaxCase:
    table = f"max_{rows}"
    plain = run_variant(setup, "pipeline_file", rows, table=table, columns=list(COLUMNS))
    with_max = run_variant(setup, "pipeline_file", rows, table=table)
    return MaxCase(rows, largest_bytes, with_max, plain)


_HEADER = (
    f"{'variant':18s} {'rows':>9s} {'runs':>4s} {'median s':>9s} {'rows/s':>10s} {'peak RSS MB':>11s} "
    f"{'child CPU s':>11s} {'double CPU s':>12s}"
)


def _row_line(variant: str, count: int, runs: list[dict[str, Any]]) -> str:
    seconds = _median(runs, "seconds")
    return (
        f"{variant:18s} {count:>9,d} {len(runs):>4d} {seconds:>9.2f} {count / seconds:>10,.0f} "
        f"{_median(runs, 'maxrss_mb'):>11.0f} {_median(runs, 'cpu_seconds'):>11.2f} "
        f"{_median(runs, 'double_cpu_seconds'):>12.2f}"
    )


def print_table(
    rows: int, results: dict[str, list[dict[str, Any]]], big: dict[str, Any], big_rows: int, max_case: MaxCase
) -> None:
    print(_HEADER)
    print("-" * len(_HEADER))
    entries = [(v, rows, runs) for v, runs in results.items()] + [("pipeline_file", big_rows, [big])]
    entries += [("pipeline_max", max_case.rows, [max_case.with_max]),
                ("pipeline_max_plain", max_case.rows, [max_case.plain])]  # fmt: skip
    for variant, count, runs in entries:
        print(_row_line(variant, count, runs))
    pipeline = results["pipeline_file"]
    read_share = _median(pipeline, "read_seconds") / _median(pipeline, "seconds")
    print(
        f"pipeline_file: {read_share:.0%} of its time is spent waiting for the next batch "
        "(driver + double + convert_batch)"
    )
    print(
        f"pipeline_max: the largest (max) value is {max_case.largest_bytes / (1024 * 1024):.1f} MB; peak RSS "
        f"{max_case.with_max['maxrss_mb']:.0f} MB with the (max) columns, {max_case.plain['maxrss_mb']:.0f} MB without"
    )


def summary_line(rows: int, results: dict[str, list[dict[str, Any]]], big: dict[str, Any], max_case: MaxCase) -> str:
    pipeline = rows / _median(results["pipeline_file"], "seconds")
    raw = rows / _median(results["raw_arrow_odbc"], "seconds")
    pandas = rows / _median(results["pandas"], "seconds")
    rss_ratio = big["maxrss_mb"] / _median(results["pipeline_file"], "maxrss_mb")
    return (
        f"full_load rows_per_s={pipeline:.0f} vs_raw={pipeline / raw:.2f} "
        f"vs_pandas={pipeline / pandas:.2f} rss_5m_over_1m={rss_ratio:.2f} rss_max_over_plain={max_case.ratio:.2f}"
    )


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_parent(args: argparse.Namespace) -> None:
    import secrets

    import boto3
    from moto.server import ThreadedMotoServer

    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    password = "Bench-" + secrets.token_hex(8) + "!"
    os.environ[PASSWORD_ENV] = password  # children inherit it; never on a command line
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench-testing")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        with (
            tempfile.TemporaryDirectory(prefix="dtaas-bench-") as tmp,
            DoubleProcess(port=0, password=password) as double,
        ):
            started = time.perf_counter()
            seed_tables(double, rows, copies=5)
            max_rows = args.max_rows or max(rows // 10, 10)
            largest = seed_max_table(double, max_rows, args.longest_chars)
            print(
                f"seeded {rows:,} and {5 * rows:,} rows in {time.perf_counter() - started:.1f}s (driver {args.driver})",
                flush=True,
            )
            print(f"load average before: {_load_average()} (other processes share these cores)", flush=True)
            setup = Setup(double.port, args.driver, double.pid, f"file://{tmp}", f"s3://{BUCKET}/out", endpoint)
            results = measure(setup, rows, repeats, warmup=not args.quick)
            big = run_variant(setup, "pipeline_file", 5 * rows)
            max_case = measure_max(setup, max_rows, largest)
            print(f"load average after: {_load_average()}")
            print()
            print_table(rows, results, big, 5 * rows, max_case)
            print(summary_line(rows, results, big, max_case), flush=True)
    finally:
        moto.stop()


def run_max_only(args: argparse.Namespace) -> None:
    """Only the (max) case (``--max-only``): to try value sizes without the timed variants."""
    import secrets

    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    os.environ[PASSWORD_ENV] = "Bench-" + secrets.token_hex(8) + "!"
    max_rows = args.max_rows or 100_000
    with tempfile.TemporaryDirectory(prefix="dtaas-bench-") as tmp, \
            DoubleProcess(port=0, password=os.environ[PASSWORD_ENV]) as double:  # fmt: skip
        double.create_database(DATABASE, snapshot_isolation=True)
        largest = seed_max_table(double, max_rows, args.longest_chars)
        case = measure_max(Setup(double.port, args.driver, double.pid, f"file://{tmp}", "", ""), max_rows, largest)
    print(_HEADER)
    print("-" * len(_HEADER))
    print(_row_line("pipeline_max", max_rows, [case.with_max]))
    print(_row_line("pipeline_max_plain", max_rows, [case.plain]))
    print(
        f"full_load_max rows={max_rows} longest_chars={args.longest_chars} "
        f"largest_mb={largest / (1024 * 1024):.1f} rss_max_over_plain={case.ratio:.2f}",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--rows", type=int, default=0, help="rows in the timed table (default 1,000,000; 100,000 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100k rows, 500k for the RSS pair, one repeat, no warm-up"
    )
    parser.add_argument("--driver", choices=("msodbc18", "freetds"), default="msodbc18")
    parser.add_argument("--repeats", type=int, default=0, help="runs per variant (default 3; 1 with --quick)")
    parser.add_argument(
        "--max-rows", type=int, default=0, help="rows of the (max) table (default rows / 10; 100,000 with --max-only)"
    )
    parser.add_argument(
        "--max-only", action="store_true", help="only the (max) case: pipeline_max and pipeline_max_plain, one run each"
    )
    parser.add_argument(
        "--longest-chars",
        type=int,
        default=1_000_000,
        help="characters of the longest nvarchar(max) value (default 1,000,000)",
    )
    parser.add_argument("--child", choices=("pipeline", "raw_arrow_odbc", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--s3-endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--columns", default="", help=argparse.SUPPRESS)  # child: columns_include, comma-separated
    parser.add_argument("--database", default=DATABASE, help=argparse.SUPPRESS)  # child (the memory test)
    parser.add_argument("--user", default="sa", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
    elif args.max_only:
        run_max_only(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
