"""The one helper that cuts key lists for ``IN (...)`` clauses."""

from __future__ import annotations

from airflow_provider_aadsync.engine.batching import DEFAULT_CHUNK, chunks


def test_chunks_cover_every_value_once_in_order():
    values = list(range(1_001))
    parts = list(chunks(values))
    assert [len(part) for part in parts] == [DEFAULT_CHUNK, DEFAULT_CHUNK, 1]
    assert [value for part in parts for value in part] == values


def test_chunks_take_the_callers_size_and_yield_nothing_for_nothing():
    assert list(chunks(["a", "b", "c"], 2)) == [["a", "b"], ["c"]]
    assert list(chunks([], 2)) == []
