"""The list of objects an AD partition reads again whole (engine/connectors/ad/retries.py): its watermark row."""

from __future__ import annotations

from airflow_provider_aadsync.engine.connectors.ad.retries import failed_anchors, retry_key, retry_row
from airflow_provider_aadsync.engine.store import watermark


def test_the_row_is_named_after_its_partition_and_fits_the_column_however_long_the_key():
    assert retry_key("DC=corp,DC=example,DC=test") == "retry DC=corp,DC=example,DC=test"
    long_key = "DC=" + "x" * 260
    assert retry_key(long_key).startswith("retry ") and len(retry_key(long_key)) <= watermark.c.partition.type.length
    assert retry_key(long_key) != retry_key(long_key + "y")


def test_the_list_is_sorted_and_each_anchor_once_and_an_error_without_an_anchor_is_said():
    assert retry_row(["b", "a", "b"]) == b'["a", "b"]' and retry_row([]) == b"[]"
    errors = [{"anchor": "b", "code": "x"}, {"anchor": "a", "code": "y"}]
    assert failed_anchors(errors) == ({"a", "b"}, True)
    assert failed_anchors([*errors, {"anchor": None, "code": "missing-anchor"}]) == ({"a", "b"}, False)
