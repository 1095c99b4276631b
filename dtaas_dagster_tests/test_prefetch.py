"""prefetch(): order, errors, early stop, bounded read-ahead."""

import threading
import time
from collections.abc import Iterator

import pytest

from dtaas_dagster.prefetch import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))


def test_a_source_error_is_raised_to_the_consumer_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("dropped")

    seen = []
    with pytest.raises(ConnectionError, match="dropped"):
        for item in prefetch(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_reads_at_most_depth_items_ahead_and_closing_stops_the_source() -> None:
    produced = []
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(100):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetch(source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)  # give the producer time to run ahead as far as it may
    assert len(produced) <= 1 + 2 + 1  # the consumed item, the queue, one waiting to be put
    stream.close()
    assert closed.wait(5)
    assert len(produced) < 100
