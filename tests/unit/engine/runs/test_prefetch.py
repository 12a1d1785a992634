from __future__ import annotations

import threading

import pytest

from airflow_provider_aadsync.engine.runs.prefetch import prefetch


def test_yields_everything_in_order():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_producer_error_reaches_the_consumer():
    def pages():
        yield 1
        raise ConnectionError("DC went away")

    with pytest.raises(ConnectionError, match="DC went away"):
        list(prefetch(pages()))


def test_consumer_stopping_early_stops_the_producer():
    produced = []

    def pages():
        for number in range(1_000):
            produced.append(number)
            yield number

    for page in prefetch(pages(), depth=2):
        if page == 5:
            break
    assert len(produced) < 20
    assert not any(thread.name == "aadsync-prefetch" for thread in threading.enumerate())


def test_the_producer_reports_to_the_callers_progress():
    """A wait in the reading thread (Graph throttling) counts in the run's progress, not in a thread of its own."""
    from airflow_provider_aadsync.engine import progress

    def pages():
        progress.current().wait("throttling", 1.5, "Graph throttling (Retry-After)")
        yield 1

    with progress.track("full import of entra") as report:
        assert list(prefetch(pages())) == [1]
    assert report.waits.counts == {"throttling": 1}
