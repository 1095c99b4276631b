"""Many-tables benchmark: a task over a whole database (``dbo.*``) of small tables.

What it measures
----------------
The SQL Server double is seeded with two databases of 1,000-row tables (five
mixed-type columns): ``many`` with ``--tables`` tables (default 500) and
``baseline`` with ``--baseline-tables`` (default 40). Each is loaded once to a
``file://`` lake the way a script does it, ``dtaas load --task t --in-process``
(a ``dagster job execute`` run of ``t_tables``, with the multiprocess executor,
the retry policy, the pool and the IO manager of a real run), each with its own
``dtaas.yaml`` and ``DAGSTER_HOME``:

- ``grouped``: ``many``, ``parallel_tables: 4`` (the tables share at most four
  steps, each loading its tables one after the other in one process);
- ``grouped_no_checks``: the same as ``grouped`` with ``step_checks: []`` (no
  asset checks: each check result is a few events Dagster stores per table);
- ``step_per_table``: ``baseline``, ``parallel_tables: 4`` and
  ``tables_per_step: 1`` (every table its own step process: the old design).

For each it reports the wall time and three CPU figures:

- ``tree CPU``: the CPU seconds of every process the load started, however
  deep (this script makes itself a child subreaper, so the step processes that
  a forkserver starts, and the forkserver itself, are reparented to it and
  reaped here; ``RUSAGE_CHILDREN`` then counts all of them), plus the CPU the
  SQL Server double spent meanwhile (read from its ``/proc`` entry);
- ``double CPU``: the double's share of that (DuckDB, sqlglot, its TDS encoder:
  what a real SQL Server would spend instead);
- ``machine CPU``: busy time of the whole machine from ``/proc/stat``, which
  also counts whatever else runs on these shared cores (see the load average
  printed before and after): an upper bound.

``per_table_cpu_s`` is tree CPU / tables. Fixed costs of a run (the CLI, the
``dagster job execute`` process, loading definitions) are in it too; with
hundreds of tables they are a small share.

The load is verified: the run's exit status, one ``_manifest.json`` per table
with ``total_rows`` 1,000, and one materialization per table in the run.

The last line, for scripts:
``many_tables tables=<n> wall_s=<s> per_table_cpu_s=<s>`` (the grouped load).

Run: ``.venv/bin/python bench/many_tables.py [--tables 500] [--baseline-tables 40]``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

ROWS = 1_000
TASK = "t"
PASSWORD_ENV = "BENCH_SQLSERVER_PASSWORD"
COLUMNS = {
    "id": "int",
    "name": "nvarchar(50)",
    "amount": "decimal(18,2)",
    "ts": "datetime2(3)",
    "flag": "bit",
}
_PR_SET_CHILD_SUBREAPER = 36


def make_rows(rows: int = ROWS) -> pa.Table:
    """``rows`` deterministic rows of the ``COLUMNS`` types."""
    import datetime as dt
    import decimal

    start = dt.datetime(2026, 1, 1)
    return pa.table(
        {
            "id": pa.array(range(1, rows + 1), pa.int32()),
            "name": pa.array([f"Kundé {i}" for i in range(rows)]),
            "amount": pa.array([decimal.Decimal(i * 7 % 100_000) / 100 for i in range(rows)], pa.decimal128(18, 2)),
            "ts": pa.array([start + dt.timedelta(seconds=97 * i) for i in range(rows)], pa.timestamp("ms")),
            "flag": pa.array([i % 3 == 0 for i in range(rows)]),
        }
    )


def seed_database(double: Any, database: str, tables: int) -> None:
    data = make_rows()
    double.create_database(database, snapshot_isolation=True)
    for number in range(tables):
        double.seed_table(database, "dbo", f"t{number:04d}", data, columns=COLUMNS, primary_key=["id"])


# --------------------------------------------------------------------------- CPU accounting


def become_subreaper() -> None:
    """Orphaned descendants (a forkserver and its children) are reparented to this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed; this benchmark needs Linux")


def reap_descendants(keep: set[int], timeout: float = 30.0) -> None:
    """Wait for every descendant except ``keep`` (the double) to exit, and reap it, so
    ``RUSAGE_CHILDREN`` includes its CPU."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        others = [p for p in psutil.Process().children() if p.pid not in keep]
        for child in others:
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not [p for p in psutil.Process().children() if p.pid not in keep]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"descendants still running after the load: {[p.pid for p in others]}")
        time.sleep(0.1)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system seconds of a live process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (every core; idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- one load


@dataclass
class Measured:
    name: str
    tables: int
    wall_s: float
    tree_cpu_s: float
    double_cpu_s: float
    machine_cpu_s: float

    @property
    def per_table_cpu_s(self) -> float:
        return self.tree_cpu_s / self.tables


def write_config(directory: Path, *, double: Any, database: str, lake: Path, **task: Any) -> Path:
    import yaml

    config = {
        "sources": {
            "src": {
                "host": double.host,
                "port": double.port,
                "database": database,
                "user": double.user,
                "password_env": PASSWORD_ENV,
                "encrypt": "no",
                "trust_server_certificate": True,
            }
        },
        "destinations": {"lake": {"type": "s3", "url": f"file://{lake}"}},
        "tasks": {TASK: {"source": "src", "destination": "lake", "tables": ["dbo.*"], **task}},
    }
    path = directory / "dtaas.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def create_instance(home: Path) -> None:
    """Create the instance's storage before measuring, as it exists for anyone who loads data
    (a new instance's first use creates its SQLite schemas, a few CPU-seconds)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def run_load(name: str, *, double: Any, database: str, tables: int, work: Path, **task: Any) -> Measured:
    """One ``dtaas load --task t --in-process``, measured, then verified."""
    directory = work / name
    home = directory / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    create_instance(home)
    lake = directory / "lake"
    config_path = write_config(directory, double=double, database=database, lake=lake, **task)
    env = dict(os.environ, DTAAS_CONFIG=str(config_path), DAGSTER_HOME=str(home))
    command = [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", TASK, "--in-process"]
    cpu_before, double_before, machine_before = children_cpu(), process_cpu(double.pid), machine_busy_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=directory, capture_output=True, text=True)
    reap_descendants(keep={double.pid})
    wall = time.perf_counter() - started
    double_cpu = process_cpu(double.pid) - double_before
    measured = Measured(
        name=name,
        tables=tables,
        wall_s=wall,
        tree_cpu_s=children_cpu() - cpu_before + double_cpu,
        double_cpu_s=double_cpu,
        machine_cpu_s=machine_busy_cpu() - machine_before,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: dtaas load exited {done.returncode}:\n{(done.stdout + done.stderr)[-5000:]}")
    verify(name, home=home, lake=lake / database / "dbo", tables=tables, output=done.stdout + done.stderr)
    return measured


def verify(name: str, *, home: Path, lake: Path, tables: int, output: str) -> None:
    """One manifest of ROWS rows per table, and one materialization per table in the run."""
    import dagster as dg

    from dtaas_dagster.destinations.location import open_location
    from dtaas_dagster.manifest import MANIFEST_NAME, read_manifest

    fs = open_location(f"file://{lake}").fs
    wrong = []
    for number in range(tables):
        manifests = list((lake / f"t{number:04d}").glob(f"*/{MANIFEST_NAME}"))
        rows = [read_manifest(fs, str(m.parent))["total_rows"] for m in manifests]
        if rows != [ROWS]:
            wrong.append(f"t{number:04d}: {rows}")
    if wrong:
        raise RuntimeError(f"{name}: {len(wrong)} table(s) not loaded as expected: {wrong[:10]}")
    match = re.search(r"loading partition (\S+)", output)
    if match is None:
        raise RuntimeError(f"{name}: dtaas load did not name its partition:\n{output[-2000:]}")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": match.group(1)}))
        if len(runs) != 1:
            raise RuntimeError(f"{name}: expected one run, found {len(runs)}")
        events = instance.get_records_for_run(
            runs[0].dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10 * tables
        ).records
        keys = {record.event_log_entry.dagster_event.asset_key for record in events}
    if len(events) != tables or len(keys) != tables:
        raise RuntimeError(f"{name}: {len(events)} materializations of {len(keys)} assets, expected {tables}")


# --------------------------------------------------------------------------- report


def print_table(results: list[Measured]) -> None:
    header = (
        f"{'variant':15s} {'tables':>6s} {'wall s':>7s} {'s/table':>7s} {'tree CPU s':>10s} "
        f"{'double CPU s':>12s} {'machine CPU s':>13s} {'CPU s/table':>11s}"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        print(
            f"{m.name:15s} {m.tables:>6d} {m.wall_s:>7.1f} {m.wall_s / m.tables:>7.3f} {m.tree_cpu_s:>10.1f} "
            f"{m.double_cpu_s:>12.1f} {m.machine_cpu_s:>13.1f} {m.per_table_cpu_s:>11.3f}"
        )


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", type=int, default=500, help="tables of the grouped load (default 500)")
    parser.add_argument(
        "--baseline-tables", type=int, default=40, help="tables of the step-per-table load (default 40; 0 skips it)"
    )
    parser.add_argument("--parallel-tables", type=int, default=4, help="parallel_tables of both tasks (default 4)")
    parser.add_argument(
        "--skip-no-checks",
        action="store_true",
        help="skip the grouped load with step_checks: [] (the same tables without asset checks)",
    )
    args = parser.parse_args(argv)

    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    become_subreaper()
    password = "Bench-" + secrets.token_hex(8) + "!"
    os.environ[PASSWORD_ENV] = password  # children inherit it; never on a command line
    with tempfile.TemporaryDirectory(prefix="dtaas-many-") as tmp, DoubleProcess(port=0, password=password) as double:
        started = time.perf_counter()
        seed_database(double, "many", args.tables)
        if args.baseline_tables:
            seed_database(double, "baseline", args.baseline_tables)
        print(
            f"seeded {args.tables} + {args.baseline_tables} tables of {ROWS:,} rows "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        print(f"load average before: {_load_average()} (other processes share these cores)", flush=True)
        results = []
        if args.baseline_tables:
            results.append(
                run_load(
                    "step_per_table",
                    double=double,
                    database="baseline",
                    tables=args.baseline_tables,
                    work=Path(tmp),
                    parallel_tables=args.parallel_tables,
                    tables_per_step=1,
                )
            )
            print(f"  step_per_table: {results[-1].wall_s:.1f}s", flush=True)
        grouped = run_load(
            "grouped",
            double=double,
            database="many",
            tables=args.tables,
            work=Path(tmp),
            parallel_tables=args.parallel_tables,
        )
        results.append(grouped)
        print(f"  grouped: {grouped.wall_s:.1f}s", flush=True)
        if not args.skip_no_checks:
            # the same tables and settings without the step asset checks (docs/configuration.md, step_checks)
            results.append(
                run_load(
                    "grouped_no_checks",
                    double=double,
                    database="many",
                    tables=args.tables,
                    work=Path(tmp),
                    parallel_tables=args.parallel_tables,
                    step_checks=[],
                )
            )
            print(f"  grouped_no_checks: {results[-1].wall_s:.1f}s", flush=True)
        print(f"load average after: {_load_average()}")
        print()
        print_table(results)
        if args.baseline_tables:
            ratio = results[0].per_table_cpu_s / grouped.per_table_cpu_s
            print(f"CPU per table: step_per_table / grouped = {ratio:.1f}x")
        print(
            f"many_tables tables={args.tables} wall_s={grouped.wall_s:.1f} "
            f"per_table_cpu_s={grouped.per_table_cpu_s:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
