"""Command line: ``load`` (a full load from a script), ``check`` (preflight), ``health``
(:mod:`dtaas_dagster.health`), ``tables``, ``pools``, ``demo`` and ``dev``.

``load`` names a new snapshot partition (or takes an existing one), registers
it, and submits the ``<task>_tables`` run through the instance's run
coordinator and run launcher (``dagster job launch``), then follows the run and
exits 0 only when every table loaded. ``--in-process`` runs it in this
process's child instead (``dagster job execute``), for machines without a
``dagster-daemon``.

``demo`` and ``dev`` run against the SQL Server double from the test package
(``pip install -e '.[dev]'``): they start it with its demo database ``sales``,
point the example ``dtaas.yaml`` at it through environment variables, and stop
it afterwards. ``demo`` runs the ``demo`` task's full load into
``.dtaas/lake/`` and prints what it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / ".dtaas"
DEMO_TASK = "demo"


def _dagster_bin() -> str:
    return str(Path(sys.executable).with_name("dagster"))


@contextmanager
def demo_environment(lake: Path) -> Iterator[dict[str, str]]:
    """Start the double with the demo database and yield the environment the example config needs."""
    from dtaas_dagster_tests.sqlserver_double.process import DoubleProcess

    password = os.environ.get("DTAAS_SALES_PASSWORD") or "Demo-" + secrets.token_urlsafe(12)
    home = STATE_DIR / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    with DoubleProcess(port=0, password=password, demo=True) as double:
        env = dict(os.environ)
        env.update(
            DTAAS_CONFIG=os.environ.get("DTAAS_CONFIG") or str(REPO_ROOT / "dtaas.yaml"),
            DTAAS_SQLSERVER_PORT=str(double.port),
            DTAAS_SALES_PASSWORD=password,
            DTAAS_LAKE_URL=os.environ.get("DTAAS_LAKE_URL") or f"file://{lake}",
            DAGSTER_HOME=str(home),
        )
        print(
            f"SQL Server double with demo database 'sales' on 127.0.0.1:{double.port} "
            f"(login sa, password {password}; config {env['DTAAS_CONFIG']})"
        )
        yield env


def summarize_lake(lake: Path) -> list[dict]:
    """The newest manifest of every table under ``lake``: table, partition, rows, files, where."""
    newest: dict[str, dict] = {}
    for manifest_path in lake.rglob("_manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        raw_table = manifest.get("table")
        table = f"{raw_table.get('schema')}.{raw_table.get('name')}" if isinstance(raw_table, dict) else str(raw_table)
        entry = {
            "table": table,
            "partition": manifest.get("partition_key"),
            "rows": manifest.get("total_rows", manifest.get("rows")),
            "files": len(manifest.get("files", [])),
            "bytes": sum(int(f.get("bytes", 0)) for f in manifest.get("files", [])),
            "where": str(manifest_path.parent),
            "created_at": manifest.get("created_at", ""),
        }
        if table not in newest or str(entry["created_at"]) > str(newest[table]["created_at"]):
            newest[table] = entry
    return sorted(newest.values(), key=lambda e: e["table"])


def run_demo() -> int:
    lake = STATE_DIR / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    log_path = STATE_DIR / "demo.log"
    with demo_environment(lake) as env:
        # No daemon runs here, so the demo loads in this process (dtaas load --in-process);
        # `make dev` shows the same load going through the UI, the queue and the launcher.
        command = [sys.executable, "-m", "dtaas_dagster.cli", "load", "--task", DEMO_TASK, "--in-process"]
        print("running: dtaas load --task demo --in-process")
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if " - INFO - " in line or "ERROR" in line or line.startswith("task "):
                    print("  " + line.split(" - ")[-1].rstrip())
            code = process.wait()
    if code != 0:
        print(f"demo failed (exit {code}); full log: {log_path}", file=sys.stderr)
        return code
    print(f"\nLoaded into {lake} (full log: {log_path}):")
    print(f"  {'table':<28}{'rows':>8}{'files':>7}{'bytes':>10}  partition / where")
    total = 0
    for entry in summarize_lake(lake):
        total += int(entry["rows"] or 0)
        print(
            f"  {entry['table']:<28}{entry['rows']:>8}{entry['files']:>7}{entry['bytes']:>10}  "
            f"{entry['partition']}\n  {'':<28}{entry['where']}"
        )
    print(f"  total rows: {total}")
    return 0


def run_dev(port: int) -> int:
    lake = STATE_DIR / "lake"
    with demo_environment(lake) as env:
        command = [
            "env",
            "--default-signal=INT",
            _dagster_bin(),
            "dev",
            "-m",
            "dtaas_dagster",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it and the double)")
        # Dagster 1.13 suggests `dg dev` (dagster-dg-cli, not a dependency: docs/operations.md#local-development)
        # on every start; that advice is about our command line, so it is not shown.
        env["PYTHONWARNINGS"] = "ignore:Function `dev_command` is superseded"
        try:
            # From DAGSTER_HOME: `dagster dev` warns about the repository's dagster.yaml in any other folder.
            return subprocess.call(command, env=env, cwd=env["DAGSTER_HOME"])
        except KeyboardInterrupt:
            return 0


def run_check(config_path: str | None, *, observe: bool = False) -> int:
    """Preflight: what a load would refuse before moving data, refused here with the same message.

    Every source reachable (login, snapshot isolation, CDC), every destination
    writable (credentials resolved, a probe object written and deleted), every
    task's definitions buildable, and every table's options checked against its
    catalog and planned exactly as a load plans it (shared code: plan_table).
    ``observe`` records each planned table's columns as an observation of its
    asset (:mod:`dtaas_dagster.observe`).
    """
    from dtaas_dagster.config import ConfigError, load_config
    from dtaas_dagster.errors import PermanentLoadError
    from dtaas_dagster.factory import build_io_manager, task_specs
    from dtaas_dagster.sqlserver.errors import SqlServerError
    from dtaas_dagster.sqlserver.resource import SqlServerResource
    from dtaas_dagster.table_load import plan_table

    config = load_config(config_path)
    failures = 0
    observed = []

    def failed(message: str) -> None:
        nonlocal failures
        failures += 1
        print(f"  FAILED: {message}", file=sys.stderr)

    resources: dict[str, SqlServerResource] = {}
    for name, source in config.sources.items():
        try:
            resource = SqlServerResource.from_source(name, source, password=source.password())
            info = resource.server_info()
            resources[name] = resource
            print(
                f"source {name}: SQL Server {info.product_version} ({info.edition}), database {info.database}, "
                f"snapshot isolation {'allowed' if info.snapshot_isolation else 'NOT allowed'}, CDC "
                f"{'enabled' if info.cdc_enabled else 'disabled'}"
            )
        except (SqlServerError, ConfigError) as exc:
            print(f"source {name}:", file=sys.stderr)
            failed(str(exc))
    for task_name, task in config.tasks.items():
        manager = build_io_manager(config.destinations[task.destination], task, name=task.destination)
        try:
            print(f"destination {task.destination} (task {task_name}): writable at {manager.check_writable()}")
        except (PermanentLoadError, OSError) as exc:
            print(f"destination {task.destination} (task {task_name}):", file=sys.stderr)
            failed(str(exc))
    for task_name, task in config.tasks.items():
        print(f"task {task_name}:")
        found = resources.get(task.source)
        if found is None:
            failed(f"source {task.source} is not reachable (above); its tables were not checked")
            continue
        resource = found

        def listed(r: SqlServerResource = resource) -> list[tuple[str, str]]:
            return [(t.schema, t.name) for t in r.list_tables()]

        try:
            specs = task_specs(task_name=task_name, config=config, list_tables=listed)
        except ConfigError as exc:
            failed(str(exc))
            continue
        for spec in specs:
            try:
                planned = plan_table(spec, resource)
            except (PermanentLoadError, SqlServerError) as exc:
                failed(str(exc))
                continue
            description = planned.facts.description
            if observe:
                from dtaas_dagster.observe import catalog_observation

                observed.append(catalog_observation(spec, planned))
            print(
                f"  ok {spec.qualified}: {len(planned.plan.columns)} columns, ~{description.row_estimate or 0} "
                f"rows, key {list(planned.primary_key) or 'none'}"
            )
    if observe and observed:
        from dtaas_dagster.observe import record_observations

        where = record_observations(observed)
        print(f"recorded the columns of {len(observed)} table(s) as asset observations in {where}")
    return 1 if failures else 0


def run_tables(config_path: str | None, source_name: str | None) -> int:
    """List the user tables of each source (or one) with row estimates: what `tables:` can name."""
    from dtaas_dagster.config import load_config
    from dtaas_dagster.sqlserver.errors import SqlServerError
    from dtaas_dagster.sqlserver.resource import SqlServerResource

    config = load_config(config_path)
    names = [source_name] if source_name else list(config.sources)
    failures = 0
    for name in names:
        if name not in config.sources:
            print(f"source {name} is not defined; defined sources: {', '.join(config.sources)}", file=sys.stderr)
            return 2
        source = config.sources[name]
        resource = SqlServerResource.from_source(name, source, password=source.password())
        try:
            tables = resource.list_tables()
        except SqlServerError as exc:
            failures += 1
            print(f"source {name}: {exc}", file=sys.stderr)
            continue
        print(f"source {name} ({source.host}:{source.port}, database {source.database}): {len(tables)} tables")
        for table in tables:
            estimate = "?" if table.row_estimate is None else f"{table.row_estimate:,}"
            print(f"  {table.schema}.{table.name:<40} ~{estimate} rows")
    return 1 if failures else 0


def run_pools(config_path: str | None) -> int:
    """Give every source server's pool its max_concurrent_reads, through Dagster's own CLI."""
    from dtaas_dagster.config import load_config
    from dtaas_dagster.factory import pool_name

    config = load_config(config_path)
    limits: dict[str, int] = {}
    for source in config.sources.values():
        pool = pool_name(source)
        limits[pool] = min(limits.get(pool, source.max_concurrent_reads), source.max_concurrent_reads)
    for pool, limit in sorted(limits.items()):
        command = [_dagster_bin(), "instance", "concurrency", "set", pool, str(limit)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            print(f"setting pool {pool} failed: {completed.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"pool {pool}: {limit} concurrent table reads")
    return 0


def _add_health_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from dtaas_dagster.health import DEFAULT_DAEMON_MAX_AGE, KINDS

    health = commands.add_parser(
        "health", help="is the running system healthy: daemon, sources, destinations, CDC lag (exit 0 = healthy)"
    )
    health.add_argument("--config", help="dtaas.yaml (default: $DTAAS_CONFIG or the example)")
    health.add_argument("--json", action="store_true", help="print one JSON object for machines")
    health.add_argument(
        "--daemon-max-age",
        type=float,
        default=DEFAULT_DAEMON_MAX_AGE,
        metavar="SECONDS",
        help=f"a daemon heartbeat older than this fails (default {DEFAULT_DAEMON_MAX_AGE:g})",
    )
    health.add_argument(
        "--skip", action="append", choices=KINDS, default=[], help="leave out a kind of probe (repeatable)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dtaas", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="start a full load of a task and wait for it (exit 0 = every table loaded)")
    load.add_argument("--task", required=True, help="the task to load")
    load.add_argument("--config", help="dtaas.yaml (default: $DTAAS_CONFIG or the example)")
    load.add_argument("--partition", help="reload this existing partition instead of starting a new snapshot")
    load.add_argument(
        "--in-process",
        action="store_true",
        help="run it here (dagster job execute) instead of through the run queue and launcher",
    )
    load.add_argument("--timeout", type=float, help="stop waiting after this many seconds (the run goes on)")
    check = commands.add_parser("check", help="preflight: connect to every source and find every table")
    check.add_argument("--config", help="dtaas.yaml (default: $DTAAS_CONFIG or the example)")
    check.add_argument(
        "--observe",
        action="store_true",
        help="record each table's columns, types and key in the Dagster instance ($DAGSTER_HOME)",
    )
    _add_health_parser(commands)
    tables = commands.add_parser("tables", help="list the tables of each source with row estimates")
    tables.add_argument("--config", help="dtaas.yaml (default: $DTAAS_CONFIG or the example)")
    tables.add_argument("--source", help="only this source")
    pools = commands.add_parser("pools", help="set each SQL Server's concurrency pool to its max_concurrent_reads")
    pools.add_argument("--config", help="dtaas.yaml (default: $DTAAS_CONFIG or the example)")
    commands.add_parser("demo", help="run the demo task against the SQL Server double into .dtaas/lake")
    dev = commands.add_parser("dev", help="dagster dev against the SQL Server double")
    dev.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    from dtaas_dagster.config import ConfigError

    try:
        if args.command == "demo":
            return run_demo()
        if args.command == "dev":
            return run_dev(args.port)
        if args.command == "tables":
            return run_tables(args.config, args.source)
        if args.command == "pools":
            return run_pools(args.config)
        if args.command == "health":
            from dtaas_dagster.health import run_health

            return run_health(args.config, as_json=args.json, daemon_max_age=args.daemon_max_age, skip=args.skip)
        if args.command == "load":
            from dtaas_dagster.launch import run_load

            return run_load(
                task=args.task,
                config_path=args.config,
                partition=args.partition,
                in_process=args.in_process,
                timeout=args.timeout,
            )
        if args.observe and not os.environ.get("DAGSTER_HOME"):
            raise ConfigError(
                "--observe records into the Dagster instance: set DAGSTER_HOME to the directory of "
                "the dagster.yaml your UI uses"
            )
        return run_check(args.config, observe=args.observe)
    except ConfigError as exc:
        print(f"dtaas {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
