"""CDC benchmark: change throughput vs a raw fetch, sensor tick time at scale, end-to-end latency.

1. **Throughput.** 10 tables, 200,000 changes in all (inserts, then updates of
   half of them: update pairs), captured by the SQL Server double. Each table's
   window is loaded by the product path a change partition's step runs (its
   tables' catalog facts read ahead in one batch by ``facts_session``, then per
   table ``open_changes`` + ``write_partition``, Parquet to a temp dir), side
   by side with a raw arrow-odbc fetch of the same change batch (only
   iterating), alternating which side reads a window first. Two passes: the
   first, in a cold process, is printed too; the second is the result. Also
   printed: how many catalog batches the windows took.
2. **Tick time.** 100 CDC tables, a Dagster instance holding 50,000 partitions
   of the task, and the sensor ``<task>_cdc`` evaluated in this process: with no
   change, and with changes in 10 tables. Also the definitions load time.
3. **Latency.** The real ``dagster-daemon`` with ``poll_seconds: 5`` and the
   double capturing 1 s after each commit: one change per second for 60 s;
   for each, the time from its commit until its change file is readable
   through a manifest; p50 and p95, with a breakdown (capture lag, waiting for
   the tick, the run).

Last line: ``cdc changes_per_s=<n> vs_raw=<ratio> tick_100_tables_s=<s> latency_p50_s=<s> latency_p95_s=<s>``.
Run: ``.venv/bin/python bench/cdc.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PASSWORD = "Bench-Cdc-Passw0rd!"


def _connect(double: Any, database: str) -> Any:
    import pyodbc

    from dtaas_dagster.sqlserver.drivers import resolve_driver

    driver = resolve_driver("msodbc18")
    return pyodbc.connect(
        f"DRIVER={{{driver.value}}};SERVER=127.0.0.1,{double.port};DATABASE={database};UID=sa;"
        f"PWD={PASSWORD};Encrypt=no;TrustServerCertificate=yes",
        autocommit=True,
    )


def _resource(double: Any, database: str) -> Any:
    from dtaas_dagster.sqlserver.resource import SqlServerResource

    return SqlServerResource(
        source_name="bench",
        host="127.0.0.1",
        port=double.port,
        database=database,
        user="sa",
        password=PASSWORD,
        driver="msodbc18",
        encrypt="no",
        trust_server_certificate=True,
    )


def _create_tables(double: Any, database: str, count: int) -> None:
    double.create_database(database, snapshot_isolation=True)
    with closing(_connect(double, database)) as conn:
        conn.execute("EXEC sys.sp_cdc_enable_db")
        for i in range(count):
            conn.execute(
                f"CREATE TABLE dbo.t{i:03d} (id int NOT NULL PRIMARY KEY, name nvarchar(40), "
                "amount decimal(18,2), at datetime2(3))"
            )
            conn.execute(
                f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N't{i:03d}', @role_name = NULL"
            )


def throughput(double: Any, changes: int, tables: int = 10) -> dict[str, float]:
    import pyarrow as pa
    from arrow_odbc import read_arrow_batches_from_odbc

    from dtaas_dagster.cdc.changes import changes_read
    from dtaas_dagster.destinations.commit import write_partition
    from dtaas_dagster.destinations.files import WriteOptions, new_load_id
    from dtaas_dagster.sqlserver.cdc import ChangeWindow
    from dtaas_dagster.sqlserver.lsn import Lsn
    from dtaas_dagster.table_load import TableSpec, open_changes

    database = "cdc_throughput"
    _create_tables(double, database, tables)
    per_table = changes // tables
    inserts = per_table * 2 // 3
    staging = pa.table(
        {
            "id": pa.array(range(inserts), pa.int32()),
            "name": pa.array([f"name {i}" for i in range(inserts)]),
            "amount": pa.array([i / 4 for i in range(inserts)], pa.float64()).cast(pa.decimal128(18, 2)),
            "at": pa.array([1_700_000_000_000 + i for i in range(inserts)], pa.timestamp("ms")),
        }
    )
    double.seed_table(
        database,
        "dbo",
        "staging",
        staging,
        columns={"id": "int", "name": "nvarchar(40)", "amount": "decimal(18,2)", "at": "datetime2(3)"},
    )
    with closing(_connect(double, database)) as conn:
        start = Lsn.from_bytes(bytes(conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0])).increment()
        for i in range(tables):
            conn.execute(
                f"INSERT INTO dbo.t{i:03d} (id, name, amount, at) SELECT id, name, amount, at FROM dbo.staging"
            )
            # one update pair per changed row: (per_table - inserts) rows change
            conn.execute(f"UPDATE dbo.t{i:03d} SET name = N'changed' WHERE id < {per_table - inserts}")
        end = Lsn.from_bytes(bytes(conn.execute("SELECT sys.fn_cdc_get_max_lsn()").fetchone()[0]))
    sqlserver = _resource(double, database)
    log = logging.getLogger("bench.cdc")
    names = [f"t{i:03d}" for i in range(tables)]
    windows = {}
    with closing(_connect(double, database)) as conn:
        for name in names:
            low = Lsn.from_bytes(bytes(conn.execute("SELECT sys.fn_cdc_get_min_lsn(?)", f"dbo_{name}").fetchone()[0]))
            windows[name] = ChangeWindow(f"dbo_{name}", max(start, low), end)
    import pyarrow.fs as pafs

    from dtaas_dagster.cdc.changes import ChangePlan
    from dtaas_dagster.sqlserver.snapshot import SnapshotOptions, plan_snapshot, profile_columns

    fs = pafs.LocalFileSystem()

    def pipeline(name: str, window: ChangeWindow, out: str) -> tuple[float, int]:
        spec = TableSpec(
            task="bench", source="bench", destination="lake", schema="dbo", table=name, mode="cdc", batch_rows=50_000
        )
        started = time.perf_counter()
        stream = open_changes(
            spec,
            sqlserver,
            window,
            partition_key="2026-01-01T000000Z-cdc-bench",
            run_id="bench",
            global_variables={},
            log=log,
        )  # type: ignore[arg-type]
        written = write_partition(fs, out, stream, WriteOptions(), load_id=new_load_id("bench"), run_id="bench")
        return time.perf_counter() - started, written.rows

    def raw(window: ChangeWindow) -> tuple[float, int]:
        # the raw fetch of the same batch (its plan, made outside the session, is not timed)
        options = SnapshotOptions()
        facts = sqlserver.change_facts(window, profile_columns=lambda d, o=options: profile_columns(d, o))
        read = changes_read(ChangePlan(plan_snapshot(facts, options), window, ("id",)))
        started = time.perf_counter()
        reader = read_arrow_batches_from_odbc(
            query=read.sql,
            connection_string=sqlserver.connection_string(with_password=False),
            password=PASSWORD,
            parameters=list(read.parameters),
            batch_size=50_000,
            schema=read.fetch_schema,
            max_text_size=read.max_text_size,
            max_binary_size=read.max_binary_size,
        )
        fetched = sum(batch.num_rows for batch in reader)
        return time.perf_counter() - started, fetched

    def one_pass(out: str) -> dict[str, float]:
        pipeline_s = raw_s = 0.0
        rows = raw_rows = 0
        # as a change partition's step does: its tables' catalog facts are read ahead in bulk
        session = sqlserver.facts_session(
            [("dbo", name) for name in names],
            capture_instances={("dbo", name): window.capture_instance for name, window in windows.items()},
        )
        with session as facts_session:
            for index, (name, window) in enumerate(windows.items()):
                # the two sides alternate who reads a window first (the double's caches)
                if index % 2:
                    seconds, fetched = raw(window)
                    raw_s, raw_rows = raw_s + seconds, raw_rows + fetched
                seconds, written = pipeline(name, window, f"{out}/{name}")
                pipeline_s, rows = pipeline_s + seconds, rows + written
                if not index % 2:
                    seconds, fetched = raw(window)
                    raw_s, raw_rows = raw_s + seconds, raw_rows + fetched
        return {
            "changes": rows,
            "raw_rows": raw_rows,
            "pipeline_s": pipeline_s,
            "raw_s": raw_s,
            "catalog_batches": facts_session.bulk_reads,
        }

    # Two passes over the same windows, each side by side: the first, in a cold process, pays
    # one-time costs, unevenly (not broken down: arrow-odbc's first connection, pyarrow's Parquet
    # writer, the first large allocations); the second is the result, the first is printed too.
    with tempfile.TemporaryDirectory() as out:
        cold = one_pass(f"{out}/cold")
        result = one_pass(f"{out}/warm")
    # vs_raw compares times for the same windows: the raw fetch also returns the update
    # before-images that change files leave out, so a rows/s ratio would flatter the raw side
    return {
        **result,
        "changes_per_s": result["changes"] / result["pipeline_s"],
        "raw_per_s": result["raw_rows"] / result["raw_s"],
        "vs_raw": result["raw_s"] / result["pipeline_s"],
        "vs_raw_cold": cold["raw_s"] / cold["pipeline_s"],
    }


def tick_time(double: Any, tables: int, partitions: int) -> dict[str, float]:
    import dagster as dg
    import yaml

    from bench.many_tables import process_cpu  # the double's CPU: what a real SQL Server would spend instead
    from dtaas_dagster.config import parse_config
    from dtaas_dagster.factory import build_definitions

    database = "cdc_ticks"
    _create_tables(double, database, tables)
    config = {
        "sources": {
            "src": {
                "host": "127.0.0.1",
                "port": double.port,
                "database": database,
                "user": "sa",
                "password_env": "BENCH_CDC_PASSWORD",
                "encrypt": "no",
            }
        },
        "destinations": {"lake": {"type": "s3", "url": "file:///tmp/bench-cdc-unused"}},
        "tasks": {"t": {"source": "src", "destination": "lake", "tables": ["dbo.*"], "mode": "cdc"}},
    }
    os.environ["BENCH_CDC_PASSWORD"] = PASSWORD
    started = time.perf_counter()
    defs = build_definitions(parse_config(yaml.safe_load(yaml.safe_dump(config))))
    load_s = time.perf_counter() - started
    sensor = defs.resolve_sensor_def("t_cdc")
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
        instance.add_dynamic_partitions("t_loads", [f"2025-01-01T{i:06d}Z-cdc-{i:06x}" for i in range(partitions)])
        resources = {"sqlserver_src": _resource(double, database)}
        cursor = None

        split: dict[str, list[float]] = {"ours_cpu": [], "double_cpu": []}

        def one_tick() -> tuple[float, Any]:
            nonlocal cursor
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                began, cpu, double_cpu = time.perf_counter(), time.process_time(), process_cpu(double.pid)
                result = sensor(context)
                seconds = time.perf_counter() - began
                split["ours_cpu"].append(time.process_time() - cpu)
                split["double_cpu"].append(process_cpu(double.pid) - double_cpu)
            cursor = result.cursor
            return seconds, result

        one_tick()  # the first tick places every table ("now")
        split["ours_cpu"].clear()
        split["double_cpu"].clear()
        idle = statistics.median(one_tick()[0] for _ in range(5))
        idle_ours, idle_double = statistics.median(split["ours_cpu"]), statistics.median(split["double_cpu"])
        with closing(_connect(double, database)) as conn:
            for i in range(0, tables, tables // 10):
                conn.execute(f"INSERT INTO dbo.t{i:03d} (id, name) VALUES (1, N'x')")
        busy, result = one_tick()
        assert len(result.run_requests) == 1, result
    return {
        "definitions_load_s": load_s,
        "tick_idle_s": idle,
        "tick_changes_s": busy,
        "tables": tables,
        "partitions": partitions,
        "idle_ours_cpu_s": idle_ours,
        "idle_double_cpu_s": idle_double,
        "changes_ours_cpu_s": split["ours_cpu"][-1],
        "changes_double_cpu_s": split["double_cpu"][-1],
    }


def latency(double: Any, seconds: int) -> dict[str, float]:
    from dtaas_dagster_tests.cdc.daemon import DaemonProcess
    from dtaas_dagster_tests.runs import PASSWORD_ENV, dagster_home, write_config

    database = "cdc_latency"
    _create_tables(double, database, 1)
    double.control.set_capture_lag(1.0, database)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        lake = tmp_path / "lake"
        config = {
            "sources": {
                "src": {
                    "host": "127.0.0.1",
                    "port": double.port,
                    "database": database,
                    "user": "sa",
                    "password_env": PASSWORD_ENV,
                    "encrypt": "no",
                }
            },
            "destinations": {"lake": {"type": "s3", "url": f"file://{lake}"}},
            "tasks": {
                "t": {
                    "source": "src",
                    "destination": "lake",
                    "tables": ["dbo.t000"],
                    "mode": "cdc",
                    "cdc": {"poll_seconds": 5, "start": "earliest"},
                    "retry": {"max_retries": 0},
                }
            },
        }
        config_path, home = write_config(tmp_path, config), dagster_home(tmp_path)
        committed: dict[int, float] = {}
        landed: dict[int, float] = {}
        with DaemonProcess(
            home=home, env={"DTAAS_CONFIG": str(config_path), PASSWORD_ENV: PASSWORD}, cwd=tmp_path
        ) as daemon:
            daemon.start_sensor("t_cdc")
            time.sleep(8)  # the first tick places the table at "now"
            with closing(_connect(double, database)) as conn:
                deadline = time.monotonic() + seconds
                i = 0
                while time.monotonic() < deadline or len(landed) < len(committed):
                    if time.monotonic() < deadline:
                        conn.execute(f"INSERT INTO dbo.t000 (id, name) VALUES ({i}, N'c{i}')")
                        committed[i] = time.time()
                        i += 1
                    _scan(lake, landed)
                    assert time.monotonic() < deadline + 120, "changes did not land"
                    time.sleep(1.0)
        parts = _where_the_time_went(home)
    delays = sorted(landed[i] - committed[i] for i in committed)
    return {
        "changes": len(delays),
        "p50_s": statistics.median(delays),
        "p95_s": delays[max(0, int(len(delays) * 0.95) - 1)],
        "max_s": delays[-1],
        **parts,
    }


def _where_the_time_went(home: Path) -> dict[str, float]:
    """Medians from the instance: seconds between ticks, and per run the queue (created ->
    starting), the run's start (starting -> step start) and the step (step start -> materialized)."""
    import dagster as dg

    from dtaas_dagster.cdc.sensor import cdc_sensor_name

    with dg.DagsterInstance.from_config(str(home)) as instance:
        state = next(s for s in instance.all_instigator_state() if s.name == cdc_sensor_name("t"))
        ticks = sorted(t.timestamp for t in instance.get_ticks(state.instigator_origin_id, state.selector_id))
        queue, start, step = [], [], []
        for record in instance.get_run_records():
            created = record.create_timestamp.timestamp()
            first: dict[str, float] = {}
            for entry in instance.all_logs(record.dagster_run.run_id):
                if entry.dagster_event is not None:
                    first.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
            if {"PIPELINE_STARTING", "STEP_START", "ASSET_MATERIALIZATION"} <= first.keys():
                queue.append(first["PIPELINE_STARTING"] - created)
                start.append(first["STEP_START"] - first["PIPELINE_STARTING"])
                step.append(first["ASSET_MATERIALIZATION"] - first["STEP_START"])
    return {
        "tick_gap_s": statistics.median(b - a for a, b in zip(ticks, ticks[1:])),
        "queue_s": statistics.median(queue),
        "run_start_s": statistics.median(start),
        "step_s": statistics.median(step),
    }


def _scan(lake: Path, landed: dict[int, float]) -> None:
    """Record the first time each id is readable through a cdc manifest."""
    import pyarrow.parquet as pq

    now = time.time()
    for manifest_path in lake.rglob("_manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("kind") != "cdc":
            continue
        for entry in manifest["files"]:
            for value in pq.read_table(manifest_path.parent / entry["path"], columns=["id"]).column("id").to_pylist():
                landed.setdefault(int(value), now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    changes, tables, partitions, seconds = (20_000, 20, 2_000, 15) if args.quick else (200_000, 100, 50_000, 70)
    with DoubleProcess(port=0, password=PASSWORD) as double:
        t = throughput(double, changes)
        print(
            f"throughput: {t['changes']:,} changes in {t['pipeline_s']:.1f}s = {t['changes_per_s']:,.0f}/s; "
            f"raw fetch of the same windows {t['raw_s']:.1f}s ({t['raw_rows']:,} rows with before-images); "
            f"time ratio raw/pipeline {t['vs_raw']:.2f} (the first, cold pass: {t['vs_raw_cold']:.2f})",
            flush=True,
        )
        print(f"  the windows' catalog facts came in {t['catalog_batches']} batch(es)", flush=True)
        k = tick_time(double, tables, partitions)
        print(
            f"ticks: {k['tables']} tables, {k['partitions']:,} partitions: idle {k['tick_idle_s']:.3f}s, with "
            f"changes {k['tick_changes_s']:.3f}s; definitions load {k['definitions_load_s']:.2f}s",
            flush=True,
        )
        print(
            f"  tick CPU: idle ours {k['idle_ours_cpu_s']:.3f}s + the double's {k['idle_double_cpu_s']:.3f}s; "
            f"with changes ours {k['changes_ours_cpu_s']:.3f}s + the double's {k['changes_double_cpu_s']:.3f}s",
            flush=True,
        )
        lat = latency(double, seconds)
        print(
            f"latency ({lat['changes']} changes, poll_seconds 5, capture lag 1 s): p50 {lat['p50_s']:.1f}s, "
            f"p95 {lat['p95_s']:.1f}s, max {lat['max_s']:.1f}s",
            flush=True,
        )
        print(
            f"  medians: {lat['tick_gap_s']:.1f}s between ticks; per run {lat['queue_s']:.1f}s in the queue, "
            f"{lat['run_start_s']:.1f}s starting the run process, {lat['step_s']:.1f}s reading and committing",
            flush=True,
        )
    print(
        f"cdc changes_per_s={t['changes_per_s']:.0f} vs_raw={t['vs_raw']:.2f} "
        f"tick_100_tables_s={max(k['tick_idle_s'], k['tick_changes_s']):.3f} latency_p50_s={lat['p50_s']:.1f} "
        f"latency_p95_s={lat['p95_s']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
