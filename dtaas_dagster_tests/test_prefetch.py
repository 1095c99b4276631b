"""prefetch(): order, errors, early stop, bounded read-ahead."""

import threading
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
    """No sleeping: after each item the test waits until the producer has gone as far ahead as it
    may (it always gets there), and the source itself records any pull beyond the bound."""
    depth, taken = 2, 0
    pulled: list[int] = []
    overruns: list[tuple[int, int]] = []
    progress = threading.Condition()
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(100):
                with progress:
                    # items out: taken by the test, <= 1 inside next(), <= depth queued, this one
                    if i > taken + depth + 1:
                        overruns.append((i, taken))
                    pulled.append(i)
                    progress.notify_all()
                yield i
        finally:
            closed.set()

    stream = prefetch(source(), depth=depth)
    for expected in range(50):
        assert next(stream) == expected
        taken += 1
        with progress:  # the consumed items, `depth` in the queue, one waiting to be put
            assert progress.wait_for(lambda: len(pulled) >= taken + depth + 1, timeout=30)
    stream.close()
    assert closed.wait(30)
    assert overruns == []
    assert len(pulled) == 50 + depth + 1  # closing stopped the source where it was
