"""``python -m dtaas_dagster_tests.sqlserver_double``: run the SQL Server double in the foreground.

Examples::

    python -m dtaas_dagster_tests.sqlserver_double --port 14333 --demo
    DTAAS_DOUBLE_PASSWORD=... python -m dtaas_dagster_tests.sqlserver_double --port 0

Ctrl-C or SIGTERM stops it and exits 0. With ``--control-port`` it also serves
the control channel of :mod:`.process` (the key comes from
``DTAAS_DOUBLE_CONTROL_KEY``, hex).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from dtaas_dagster_tests.sqlserver_double.process import (
    CONTROL_KEY_ENV,
    DEFAULT_PASSWORD,
    PASSWORD_ENV,
    READY_PREFIX,
    ControlService,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dtaas_dagster_tests.sqlserver_double",
        description="A SQL Server double (TDS 7.4 on DuckDB) for tests and demos. It is not SQL Server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=14333, help="TDS port; 0 picks a free one (default 14333)")
    parser.add_argument("--demo", action="store_true", help="seed the demo database 'sales' (CDC on every table)")
    parser.add_argument(
        "--password",
        default=None,
        help=f"password of login 'sa' (default: ${PASSWORD_ENV}, else the dev default in the README)",
    )
    parser.add_argument(
        "--control-port", type=int, default=None, help=f"serve the control channel here (key from ${CONTROL_KEY_ENV})"
    )
    parser.add_argument(
        "--capture-lag",
        type=capture_lag,
        default=None,
        metavar="SECONDS|manual",
        help="CDC capture lags like SQL Server's capture job: changes appear SECONDS after commit, or only on a "
        "capture step with 'manual' (default: synchronous capture)",
    )
    return parser.parse_args(argv)


def capture_lag(text: str) -> float:
    """``--capture-lag`` values: seconds >= 0, or 'manual'."""
    if text.strip().lower() == "manual":
        return float("inf")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0 or 'manual'")
    return value


def connection_string(host: str, port: int, database: str) -> str:
    """An ODBC string for Driver 18 (by path when installed from PyPI); the password is left as a placeholder."""
    from dtaas_dagster.sqlserver.drivers import OdbcDriverNotFound, resolve_driver

    try:
        driver = resolve_driver("auto").value
    except OdbcDriverNotFound:
        driver = "ODBC Driver 18 for SQL Server"
    return (
        f"DRIVER={{{driver}}};SERVER={host},{port};DATABASE={database};UID=sa;PWD=<password>;"
        "Encrypt=no;TrustServerCertificate=yes"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    password = args.password or os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD
    from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine
    from dtaas_dagster_tests.sqlserver_double.server import DoubleServer

    engine = DuckDbEngine(password=password, user="sa")
    if args.demo:
        from dtaas_dagster_tests.sqlserver_double.demo import seed_demo

        seed_demo(engine)
    if args.capture_lag is not None:
        engine.cdc.set_capture_lag(args.capture_lag)
    server = DoubleServer(engine, args.host, port=args.port)
    server.start()
    control = None
    if args.control_port is not None:
        key = os.environ.get(CONTROL_KEY_ENV)
        if not key:
            print(f"--control-port needs ${CONTROL_KEY_ENV} (hex) to be set", file=sys.stderr)
            server.stop()
            return 2
        control = ControlService(engine, server, args.host, args.control_port, bytes.fromhex(key)).start()

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ready = {"port": server.port, "control_port": control.port if control else None}
    print(READY_PREFIX + json.dumps(ready), flush=True)
    database = "sales" if args.demo else "master"
    print(f"SQL Server double listening on {args.host}:{server.port} (login sa). ODBC connection string:", flush=True)
    print("  " + connection_string(args.host, server.port, database), flush=True)
    while not stop.wait(0.5):
        pass
    if control is not None:
        control.stop()
    stop_server(server, args.host)
    return 0


def stop_server(server: Any, host: str, timeout: float = 5.0) -> None:
    """server.stop(), nudging a thread blocked in accept() with one last connection.

    Closing a listening socket does not wake a thread blocked in accept() on
    Linux, so stop() would wait for its join timeout; a connection does wake it.
    """
    port = server.port
    stopper = threading.Thread(target=server.stop, name="double-stop", daemon=True)
    stopper.start()
    stopper.join(0.05)
    if stopper.is_alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                pass
        except OSError:
            pass
    stopper.join(timeout)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: DuckDB's bindings print reference-leak noise there, and there is
    # nothing left to flush (all state is in memory).
    os._exit(code)
