"""The CDC sensor's decisions, as a pure function of what a tick sees (no Dagster, no SQL here).

Per table the cursor holds the *next LSN* still to load (inclusive), the
capture instance it reads, and at most one *pending* request (a change window
or a snapshot) with its run key. A tick:

1. settles pending requests from their runs' status: success moves the table
   on (a window to just after its end; a snapshot to just after its start LSN);
   failure leaves the next LSN where it was, so the next request starts at the
   same LSN (a wider window), after a backoff that doubles per failure; a run
   still queued or running holds the table back ("in flight");
2. starts tables without a position: full_load_and_cdc (and a cdc task with a
   snapshot) from their newest snapshot, or asks for one; cdc tasks from
   ``cdc.start`` (now, earliest, an LSN);
3. picks the capture instance: with two, the old one is read up to just before
   the new one's start LSN, then the new one from its start (windows never span
   two instances), so nothing is lost or repeated at a switch;
4. for each table: its next LSN older than the instance's min LSN is a
   *retention gap* (on_retention_gap decides); no change in ``[next, max]``
   moves the next LSN past max without a run (an idle table never falls behind
   the cleanup job, so it never raises a false gap); otherwise the table gets a
   window ``[next, max]`` (or up to the instance switch) in this tick's run.

The cursor advances only over windows a run loaded or that the probe showed empty.
An idle table's new position is reported (``TickOutput.positions``, at most every
``report_seconds``) so health checks see that it is not behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields  # `field` is taken
from typing import Any

from dtaas_dagster.sqlserver.cdc import CaptureInstance, CdcProbe, ChangeWindow, instances_of
from dtaas_dagster.sqlserver.lsn import Lsn

CURSOR_VERSION = 1
MAX_BACKOFF_SECONDS = 3600
LOST_REQUEST_SECONDS = 600
# Ticks land on the daemon's 5-second sensor loop, give or take a few ms: a wait that ends
# within this much of a tick counts as over (else it would last a whole poll interval more).
TICK_SLACK_SECONDS = 1
# A held table's reason, as kept in the cursor (stored with every tick; the whole error is in the
# failed run and in the partition's observation).
HELD_REASON_CHARS = 500

SUCCESS, FAILED, IN_FLIGHT, MISSING = "success", "failed", "in_flight", "missing"
PERMANENT = "permanent"  # failed with an error a retry cannot fix (the step recorded it on the partition)


@dataclass
class Pending:
    """A request the sensor made for one table: a change window or a snapshot."""

    run_key: str
    partition: str
    kind: str  # "cdc" or "snapshot"
    since: float
    window: dict[str, str] | None = None


@dataclass
class TableState:
    next_lsn: str | None = None
    instance: str | None = None
    pending: Pending | None = None
    failures: int = 0
    retry_after: float = 0.0
    blocked: str | None = None
    held: str | None = None  # why the table waits for a person (a permanent failure of its pending request)
    held_fingerprint: str | None = None  # the table's config when it was held: a change releases it
    snapshot_seen: str | None = None  # the newest snapshot (its run id) the position accounts for
    reported_at: float = 0.0  # when the position was last made visible (a load, or a position observation)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "pending"}
        data["pending"] = None if self.pending is None else self.pending.__dict__
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableState:
        """A table's state from the cursor; fields this version does not know are left out (a cursor
        written by a newer version stays readable after a rollback)."""
        pending = data.get("pending")
        known = {f.name for f in dataclass_fields(cls)} - {"pending"}
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.pending = Pending(**pending) if pending else None
        return state


def load_cursor(text: str | None) -> dict[str, TableState]:
    if not text:
        return {}
    data = json.loads(text)
    if data.get("v") != CURSOR_VERSION:
        raise ValueError(f"CDC sensor cursor version {data.get('v')!r} is not {CURSOR_VERSION}; reset the sensor")
    return {name: TableState.from_json(value) for name, value in data["tables"].items()}


def load_cursor_meta(text: str | None) -> dict[str, Any]:
    """Task-wide cursor values (e.g. when the last window was requested)."""
    return dict(json.loads(text).get("meta", {})) if text else {}


def dump_cursor(states: Mapping[str, TableState], meta: Mapping[str, Any] | None = None) -> str:
    return json.dumps(
        {"v": CURSOR_VERSION, "tables": {k: s.to_json() for k, s in sorted(states.items())}, "meta": dict(meta or {})},
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class TableInfo:
    """A CDC table as the sensor knows it: its asset name, source table, and step."""

    name: str  # the asset key as text: the cursor's key
    schema: str
    table: str
    qualified: str
    fingerprint: str = ""  # of the table's config: a held table is released when it changes


@dataclass(frozen=True)
class SnapshotInfo:
    """The newest snapshot of a table: its run, partition and the LSN CDC continues after."""

    run_id: str
    partition: str
    start_lsn: Lsn


@dataclass(frozen=True)
class TickInput:
    task: str
    mode: str  # "cdc" or "full_load_and_cdc"
    start: str  # cdc.start: now | earliest | 20 hex digits (a time was mapped to an LSN by the caller)
    on_retention_gap: str
    poll_seconds: int
    now: float
    instances: list[CaptureInstance]
    probe: CdcProbe
    # "<run_key>|<table name>" -> SUCCESS / FAILED / PERMANENT / IN_FLIGHT (absent: no run yet)
    run_status: Mapping[str, str]
    snapshots: Mapping[str, SnapshotInfo]  # table name -> newest snapshot
    report_seconds: float = 3600  # cdc.position_report_seconds
    run_errors: Mapping[str, str] = field(default_factory=dict)  # status key -> the error of a PERMANENT outcome


@dataclass
class TickOutput:
    states: dict[str, TableState]
    windows: dict[str, ChangeWindow] = field(default_factory=dict)  # table name -> window for this tick's run
    snapshot_tables: list[str] = field(default_factory=list)
    gaps: dict[str, str] = field(default_factory=dict)  # table name -> message (the run is requested to fail loudly)
    positions: dict[str, Lsn] = field(default_factory=dict)  # table name -> loaded through (idle tables, reported)
    log: list[str] = field(default_factory=list)


def status_key(run_key: str, table: str) -> str:
    """How a table's outcome in a requested run is looked up: a run loads several tables, and
    one table failing does not undo the others'."""
    return f"{run_key}|{table}"


def gap_message(info: TableInfo, next_lsn: Lsn, min_lsn: Lsn, instance: str, policy: str, task: str) -> str:
    return (
        f"CDC retention gap on {info.qualified}: it needs changes from LSN {next_lsn.hex}, but capture instance "
        f"{instance} now starts at {min_lsn.hex} (SQL Server's cleanup job purged changes that were never read). "
        + (
            "A new snapshot of the table is requested (on_retention_gap: resnapshot)."
            if policy == "resnapshot"
            else f"Remedy: take a new snapshot of the table (launch {task}_full_load); CDC then continues from it. "
            "Or set cdc.on_retention_gap: resnapshot, and raise the cleanup job's retention (docs/cdc.md)."
        )
    )


def _settle(
    state: TableState,
    info: TableInfo,
    status: str | None,
    now: float,
    poll: int,
    snapshot: SnapshotInfo | None,
    log: list[str],
    error: str | None = None,
) -> None:
    pending = state.pending
    assert pending is not None
    if state.held is not None and status != SUCCESS:
        return  # still held, its request kept (only a successful run of it settles it)
    if status == PERMANENT:
        # held, with the request kept: a re-execution of its run that loads the table settles it as usual
        reason = error or "(no error recorded)"
        state.held = reason if len(reason) <= HELD_REASON_CHARS else reason[: HELD_REASON_CHARS - 3] + "..."
        state.held_fingerprint = info.fingerprint
        return
    if status == SUCCESS:
        if pending.kind == "cdc" and pending.window:
            window = ChangeWindow.from_config(pending.window)
            state.next_lsn, state.instance = window.to_lsn.increment().hex, window.capture_instance
            state.blocked = None
            log.append(f"{info.qualified}: window {window} loaded (partition {pending.partition})")
        elif snapshot is not None:
            state.next_lsn, state.snapshot_seen = snapshot.start_lsn.increment().hex, snapshot.run_id
            state.blocked = None
            log.append(
                f"{info.qualified}: snapshot {pending.partition} loaded; CDC continues after {snapshot.start_lsn.hex}"
            )
        state.pending, state.failures, state.retry_after = None, 0, 0.0
        state.held = state.held_fingerprint = None
        state.reported_at = now  # the load's materialization shows the position
    elif status == FAILED or (status is None and now - pending.since > LOST_REQUEST_SECONDS):
        state.failures += 1
        delay = min(poll * 2**state.failures, MAX_BACKOFF_SECONDS)
        state.pending, state.retry_after = None, now + delay
        log.append(
            f"{info.qualified}: the run for {pending.kind} partition {pending.partition} failed "
            f"(failure {state.failures}); the same position is requested again in {delay:.0f}s"
        )


def _release(state: TableState) -> None:
    """A held table is released: its kept request is dropped and it is asked for again at once."""
    state.held = state.held_fingerprint = state.pending = None
    state.failures, state.retry_after = 0, 0.0


def _pick_instance(
    state: TableState, table_instances: list[CaptureInstance], next_lsn: Lsn
) -> tuple[CaptureInstance | None, Lsn | None]:
    """The instance to read from ``next_lsn``, and the last LSN it may read (before a newer instance starts)."""
    current = next((i for i in table_instances if i.name == state.instance), None)
    newer = [i for i in table_instances if current is None or i.start_lsn > current.start_lsn]
    if current is None:
        # no instance yet, or ours was dropped: the newest one whose start we have reached, else the oldest
        reached = [i for i in table_instances if i.start_lsn <= next_lsn]
        current = reached[-1] if reached else (table_instances[0] if table_instances else None)
        newer = [i for i in table_instances if current is not None and i.start_lsn > current.start_lsn]
    if current is None:
        return None, None
    if newer and next_lsn >= newer[0].start_lsn:
        current, newer = newer[0], newer[1:]
    limit = newer[0].start_lsn.decrement() if newer else None
    return current, limit


def tick(tables: list[TableInfo], states: Mapping[str, TableState], given: TickInput) -> TickOutput:
    """One tick's decisions (see the module docstring)."""
    out = TickOutput(states={name: TableState.from_json(s.to_json()) for name, s in states.items()})
    max_lsn = given.probe.max_lsn
    for info in tables:
        state = out.states.setdefault(info.name, TableState())
        snapshot = given.snapshots.get(info.name)
        if state.pending is not None:
            status = given.run_status.get(status_key(state.pending.run_key, info.name))
            young = given.now - state.pending.since <= LOST_REQUEST_SECONDS
            if status == IN_FLIGHT or (status is None and young and not state.held):
                out.log.append(
                    f"{info.qualified}: skipped, its {state.pending.kind} run "
                    f"({state.pending.partition}) is still in flight"
                )
                continue
            key = status_key(state.pending.run_key, info.name)
            _settle(state, info, status, given.now, given.poll_seconds, snapshot, out.log, given.run_errors.get(key))
        if snapshot is not None and snapshot.run_id != state.snapshot_seen:
            # a newer snapshot (a person's full load, or our resnapshot) restarts CDC after it
            state.next_lsn, state.snapshot_seen, state.blocked = (
                snapshot.start_lsn.increment().hex,
                snapshot.run_id,
                None,
            )
            state.failures, state.retry_after, state.reported_at = 0, 0.0, given.now
            if state.held:  # the held request is answered by the snapshot
                _release(state)
            out.log.append(
                f"{info.qualified}: CDC continues after snapshot {snapshot.partition} (LSN {snapshot.start_lsn.hex})"
            )
        if state.held and info.fingerprint != state.held_fingerprint:
            out.log.append(
                f"{info.qualified}: its config changed since it was held; requested again from the same position"
            )
            _release(state)
        if state.held:
            pending = state.pending
            out.log.append(
                f"{info.qualified}: held: its {pending.kind if pending else 'last'} run"
                f"{' (partition ' + pending.partition + ')' if pending else ''} failed with an error a retry "
                f"cannot fix: {state.held} -- not requested again until that run is re-executed and loads the "
                "table, the table's config changes, or a new snapshot of it is loaded (CDC resumes from LSN "
                f"{state.next_lsn or '(its snapshot)'}; nothing is skipped)"
            )
            continue
        if state.retry_after > given.now + TICK_SLACK_SECONDS:  # a tick a few ms early still retries
            out.log.append(f"{info.qualified}: waiting {state.retry_after - given.now:.0f}s before requesting again")
            continue
        table_instances = instances_of(given.instances, info.schema, info.table)
        if not table_instances:
            out.log.append(
                f"{info.qualified}: not captured by CDC (no capture instance); see the table's error "
                "in docs/cdc.md to enable it"
            )
            continue
        if state.next_lsn is None:
            if not _start(state, info, given, table_instances, out):
                continue
        next_lsn = Lsn.from_hex(state.next_lsn)  # type: ignore[arg-type]
        instance, limit = _pick_instance(state, table_instances, next_lsn)
        assert instance is not None
        state.instance = instance.name
        # (no jump to the instance's start_lsn here: cleanup moves start_lsn too, and a jump would
        # hide a retention gap; the min LSN check below decides)
        probe = given.probe.instances.get(instance.name)
        if probe is None:
            out.log.append(f"{info.qualified}: capture instance {instance.name} is new; probed next tick")
            continue
        end = _end(max_lsn, limit)
        if next_lsn > end:
            continue  # nothing captured since the last window
        if next_lsn < probe.min_lsn:
            if state.blocked:
                out.log.append(f"{info.qualified}: blocked: {state.blocked}")
                continue
            message = gap_message(info, next_lsn, probe.min_lsn, instance.name, given.on_retention_gap, given.task)
            if given.on_retention_gap == "resnapshot":
                out.snapshot_tables.append(info.name)
            else:
                state.blocked = message
                out.gaps[info.name] = message
                out.windows[info.name] = ChangeWindow(instance.name, next_lsn, end)
            out.log.append(message)
            continue
        probed_from_here = probe.asked_from is None or probe.asked_from <= next_lsn
        if probed_from_here and (probe.first_change is None or probe.first_change > end):
            state.next_lsn = end.increment().hex  # checked empty: the position moves without a run
            _report(state, info, end, given, out)
            continue
        out.windows[info.name] = ChangeWindow(instance.name, next_lsn, end)
    return out


def _end(max_lsn: Lsn, limit: Lsn | None) -> Lsn:
    return min(max_lsn, limit) if limit is not None else max_lsn


def _start(
    state: TableState, info: TableInfo, given: TickInput, table_instances: list[CaptureInstance], out: TickOutput
) -> bool:
    """Give a table its first position; False when it must wait (a snapshot was requested)."""
    if given.mode == "full_load_and_cdc":
        out.snapshot_tables.append(info.name)
        out.log.append(f"{info.qualified}: no snapshot yet; requesting one (CDC continues after it)")
        return False
    if given.start == "now":
        # Nothing below the oldest instance's start LSN was ever captured by it: when the capture job
        # has not reached the instance yet (a new or idle database: max LSN 0 or older), start there,
        # or its first change would look like a retention gap.
        state.next_lsn = max(given.probe.max_lsn.increment(), table_instances[0].start_lsn).hex
    elif given.start == "earliest":
        state.next_lsn = table_instances[0].start_lsn.hex  # below the min LSN the probe raises a gap
        probe = given.probe.instances.get(table_instances[0].name)
        if probe is not None:
            state.next_lsn = max(probe.min_lsn, table_instances[0].start_lsn).hex
    else:
        state.next_lsn = Lsn.from_hex(given.start).hex
    out.log.append(f"{info.qualified}: CDC starts at LSN {state.next_lsn} (cdc.start: {given.start})")
    start = Lsn.from_hex(state.next_lsn)
    if start.value:
        _report(state, info, start.decrement(), given, out, now=True)
    return True


def _report(
    state: TableState, info: TableInfo, loaded_through: Lsn, given: TickInput, out: TickOutput, *, now: bool = False
) -> None:
    """Make an idle table's position visible (the sensor reports it as an asset observation), at most every
    ``report_seconds``: the lag checks and ``dtaas health`` then know the table is not behind (cdc/lag.py)."""
    if now or given.now - state.reported_at >= given.report_seconds:
        out.positions[info.name] = loaded_through
        state.reported_at = given.now
