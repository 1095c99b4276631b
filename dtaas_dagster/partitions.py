"""Partition keys: one dynamic partition per load window, named so they sort in load order.

A CDC window's key is ``<UTC time of the tick>-cdc-<6 hex>``. A snapshot's key
is ``<UTC time>-full-<origin>``, for example
``2026-12-02T021503Z-full-r3f9a1c`` (requested from the UI or a script) or
``2026-12-02T020000Z-full-sched`` (a schedule tick, named after its scheduled
time). The time comes first, so text order is load order; the origin makes
two loads started in the same second distinct. ``$loadDate`` in a path
template is the date of the key, so a re-run of a partition on another day
writes to the same directory.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import dagster as dg

from dtaas_dagster.variables import partition_key_date

_ORIGIN = re.compile(r"^[a-z0-9]{1,12}$")


def partitions_def_name(task: str) -> str:
    return f"{task}_loads"


def loads_partitions_def(task: str) -> dg.DynamicPartitionsDefinition:
    """The dynamic partitions of a task's table assets: one per load window."""
    return dg.DynamicPartitionsDefinition(name=partitions_def_name(task))


def snapshot_key(when: dt.datetime, origin: str) -> str:
    """The key of a snapshot started at ``when`` by ``origin`` (lower-case letters and digits)."""
    if not _ORIGIN.match(origin):
        raise ValueError(f"origin {origin!r} must be 1-12 lower-case letters or digits")
    if when.tzinfo is None:
        raise ValueError("a snapshot time must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ") + f"-full-{origin}"


def new_request_origin() -> str:
    """A short random origin for a snapshot requested by a person or a script."""
    return "r" + secrets.token_hex(3)


def key_date(key: str) -> str | None:
    """The UTC date (YYYY-MM-DD) a key was created, when the key carries one."""
    return partition_key_date(key)


def is_snapshot_key(key: str) -> bool:
    return "-full-" in key and key_date(key) is not None


def change_key(when: dt.datetime) -> str:
    """The key of a CDC window partition made by a sensor tick at ``when``."""
    if when.tzinfo is None:
        raise ValueError("a tick time must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ") + f"-cdc-{secrets.token_hex(3)}"


def is_change_key(key: str) -> bool:
    """Whether a partition is a CDC window (its key was made by :func:`change_key`)."""
    return "-cdc-" in key and key_date(key) is not None
