"""Run the SQL Server double as its own OS process, and steer it from the test process.

Why a separate process: the double runs DuckDB and a TDS server on threads, and
the code under test (pyodbc, arrow-odbc, Dagster step processes) must reach it
over TCP exactly as it would reach SQL Server. A child process keeps the
double's threads and the GIL out of the test process, and works across
Dagster's multiprocess executor.

Start-up handshake: the parent starts
``python -m dtaas_dagster_tests.sqlserver_double --port N --control-port 0``
with the login password and a random control key in the environment (never on
the command line, where ``ps`` would show them). The child binds both ports on
127.0.0.1 and prints one line ``DOUBLE-READY {"port": .., "control_port": ..}``.
The parent then checks that the TDS port accepts TCP connections.

Control channel: :mod:`multiprocessing.connection` with an HMAC authkey. A
request is ``(method, args, kwargs)``; a reply is ``("ok", value)`` or
``("error", kind, message, number)``. Arrow tables travel as IPC stream bytes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Connection, Listener
from types import TracebackType
from typing import Any

import pyarrow as pa

from dtaas_dagster_tests.sqlserver_double.cdc_control import CdcControls, cdc_handlers
from dtaas_dagster_tests.sqlserver_double.engine_api import SqlServerError

READY_PREFIX = "DOUBLE-READY "
CONTROL_KEY_ENV = "DTAAS_DOUBLE_CONTROL_KEY"
PASSWORD_ENV = "DTAAS_DOUBLE_PASSWORD"
DEFAULT_PASSWORD = "Double-Dev-Passw0rd!"
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class DoubleControlError(RuntimeError):
    """The double's control channel failed, or the double rejected a control call."""


def arrow_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_to_arrow(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def check_database_name(name: str) -> str:
    """Database names the control API accepts: plain identifiers, so quoting is trivial."""
    if not _DATABASE_NAME.match(name):
        raise DoubleControlError(f"database name {name!r} is not a plain identifier; use letters, digits and '_' only")
    return name


# --------------------------------------------------------------------------- child side


def run_tsql(engine: Any, sql: str, database: str | None = None) -> list[Any]:
    """Run a T-SQL batch as the admin login, draining every statement's rows."""
    session = engine.open_session(engine_user(engine), database)
    try:
        results = []
        for result in session.execute(sql):
            if result.result_set is not None:
                for _ in result.result_set.batches:
                    pass
            results.append(result)
        return results
    finally:
        session.close()


def engine_user(engine: Any) -> str:
    return getattr(engine, "user", "sa")


class ControlService:
    """The child's end of the control channel: one thread per connected client."""

    def __init__(self, engine: Any, server: Any, host: str, port: int, authkey: bytes) -> None:
        self._engine = engine
        self._server = server
        self._listener = Listener((host, port), authkey=authkey)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="double-control", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.address[1])

    def start(self) -> ControlService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = self._listener.accept()
            except (OSError, EOFError):
                if self._stopping.is_set():
                    return
                continue  # a client with the wrong key, or one that hung up mid-handshake
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    method, args, kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                conn.send(self._dispatch(method, args, kwargs))

    def _dispatch(self, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple:
        handler = self._handlers().get(method)
        try:
            if handler is None:
                raise DoubleControlError(f"unknown control method {method!r}")
            return ("ok", handler(*args, **kwargs))
        except SqlServerError as exc:
            return ("error", "sql", exc.message, exc.number)
        except Exception as exc:  # reported to the caller, who raises it
            return ("error", type(exc).__name__, str(exc), 0)

    def _handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "ping": lambda: "pong",
            "create_database": self.create_database,
            "drop_database": self.drop_database,
            "seed_table": self.seed_table,
            "execute": self.execute,
            "fault": self.fault,
            "clear_faults": self.clear_faults,
            **cdc_handlers(self._engine),  # capture lag, capture steps, cleanup, purge (see cdc_control.py)
        }

    def create_database(self, name: str, snapshot_isolation: bool = True, cdc: bool = False) -> None:
        quoted = f"[{check_database_name(name)}]"
        run_tsql(self._engine, f"CREATE DATABASE {quoted}")
        if snapshot_isolation:
            run_tsql(self._engine, f"ALTER DATABASE {quoted} SET ALLOW_SNAPSHOT_ISOLATION ON")
        if cdc:
            run_tsql(self._engine, "EXEC sys.sp_cdc_enable_db", database=name)

    def drop_database(self, name: str) -> None:
        self._engine.drop_database(check_database_name(name))

    def seed_table(
        self,
        database: str,
        schema: str,
        table: str,
        arrow_ipc: bytes,
        columns: Any = None,
        primary_key: Sequence[str] | None = None,
    ) -> int:
        data = ipc_to_arrow(arrow_ipc)
        self._engine.seed_table(database, schema, table, data, columns=columns, primary_key=primary_key)
        return data.num_rows

    def execute(self, sql: str, database: str | None = None) -> list[int | None]:
        """Run a T-SQL batch as the admin; returns each statement's row count."""
        return [result.rowcount for result in run_tsql(self._engine, sql, database)]

    def fault(self, name: str, *args: Any, **kwargs: Any) -> Any:
        faults = self._server.faults
        target = getattr(faults, name, None)
        if name.startswith("_") or not callable(target):
            raise DoubleControlError(f"the double's fault API has no method {name!r}")
        return target(*args, **kwargs)

    def clear_faults(self) -> None:
        self._server.faults.clear()


# --------------------------------------------------------------------------- parent side


class DoubleControl(CdcControls):
    """Client of :class:`ControlService`; thread-safe (one request at a time). CDC calls: :class:`CdcControls`."""

    def __init__(self, host: str, port: int, authkey: bytes) -> None:
        self._address = (host, port)
        self._authkey = authkey
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = Client(self._address, authkey=self._authkey)
            try:
                self._conn.send((method, args, kwargs))
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._conn = None
                raise DoubleControlError(
                    f"lost the control channel to the SQL Server double at {self._address}: {exc}; "
                    "is the double process still running?"
                ) from exc
        if reply[0] == "ok":
            return reply[1]
        _, kind, message, number = reply
        if kind == "sql":
            raise SqlServerError(number, message)
        raise DoubleControlError(f"{method} failed in the double ({kind}): {message}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create_database(self, name: str, snapshot_isolation: bool = True, cdc: bool = False) -> None:
        self.call("create_database", name, snapshot_isolation=snapshot_isolation, cdc=cdc)

    def drop_database(self, name: str) -> None:
        self.call("drop_database", name)

    def seed_table(
        self,
        database: str,
        schema: str,
        table: str,
        arrow_table: pa.Table,
        columns: Any = None,
        primary_key: Sequence[str] | None = None,
    ) -> int:
        ipc = arrow_to_ipc(arrow_table)
        return int(self.call("seed_table", database, schema, table, ipc, columns=columns, primary_key=primary_key))

    def execute(self, sql: str, database: str | None = None) -> list[int | None]:
        return list(self.call("execute", sql, database=database))

    def fault(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``server.faults.<name>(*args, **kwargs)`` in the double."""
        return self.call("fault", name, *args, **kwargs)

    def drop_after_rows(self, rows: int, *, matching: str | None = None, times: int = 1) -> None:
        """Close the TCP connection once ``rows`` rows of a result went out (see ``faults.py``)."""
        self.fault("drop_after_rows", rows, matching=matching, times=times)

    def add_latency(self, seconds: float) -> None:
        """Sleep ``seconds`` before answering every request."""
        self.fault("add_latency", seconds)

    def fail_statement(self, pattern: str, *, times: int = 1, number: int = 1205, **kwargs: Any) -> None:
        """The next ``times`` requests whose SQL matches ``pattern`` fail with error ``number``."""
        self.fault("fail_statement", pattern, times=times, number=number, **kwargs)

    def refuse_logins(
        self, *, seconds: float | None = None, attempts: int | None = None, close_socket: bool = False
    ) -> None:
        """Logins fail with 18456 (or the socket closes) for ``seconds`` or ``attempts``."""
        self.fault("refuse_logins", seconds=seconds, attempts=attempts, close_socket=close_socket)

    def clear_faults(self) -> None:
        self.call("clear_faults")


class DoubleProcess(CdcControls):
    """The SQL Server double in a child process, with its control client.

    ``DoubleProcess(port=0)`` picks a free port. Use as a context manager, or call
    :meth:`stop`. The login is ``sa`` with ``password``. ``capture_lag`` starts it
    with CDC capture lagging (seconds, or ``math.inf`` for manual capture steps);
    the CDC calls (``set_capture_lag``, ``capture``, ...) are :class:`CdcControls`.
    """

    def __init__(
        self,
        port: int = 0,
        password: str = DEFAULT_PASSWORD,
        demo: bool = False,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        capture_lag: float | None = None,
    ) -> None:
        self.host = host
        self.user = "sa"
        self.password = password
        self._authkey = secrets.token_bytes(32)
        self._proc = self._spawn(port, demo, capture_lag)
        ready = self._wait_ready(startup_timeout)
        self.port: int = int(ready["port"])
        self.control = DoubleControl(host, int(ready["control_port"]), self._authkey)
        self._wait_tds_accepts(startup_timeout)

    def _spawn(self, port: int, demo: bool, capture_lag: float | None) -> subprocess.Popen[str]:
        env = dict(os.environ, **{PASSWORD_ENV: self.password, CONTROL_KEY_ENV: self._authkey.hex()})
        cmd = [
            sys.executable, "-m", "dtaas_dagster_tests.sqlserver_double",
            "--host", self.host, "--port", str(port), "--control-port", "0",
        ]  # fmt: skip
        if demo:
            cmd.append("--demo")
        if capture_lag is not None:
            cmd += ["--capture-lag", "manual" if capture_lag == float("inf") else repr(float(capture_lag))]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def read() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith(READY_PREFIX):
                    found.update(json.loads(line[len(READY_PREFIX) :]))
                    break
            threading.Thread(target=self._drain_stdout, daemon=True).start()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            code = self._proc.poll()
            self._kill()
            state = f"exited with code {code}" if code is not None else f"not ready after {timeout:.0f} s"
            raise DoubleControlError(f"the SQL Server double process {state}; its stderr is above")
        return found

    def _drain_stdout(self) -> None:
        assert self._proc.stdout is not None
        for _ in self._proc.stdout:
            pass

    def _wait_tds_accepts(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=2):
                    return
            except OSError as exc:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self._kill()
                    raise DoubleControlError(f"the double's TDS port {self.port} does not accept connections") from exc
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    # The control API, forwarded so `double.seed_table(...)` reads naturally.
    def create_database(self, name: str, snapshot_isolation: bool = True, cdc: bool = False) -> None:
        self.control.create_database(name, snapshot_isolation=snapshot_isolation, cdc=cdc)

    def drop_database(self, name: str) -> None:
        self.control.drop_database(name)

    def seed_table(self, database: str, schema: str, table: str, arrow_table: pa.Table, **kwargs: Any) -> int:
        return self.control.seed_table(database, schema, table, arrow_table, **kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A control-channel call (the CDC methods of :class:`CdcControls` go through here)."""
        return self.control.call(method, *args, **kwargs)

    def clear_faults(self) -> None:
        self.control.clear_faults()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        self.control.close()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        return self._proc.returncode

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> DoubleProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
