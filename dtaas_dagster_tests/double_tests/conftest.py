"""Fixtures for the double's engine tests: a fresh in-process engine with database ``sales``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dtaas_dagster_tests.sqlserver_double.engine import DuckDbEngine


@pytest.fixture()
def engine() -> DuckDbEngine:
    engine = DuckDbEngine()
    engine.create_database("sales")
    return engine


@pytest.fixture()
def session(engine: DuckDbEngine) -> Iterator[Any]:
    """A session on ``sales`` through the engine's Python API (no network)."""
    s = engine.open_session("sa", "sales")
    yield s
    s.close()
