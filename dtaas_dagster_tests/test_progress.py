"""Progress lines: at most one every PROGRESS_EVERY_SECONDS per table, whatever the batch size
(issue 7 papercut: ``batch: {mb: N}`` with tiny batches logged one line per batch)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from dtaas_dagster import table_load


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, **kwargs: object) -> None:  # kwargs: the JSON-log fields (logs.py)
        self.lines.append(message)


class _Clock:
    """Each reading is ``step`` seconds after the previous one: time without sleeping."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _run(monkeypatch: pytest.MonkeyPatch, *, batches: int, seconds_per_batch: float) -> list[str]:
    # only table_load's view of the clock changes, not the process's
    monkeypatch.setattr(table_load, "time", SimpleNamespace(monotonic=_Clock(seconds_per_batch)))
    log = _Lines()
    one_row = pa.record_batch({"id": pa.array([1], pa.int32())})
    stream = table_load.progress(iter([one_row] * batches), log=log, table="dbo.t", estimate=batches)  # type: ignore[arg-type]
    assert sum(b.num_rows for b in stream) == batches  # every batch passes through unchanged
    return log.lines


def test_many_tiny_batches_give_one_line_per_interval_not_one_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10,000 batches 0.01 s apart = 100 s: one line per 5 s, and the total
    lines = _run(monkeypatch, batches=10_000, seconds_per_batch=0.01)
    interval = table_load.PROGRESS_EVERY_SECONDS
    assert 100 / interval - 1 <= len(lines) - 1 <= 100 / interval
    assert re.fullmatch(r"dbo\.t: [45]\d\d / ~10,000 rows \(5%\), [\d,]+ rows/s", lines[0]), lines[0]
    assert lines[-1].startswith("dbo.t: read 10,000 / ~10,000 rows (100%) in 100.0s")


def test_slow_batches_each_get_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[Any] = _run(monkeypatch, batches=4, seconds_per_batch=table_load.PROGRESS_EVERY_SECONDS * 2)
    assert [line.split(",")[0] for line in lines[:4]] == [
        "dbo.t: 1 / ~4 rows (25%)",
        "dbo.t: 2 / ~4 rows (50%)",
        "dbo.t: 3 / ~4 rows (75%)",
        "dbo.t: 4 / ~4 rows (100%)",
    ]
    assert len(lines) == 5 and lines[-1].startswith("dbo.t: read 4 / ~4 rows (100%) in ")
