"""The definitions of lag and retention headroom (dtaas_dagster/cdc/lag.py), as a pure function."""

from __future__ import annotations

import datetime as dt

from dtaas_dagster.cdc.lag import FAIL, OK, WARN, Retention, assess
from dtaas_dagster.config import CdcConfig
from dtaas_dagster.sqlserver.cdc import CaptureInstance
from dtaas_dagster.sqlserver.cdc_health import LagProbe, WaitingChanges
from dtaas_dagster.sqlserver.lsn import Lsn
from dtaas_dagster.table_load import TableSpec

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
SPEC = TableSpec(task="t", source="s", destination="d", schema="dbo", table="orders", mode="cdc")
OLD = CaptureInstance("dbo", "orders", "dbo_orders", Lsn(10), dt.datetime(2026, 1, 1))
CDC = CdcConfig(lag_warn_seconds=60, lag_fail_seconds=600, headroom_warn_percent=50, headroom_fail_percent=25)
HOUR = Retention(60)


def _probe(*waiting: WaitingChanges, max_lsn: int = 1000) -> LagProbe:
    return LagProbe(Lsn(max_lsn), NOW, {w.name: w for w in waiting})


def _waiting(
    first: int | None, age_seconds: float | None = None, min_lsn: int = 10, name: str = "dbo_orders"
) -> WaitingChanges:
    committed = None if age_seconds is None else NOW - dt.timedelta(seconds=age_seconds)
    return WaitingChanges(name, Lsn(min_lsn), None if first is None else Lsn(first), committed)


def test_an_idle_table_has_no_lag_and_the_whole_retention_however_old_its_last_load() -> None:
    lag = assess(
        SPEC, task_mode="cdc", position=Lsn(500), instances=[OLD], probe=_probe(_waiting(None)), retention=HOUR, cdc=CDC
    )
    assert (lag.lag_seconds, lag.headroom_seconds, lag.status) == (0.0, 3600.0, OK)
    assert "no change waiting" in lag.reason


def test_lag_counts_from_the_oldest_change_not_loaded_and_headroom_is_retention_minus_lag() -> None:
    probe = _probe(_waiting(600, age_seconds=120))
    lag = assess(SPEC, task_mode="cdc", position=Lsn(500), instances=[OLD], probe=probe, retention=HOUR, cdc=CDC)
    assert lag.lag_seconds == 120 and lag.headroom_seconds == 3480 and lag.oldest_waiting_lsn == Lsn(600).hex
    assert (lag.lag_status, lag.headroom_status) == (WARN, OK)
    late = assess(
        SPEC,
        task_mode="cdc",
        position=Lsn(500),
        instances=[OLD],
        probe=_probe(_waiting(600, age_seconds=2900)),
        retention=HOUR,
        cdc=CDC,
    )
    assert (late.lag_status, late.headroom_status) == (FAIL, FAIL)  # 700 s left: below 25% of an hour
    middle = assess(
        SPEC,
        task_mode="cdc",
        position=Lsn(500),
        instances=[OLD],
        probe=_probe(_waiting(600, age_seconds=3500)),
        retention=Retention(100),
        cdc=CDC,
    )
    assert (middle.headroom_seconds, middle.headroom_status) == (2500, WARN)  # 42% of 6000 s left


def test_a_position_older_than_the_min_lsn_is_a_retention_gap() -> None:
    lag = assess(
        SPEC,
        task_mode="cdc",
        position=Lsn(500),
        instances=[OLD],
        probe=_probe(_waiting(700, age_seconds=1, min_lsn=650)),
        retention=HOUR,
        cdc=CDC,
    )
    assert lag.status == FAIL and "retention gap" in lag.reason and lag.lag_seconds is None


def test_no_position_yet_warns_and_unknown_retention_warns_on_headroom_only() -> None:
    lag = assess(
        SPEC, task_mode="full_load_and_cdc", position=None, instances=[OLD], probe=_probe(), retention=HOUR, cdc=CDC
    )
    assert lag.status == WARN and "no snapshot loaded yet" in lag.reason
    unknown = assess(
        SPEC,
        task_mode="cdc",
        position=Lsn(500),
        instances=[OLD],
        probe=_probe(_waiting(None)),
        retention=Retention(None, "retention unknown: no permission"),
        cdc=CDC,
    )
    assert (unknown.lag_status, unknown.headroom_status) == (OK, WARN) and "no permission" in unknown.reason
    no_job = assess(
        SPEC,
        task_mode="cdc",
        position=Lsn(500),
        instances=[OLD],
        probe=_probe(_waiting(None)),
        retention=Retention(None),
        cdc=CDC,
    )
    assert no_job.status == OK and "not purged" in no_job.reason


def test_the_oldest_waiting_change_is_looked_for_in_every_capture_instance() -> None:
    new = CaptureInstance("dbo", "orders", "dbo_orders_v2", Lsn(800), dt.datetime(2026, 2, 1))
    probe = _probe(_waiting(None), _waiting(900, age_seconds=30, min_lsn=800, name="dbo_orders_v2"))
    lag = assess(SPEC, task_mode="cdc", position=Lsn(500), instances=[OLD, new], probe=probe, retention=HOUR, cdc=CDC)
    assert lag.lag_seconds == 30 and lag.oldest_waiting_lsn == Lsn(900).hex and lag.status == OK


def test_loaded_through_reads_the_newest_position_past_other_observations() -> None:
    import dagster as dg

    from dtaas_dagster.assets import permanent_failure_observation
    from dtaas_dagster.cdc.lag import loaded_through
    from dtaas_dagster.cdc.sensor import position_observation

    key = SPEC.asset_key
    with dg.instance_for_test() as instance:
        assert loaded_through(instance, key) is None
        instance.report_runless_asset_event(position_observation(key, Lsn(700)))
        # a held table's failed load is recorded after its last position (the partition is dynamic)
        instance.add_dynamic_partitions("t_loads", ["2026-12-02T120000Z-cdc-abc123"])
        instance.report_runless_asset_event(
            permanent_failure_observation(key, "2026-12-02T120000Z-cdc-abc123", "columns changed")
        )
        assert loaded_through(instance, key) == Lsn(700)
