"""Snowflake for the tests (imported by conftest.py): fakesnow's server as a process, or a real account.

- ``snowflake`` (session, two parameters): ``fakesnow``, fakesnow in server mode
  (:mod:`dtaas_dagster_tests.fakesnow_server`, a child process on 127.0.0.1, a
  free port) reached by the real ``snowflake-connector-python`` over HTTP; and
  ``account``, a real account, used when ``DTAAS_TEST_SNOWFLAKE_ACCOUNT`` is set
  (with ``DTAAS_TEST_SNOWFLAKE_USER``, ``DTAAS_TEST_SNOWFLAKE_PASSWORD`` or
  ``DTAAS_TEST_SNOWFLAKE_PRIVATE_KEY_FILE``, ``DTAAS_TEST_SNOWFLAKE_ROLE``,
  ``DTAAS_TEST_SNOWFLAKE_WAREHOUSE``, ``DTAAS_TEST_SNOWFLAKE_DATABASE``) and
  skipped with that reason otherwise. Every Snowflake test runs on both.
- ``snowflake_schema`` (function): a fresh schema ``T_<random>`` in the test
  database, dropped afterwards; ``destination()`` gives the dtaas.yaml block for
  it (with ``cdc_apply: delete_insert`` on fakesnow, which cannot MERGE inside a
  transaction; a real account runs the MERGE), ``query()`` runs SQL for assertions.
- ``fakesnow`` (function): the same target, for tests that inject faults into
  the server (skipped on a real account, with the reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REAL_ACCOUNT_ENV = "DTAAS_TEST_SNOWFLAKE_ACCOUNT"
PASSWORD_ENV = "DTAAS_TEST_SNOWFLAKE_PASSWORD"
TEST_DATABASE = "DTAAS_TEST"


def targets_real_account() -> bool:
    return bool(os.environ.get(REAL_ACCOUNT_ENV, "").strip())


@dataclass
class SnowflakeTarget:
    """Where the tests' Snowflake is, and (for fakesnow) its fault controls."""

    account: str
    user: str
    database: str
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    role: str | None = None
    warehouse: str | None = None
    private_key_file: str | None = None
    control: Path | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def is_fake(self) -> bool:
        return self.control is not None

    def connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "paramstyle": "qmark",
            "session_parameters": {"TIMEZONE": "UTC"},
        }
        for name in ("host", "port", "protocol", "role", "warehouse"):
            if getattr(self, name) is not None:
                args[name] = getattr(self, name)
        if self.private_key_file:
            args["private_key_file"] = self.private_key_file
        else:
            args["password"] = os.environ[PASSWORD_ENV]
        return args

    def connect(self) -> Any:
        import snowflake.connector

        return snowflake.connector.connect(**self.connect_args())

    # ---- faults (fakesnow only)

    def set_faults(self, *rules: dict[str, Any]) -> None:
        assert self.control is not None, "faults need the fakesnow server"
        (self.control / "faults.json").write_text(json.dumps(list(rules)))

    def clear_faults(self) -> None:
        if self.control is not None:
            (self.control / "faults.json").write_text("[]")

    def hits(self) -> list[dict[str, Any]]:
        assert self.control is not None
        path = self.control / "hits.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def statements(self) -> list[str]:
        """Every SQL text clients sent since the server started, in order."""
        assert self.control is not None
        path = self.control / "statements.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_fakesnow(control: Path) -> SnowflakeTarget:
    process = subprocess.Popen(
        [sys.executable, "-m", "dtaas_dagster_tests.fakesnow_server", "--port", "0", "--control", str(control)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"fakesnow server did not start (said {line!r})")
    port = int(line.split()[1])
    target = SnowflakeTarget(
        account="fakesnow",
        user="fake",
        database=TEST_DATABASE,
        host="127.0.0.1",
        port=port,
        protocol="http",
        control=control,
        process=process,
    )
    os.environ.setdefault(PASSWORD_ENV, "snow")
    deadline = time.monotonic() + 60
    while True:  # the port is bound before uvicorn serves; wait for a login to work
        try:
            with target.connect() as connection:
                connection.cursor().execute(f'CREATE DATABASE IF NOT EXISTS "{TEST_DATABASE}"')
            return target
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                target.stop()
                raise
            time.sleep(0.2)


def real_account() -> SnowflakeTarget:
    env = os.environ
    return SnowflakeTarget(
        account=env[REAL_ACCOUNT_ENV],
        user=env["DTAAS_TEST_SNOWFLAKE_USER"],
        database=env.get("DTAAS_TEST_SNOWFLAKE_DATABASE", TEST_DATABASE),
        role=env.get("DTAAS_TEST_SNOWFLAKE_ROLE"),
        warehouse=env.get("DTAAS_TEST_SNOWFLAKE_WAREHOUSE"),
        private_key_file=env.get("DTAAS_TEST_SNOWFLAKE_PRIVATE_KEY_FILE"),
    )


@pytest.fixture(scope="session", params=["fakesnow", "account"])
def snowflake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnowflakeTarget]:
    if request.param == "account":
        if not targets_real_account():
            pytest.skip(
                f"no real Snowflake account: set {REAL_ACCOUNT_ENV}, DTAAS_TEST_SNOWFLAKE_USER and "
                f"{PASSWORD_ENV} (or DTAAS_TEST_SNOWFLAKE_PRIVATE_KEY_FILE) to run this against one"
            )
        target = real_account()
    else:
        target = start_fakesnow(tmp_path_factory.mktemp("fakesnow"))
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture()
def fakesnow(snowflake: SnowflakeTarget) -> SnowflakeTarget:
    if not snowflake.is_fake:
        pytest.skip("injects faults into the fakesnow server; a real account cannot be made to fail on cue")
    return snowflake


@dataclass
class SnowflakeSchema:
    """A fresh schema for one test."""

    target: SnowflakeTarget
    database: str
    schema: str

    def destination(self, **overrides: Any) -> dict[str, Any]:
        """The dtaas.yaml destination block that loads into this schema."""
        t = self.target
        block: dict[str, Any] = {
            "type": "snowflake",
            "account": t.account,
            "user": t.user,
            "database": self.database,
            "schema": self.schema,
        }
        if t.private_key_file:
            block["private_key_file"] = t.private_key_file
        else:
            block["password_env"] = PASSWORD_ENV
        for name in ("host", "port", "protocol", "role", "warehouse"):
            if getattr(t, name) is not None:
                block[name] = getattr(t, name)
        if t.is_fake:  # fakesnow cannot MERGE inside a transaction (docs/snowflake.md#fakesnow)
            block["cdc_apply"] = "delete_insert"
        block.update(overrides)
        return block

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.target.connect() as connection:
            cursor = connection.cursor()
            cursor.execute(f'USE SCHEMA "{self.database}"."{self.schema}"')
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def tables(self) -> list[str]:
        rows = self.query(
            f'SELECT TABLE_NAME FROM "{self.database}".INFORMATION_SCHEMA.TABLES '
            "WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (self.schema,),
        )
        return [r[0] for r in rows]

    def stage_files(self, stage: str = "_DTAAS_STAGE") -> list[str]:
        return sorted(
            str(r[0]).split("/", 1)[-1] for r in self.query(f'LIST @"{self.database}"."{self.schema}"."{stage}"')
        )


@pytest.fixture()
def snowflake_schema(snowflake: SnowflakeTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[SnowflakeSchema]:
    if snowflake.is_fake:
        monkeypatch.setenv(PASSWORD_ENV, "snow")
    schema = f"T_{uuid.uuid4().hex[:10].upper()}"
    with snowflake.connect() as connection:
        connection.cursor().execute(f'CREATE SCHEMA IF NOT EXISTS "{snowflake.database}"."{schema}"')
    try:
        yield SnowflakeSchema(snowflake, snowflake.database, schema)
    finally:
        snowflake.clear_faults()
        if not snowflake.is_fake:  # fakesnow's memory goes with the server; a real account must be tidied
            with snowflake.connect() as connection:
                connection.cursor().execute(f'DROP SCHEMA IF EXISTS "{snowflake.database}"."{schema}" CASCADE')
