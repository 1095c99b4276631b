"""Helpers for the double's engine tests (the fixtures are in conftest.py)."""

from typing import Any


def run(session: Any, sql: str) -> None:
    """Run a batch to the end, ignoring its results."""
    for _ in session.execute(sql):
        pass
