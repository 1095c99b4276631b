"""Smoke test of bench/snowflake.py: it runs end to end through fakesnow and prints its summary line.

No timing is asserted; the benchmark checks its own results (row counts after
the load and the merge) and exits non-zero when they are wrong.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^snowflake load_rows_per_s=\d+ merge_rows_per_s=\d+$")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_snowflake_benchmark_prints_its_summary_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "snowflake.py"), "--rows", "5000", "--changes", "500",
         "--baseline-rows", "50"],
        capture_output=True, text=True, cwd=REPO, timeout=880,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    table = "\n".join(lines)
    for phase in ("load put_s", "load copy_s", "load replace_s", "merge merge_s", "rows_insert (executemany)"):
        assert phase in table, f"{phase} missing:\n{table}"
    assert re.search(r"^load total \(pipeline\) +5,000 ", table, re.MULTILINE), table
