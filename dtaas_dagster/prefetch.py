"""Overlap reading and writing: pull the next batches on a background thread.

Reading a batch (ODBC fetch + Arrow build, mostly outside the GIL) and writing
one (Parquet encoding, also mostly outside the GIL) are independent, so a
bounded queue between them lets both run at once on two cores. The queue holds
at most ``depth`` batches, so memory stays bounded by the batch size.

Errors raised by the source come out of the consumer's ``next()``; when the
consumer stops early (the writer failed), the producer is told to stop and the
source generator is closed on the producer's own thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END = "item", "error", "end"


def prefetch(source: Iterator[T], *, depth: int = 2, join_timeout: float = 60.0) -> Iterator[T]:
    """Yield the items of ``source`` in order, reading up to ``depth`` items ahead on a thread."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="dtaas-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
