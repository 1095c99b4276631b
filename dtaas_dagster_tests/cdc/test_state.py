"""The CDC sensor's decisions (cdc/state.py), as a pure function of what a tick sees."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

from dtaas_dagster.cdc.state import (
    FAILED,
    HELD_REASON_CHARS,
    IN_FLIGHT,
    LOST_REQUEST_SECONDS,
    MAX_BACKOFF_SECONDS,
    PERMANENT,
    SUCCESS,
    Pending,
    SnapshotInfo,
    TableInfo,
    TableState,
    TickInput,
    dump_cursor,
    load_cursor,
    tick,
)
from dtaas_dagster.sqlserver.cdc import CaptureInstance, CdcProbe, ChangeWindow, InstanceProbe
from dtaas_dagster.sqlserver.lsn import Lsn

T = TableInfo("t/dbo/orders", "dbo", "orders", "dbo.orders")
NOW = 1_000_000.0


def L(n: int) -> Lsn:  # noqa: N802 - short on purpose: LSNs in tests
    return Lsn(n)


def instance(name: str, start: int) -> CaptureInstance:
    return CaptureInstance("dbo", "orders", name, L(start), dt.datetime(2026, 1, 1) + dt.timedelta(seconds=start))


def given(
    *,
    max_lsn: int,
    probes: dict[str, tuple[int, int | None]],
    instances: list[CaptureInstance] | None = None,
    mode: str = "cdc",
    start: str = "now",
    status: dict[str, str] | None = None,
    snapshots: dict[str, SnapshotInfo] | None = None,
    gap: str = "fail",
    now: float = NOW,
    errors: dict[str, str] | None = None,
) -> TickInput:
    return TickInput(
        task="t",
        mode=mode,
        start=start,
        on_retention_gap=gap,
        poll_seconds=10,
        now=now,
        instances=instances if instances is not None else [instance("dbo_orders", 1)],
        probe=CdcProbe(
            L(max_lsn),
            {n: InstanceProbe(n, L(lo), None if first is None else L(first)) for n, (lo, first) in probes.items()},
        ),
        run_status=status or {},
        snapshots=snapshots or {},
        run_errors=errors or {},
    )


def at(next_lsn: int, **kw: Any) -> dict[str, TableState]:
    return {T.name: TableState(next_lsn=L(next_lsn).hex, instance="dbo_orders", **kw)}


def test_a_changed_table_gets_the_window_from_its_position_to_max() -> None:
    out = tick([T], at(20), given(max_lsn=80, probes={"dbo_orders": (1, 30)}))
    assert out.windows == {T.name: ChangeWindow("dbo_orders", L(20), L(80))}
    assert out.states[T.name].next_lsn == L(20).hex  # moves only when the run succeeds


def test_an_idle_table_moves_past_max_without_a_run_so_cleanup_never_leaves_it_behind() -> None:
    out = tick([T], at(20), given(max_lsn=80, probes={"dbo_orders": (1, None)}))
    assert out.windows == {} and out.states[T.name].next_lsn == L(81).hex
    # later the cleanup job moves the min LSN far past 20 (up to where the last tick saw max): no gap
    later = tick([T], out.states, given(max_lsn=90, probes={"dbo_orders": (81, None)}))
    assert later.gaps == {} and later.states[T.name].next_lsn == L(91).hex


def test_a_window_moves_the_position_only_when_its_run_succeeds_and_a_failure_asks_again_from_the_same_lsn() -> None:
    window = ChangeWindow("dbo_orders", L(20), L(80))
    pending = Pending("k1", "p1", "cdc", NOW, window.as_config())
    in_flight = tick(
        [T],
        at(20, pending=pending),
        given(max_lsn=99, probes={"dbo_orders": (1, 85)}, status={f"k1|{T.name}": IN_FLIGHT}),
    )
    assert in_flight.windows == {} and "still in flight" in in_flight.log[0]
    failed = tick(
        [T], at(20, pending=pending), given(max_lsn=99, probes={"dbo_orders": (1, 25)}, status={f"k1|{T.name}": FAILED})
    )
    state = failed.states[T.name]
    assert failed.windows == {} and state.next_lsn == L(20).hex and state.retry_after == NOW + 20
    waiting = tick([T], failed.states, given(max_lsn=120, probes={"dbo_orders": (1, 25)}, now=NOW + 18))
    assert waiting.windows == {} and "waiting 2s before requesting again" in waiting.log[0]
    # the tick that ends the backoff may come a few ms early (the daemon's loop): it retries
    retried = tick([T], failed.states, given(max_lsn=120, probes={"dbo_orders": (1, 25)}, now=NOW + 19.99))
    assert retried.windows == {T.name: ChangeWindow("dbo_orders", L(20), L(120))}  # wider, same start
    done = tick(
        [T],
        at(20, pending=pending),
        given(max_lsn=99, probes={"dbo_orders": (1, None)}, status={f"k1|{T.name}": SUCCESS}),
    )
    assert done.states[T.name].next_lsn == L(99).increment().hex  # 81 after the window, then idle to 100


def _held() -> tuple[dict[str, TableState], Pending]:
    """dbo.orders after its window run failed with an error a retry cannot fix."""
    pending = Pending("k1", "p1", "cdc", NOW, ChangeWindow("dbo_orders", L(20), L(80)).as_config())
    out = tick(
        [T],
        at(20, pending=pending),
        given(
            max_lsn=99,
            probes={"dbo_orders": (1, 25)},
            status={f"k1|{T.name}": PERMANENT},
            errors={f"k1|{T.name}": "columns changed (schema_drift: fail)"},
        ),
    )
    state = out.states[T.name]
    assert out.windows == {} and state.held == "columns changed (schema_drift: fail)"
    assert state.pending == pending and state.next_lsn == L(20).hex  # the request is kept, nothing skipped
    assert "held: its cdc run (partition p1) failed with an error a retry cannot fix: columns changed" in out.log[0]
    assert "re-executed and loads the table, the table's config changes, or a new snapshot" in out.log[0]
    return out.states, pending


def test_a_permanent_failure_holds_the_table_instead_of_asking_again_every_hour() -> None:
    states, _ = _held()
    for status in (PERMANENT, FAILED, None):  # however the kept request's runs look, short of a success
        later = tick(
            [T],
            states,
            given(
                max_lsn=150,
                probes={"dbo_orders": (1, 25)},
                status={f"k1|{T.name}": status} if status else {},
                now=NOW + MAX_BACKOFF_SECONDS + LOST_REQUEST_SECONDS + 1,
            ),
        )
        assert later.windows == {} and later.states[T.name].held and later.states[T.name].pending is not None
        assert any("held: its cdc run (partition p1) failed" in line for line in later.log)


def test_a_held_table_keeps_a_short_reason_in_the_cursor() -> None:
    pending = Pending("k1", "p1", "cdc", NOW, ChangeWindow("dbo_orders", L(20), L(80)).as_config())
    key = f"k1|{T.name}"
    out = tick(
        [T],
        at(20, pending=pending),
        given(max_lsn=99, probes={"dbo_orders": (1, 25)}, status={key: PERMANENT}, errors={key: "x" * 5000}),
    )
    assert len(out.states[T.name].held or "") == HELD_REASON_CHARS and out.states[T.name].held.endswith("...")


def test_a_held_table_resumes_after_a_successful_re_execution_of_its_run() -> None:
    states, _ = _held()
    done = tick([T], states, given(max_lsn=99, probes={"dbo_orders": (1, 90)}, status={f"k1|{T.name}": SUCCESS}))
    state = done.states[T.name]
    assert state.held is None and state.pending is None and state.next_lsn == L(81).hex
    assert done.windows == {T.name: ChangeWindow("dbo_orders", L(81), L(99))}  # the changes since, at once


def test_a_held_table_is_requested_again_from_the_same_lsn_when_its_config_changes() -> None:
    states, _ = _held()
    same = tick([T], states, given(max_lsn=120, probes={"dbo_orders": (1, 25)}))
    assert same.windows == {}
    changed = replace(T, fingerprint="after the fix")
    again = tick([changed], states, given(max_lsn=120, probes={"dbo_orders": (1, 25)}))
    assert again.windows == {T.name: ChangeWindow("dbo_orders", L(20), L(120))}
    assert again.states[T.name].held is None and "config changed" in again.log[0]


def test_a_held_table_continues_after_a_new_snapshot() -> None:
    states, _ = _held()
    snapshot = SnapshotInfo("run-s", "2026-01-01T000000Z-full-x", L(100))
    out = tick([T], states, given(max_lsn=130, probes={"dbo_orders": (1, 110)}, snapshots={T.name: snapshot}))
    assert out.states[T.name].held is None and out.states[T.name].pending is None
    assert out.windows == {T.name: ChangeWindow("dbo_orders", L(101), L(130))}


def test_a_request_whose_run_never_appeared_is_asked_again() -> None:
    pending = Pending("k1", "p1", "cdc", NOW, ChangeWindow("dbo_orders", L(20), L(80)).as_config())
    waiting = tick([T], at(20, pending=pending), given(max_lsn=99, probes={"dbo_orders": (1, 30)}, now=NOW + 5))
    assert waiting.windows == {}
    lost = tick(
        [T],
        at(20, pending=pending),
        given(max_lsn=99, probes={"dbo_orders": (1, 30)}, now=NOW + LOST_REQUEST_SECONDS + 1),
    )
    assert lost.states[T.name].pending is None and lost.states[T.name].failures == 1


def test_a_new_capture_instance_takes_over_at_its_start_lsn_with_nothing_lost_or_repeated() -> None:
    both = [instance("dbo_orders", 1), instance("dbo_orders_v2", 50)]
    first = tick(
        [T], at(20), given(max_lsn=80, instances=both, probes={"dbo_orders": (1, 30), "dbo_orders_v2": (50, 55)})
    )
    assert first.windows == {T.name: ChangeWindow("dbo_orders", L(20), L(49))}
    moved = {T.name: TableState(next_lsn=L(50).hex, instance="dbo_orders")}
    second = tick(
        [T], moved, given(max_lsn=80, instances=both, probes={"dbo_orders": (1, 55), "dbo_orders_v2": (50, 55)})
    )
    assert second.windows == {T.name: ChangeWindow("dbo_orders_v2", L(50), L(80))}
    # the old instance was dropped before its last changes were read: those may be lost, so it is a gap
    only_new = tick(
        [T], at(20), given(max_lsn=80, instances=[instance("dbo_orders_v2", 50)], probes={"dbo_orders_v2": (50, 60)})
    )
    assert set(only_new.gaps) == {T.name} and "dbo_orders_v2 now starts at" in only_new.gaps[T.name]


def test_a_retention_gap_fails_loudly_once_then_blocks_until_a_new_snapshot() -> None:
    out = tick([T], at(20), given(max_lsn=80, probes={"dbo_orders": (40, 45)}))
    assert set(out.gaps) == {T.name} and out.windows[T.name].from_lsn == L(20)
    assert "needs changes from LSN 00000000000000000014" in out.gaps[T.name]
    assert "now starts at 00000000000000000028" in out.gaps[T.name] and "t_full_load" in out.gaps[T.name]
    state = out.states[T.name]
    state.pending = None
    again = tick([T], out.states, given(max_lsn=90, probes={"dbo_orders": (40, 45)}))
    assert again.windows == {} and again.gaps == {} and "blocked" in again.log[-1]
    snapshot = SnapshotInfo("run-s", "2026-01-02T000000Z-full-rabc", L(85))
    resumed = tick([T], again.states, given(max_lsn=95, probes={"dbo_orders": (40, 90)}, snapshots={T.name: snapshot}))
    assert resumed.windows == {T.name: ChangeWindow("dbo_orders", L(86), L(95))}
    assert resumed.states[T.name].blocked is None


def test_on_retention_gap_resnapshot_asks_for_a_snapshot_of_that_table() -> None:
    out = tick([T], at(20), given(max_lsn=80, probes={"dbo_orders": (40, 45)}, gap="resnapshot"))
    assert out.snapshot_tables == [T.name] and out.windows == {}


def test_full_load_and_cdc_starts_with_a_snapshot_then_continues_after_its_start_lsn() -> None:
    out = tick([T], {}, given(max_lsn=80, probes={"dbo_orders": (1, None)}, mode="full_load_and_cdc"))
    assert out.snapshot_tables == [T.name] and out.windows == {}
    snapshot = SnapshotInfo("run-1", "2026-01-01T000000Z-full-rabc", L(70))
    after = tick(
        [T],
        {},
        given(max_lsn=80, probes={"dbo_orders": (1, 75)}, mode="full_load_and_cdc", snapshots={T.name: snapshot}),
    )
    assert after.windows == {T.name: ChangeWindow("dbo_orders", L(71), L(80))}


def test_cdc_start_now_earliest_and_an_lsn() -> None:
    now = tick([T], {}, given(max_lsn=80, probes={"dbo_orders": (5, 6)}, start="now"))
    assert now.windows == {} and now.states[T.name].next_lsn == L(81).hex
    earliest = tick([T], {}, given(max_lsn=80, probes={"dbo_orders": (5, 6)}, start="earliest"))
    assert earliest.windows == {T.name: ChangeWindow("dbo_orders", L(5), L(80))}
    given_lsn = tick([T], {}, given(max_lsn=80, probes={"dbo_orders": (5, 60)}, start=L(42).hex))
    assert given_lsn.windows == {T.name: ChangeWindow("dbo_orders", L(42), L(80))}


def test_a_table_without_a_capture_instance_is_reported_not_requested() -> None:
    out = tick([T], {}, given(max_lsn=80, probes={}, instances=[]))
    assert out.windows == {} and out.snapshot_tables == [] and "not captured by CDC" in out.log[0]


def test_the_cursor_round_trips() -> None:
    states = at(
        20,
        pending=Pending("k", "p", "cdc", NOW, {"capture_instance": "x", "from_lsn": L(1).hex, "to_lsn": L(2).hex}),
        failures=2,
    )
    assert load_cursor(dump_cursor(states)) == states


def test_an_idle_tables_position_is_reported_at_most_every_report_seconds() -> None:
    def idle(states: dict[str, TableState], max_lsn: int, now: float) -> Any:
        return tick(
            [T], states, replace(given(max_lsn=max_lsn, probes={"dbo_orders": (1, None)}, now=now), report_seconds=600)
        )

    first = idle(at(20), 80, NOW)
    assert first.positions == {T.name: L(80)}  # never reported: at once (loaded through max)
    soon = idle(first.states, 90, NOW + 599)
    assert soon.positions == {} and soon.states[T.name].next_lsn == L(91).hex  # it moves on, unreported
    later = idle(soon.states, 95, NOW + 600)
    assert later.positions == {T.name: L(95)}
    # a loaded window counts as reported (its materialization shows the position)
    window = ChangeWindow("dbo_orders", L(96), L(99))
    loaded = tick(
        [T],
        at(96, pending=Pending("k", "p", "cdc", NOW, window.as_config())),
        replace(
            given(max_lsn=120, probes={"dbo_orders": (1, None)}, status={f"k|{T.name}": SUCCESS}, now=NOW + 5000),
            report_seconds=600,
        ),
    )
    assert loaded.positions == {} and loaded.states[T.name].next_lsn == L(121).hex


def test_cdc_start_reports_the_position_before_it() -> None:
    out = tick([T], {}, given(max_lsn=80, probes={"dbo_orders": (1, None)}, start="now"))
    assert out.positions == {T.name: L(80)}  # starts at 81: everything up to 80 is deliberately not loaded


def test_cdc_start_now_before_the_capture_job_reached_the_instance_is_not_a_retention_gap() -> None:
    # a database whose capture job has written nothing yet: max LSN 0, the instance starts at 40
    first = tick([T], {}, given(max_lsn=0, probes={}, instances=[instance("dbo_orders", 40)], start="now"))
    assert first.states[T.name].next_lsn == L(40).hex
    # the first change is captured at 45: a window from the instance's start, no gap
    later = tick(
        [T], first.states, given(max_lsn=45, probes={"dbo_orders": (40, 45)}, instances=[instance("dbo_orders", 40)])
    )
    assert later.gaps == {} and later.windows == {T.name: ChangeWindow("dbo_orders", L(40), L(45))}


def test_a_cursor_with_fields_this_version_does_not_know_still_loads() -> None:
    text = dump_cursor(at(20, held="x", held_fingerprint="f"))
    data = json.loads(text)
    data["tables"][T.name]["a_field_from_a_newer_version"] = 1
    loaded = load_cursor(json.dumps(data))
    assert loaded[T.name].next_lsn == L(20).hex and loaded[T.name].held == "x"
