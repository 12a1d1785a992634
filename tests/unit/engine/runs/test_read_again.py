"""The list of objects an import partition reads again whole (engine/runs/read_again.py): its watermark row."""

from __future__ import annotations

from airflow_provider_aadsync.engine.runs.read_again import failed_anchors, next_list, retry_key, retry_row
from airflow_provider_aadsync.engine.store import watermark


def test_the_row_is_named_after_its_partition_and_fits_the_column_however_long_the_key():
    assert retry_key("DC=corp,DC=example,DC=test") == "retry DC=corp,DC=example,DC=test"
    long_key = "DC=" + "x" * 260
    assert retry_key(long_key).startswith("retry ") and len(retry_key(long_key)) <= watermark.c.partition.type.length
    assert retry_key(long_key) != retry_key(long_key + "y")


def test_the_list_keeps_its_order_each_anchor_once_and_an_error_without_an_anchor_is_said():
    assert retry_row(["b", "a", "b"]) == b'["b", "a"]' and retry_row([]) == b"[]"
    errors = [{"anchor": "b", "code": "x"}, {"anchor": "a", "code": "y"}]
    assert failed_anchors(errors) == ({"a", "b"}, True)
    assert failed_anchors([*errors, {"anchor": None, "code": "missing-anchor"}]) == ({"a", "b"}, False)


def test_what_a_delta_did_not_read_waits_first_and_what_failed_again_goes_to_the_end():
    waiting = ["w1", "w2", "w3", "w4"]
    assert next_list(waiting, waiting[:2], {"w1"}, {"n2", "n1"}) == ["w3", "w4", "w1", "n1", "n2"]
    assert next_list([], [], set(), set()) == []
