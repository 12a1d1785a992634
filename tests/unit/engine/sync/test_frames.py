"""The set-based helpers of the sync pass give what the per-object code they replace gave."""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import math
import time
import uuid
import weakref

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import frames, staging
from airflow_provider_aadsync.engine.sync.contributions import REFERENCE_MARKER
from airflow_provider_aadsync.engine.sync.frames import (
    collect_batch_garbage,
    collections_between_batches,
    frame_of_rows,
    load_json,
    stored_rows_by_label,
)
from airflow_provider_aadsync.engine.sync.references import reference_summary
from airflow_provider_aadsync.engine.sync.schema import cell_values


def _frame() -> pd.DataFrame:
    """Every kind of column a flow's outcome frame holds: object cells (lists, sentinels, None, NumPy scalars),
    NumPy numbers and booleans, nullable and string extension columns, datetimes."""
    index = pd.Index(["a", "b", "c"])
    return pd.DataFrame(
        {
            "cells": pd.Series([["x", "y"], AuthoritativeNull, None], index=index, dtype=object),
            "mixed": pd.Series([np.int64(3), np.float64(2.5), IgnoreThisFlow], index=index, dtype=object),
            "flags": pd.Series([np.bool_(True), False, pd.NA], index=index, dtype=object),
            "ints": pd.Series([1, 2, 3], index=index),
            "floats": pd.Series([1.5, np.nan, 3.0], index=index),
            "bools": pd.Series([True, False, True], index=index),
            "nullable": pd.Series([1, None, 3], index=index, dtype="Int64"),
            "text": pd.Series(["p", None, "r"], index=index, dtype="string"),
            "when": pd.to_datetime(pd.Series(["2026-01-01", None, "2026-03-01"], index=index)),
        }
    )


def _same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left) and math.isnan(right):
        return True
    return type(left) is type(right) and (left is right or left == right or (pd.isna(left) and pd.isna(right)))


def test_stored_rows_by_label_is_cell_values_of_each_cell_null_left_out() -> None:
    """What inbound and outbound sync did per object and flow: the two sentinels kept apart, every other cell through
    cell_values, and NULL (None, NaN, pd.NA, NaT) left out of the row (read as None by ``.get``). A NaT cell (a date
    flow without a value) used to become the text "NaT"."""
    frame = _frame()
    got = stored_rows_by_label(frame)
    assert list(got) == list(frame.index)
    for label, row in frame.to_dict("index").items():
        for column, cell in row.items():
            if cell is IgnoreThisFlow or cell is AuthoritativeNull:
                expected = cell
            elif cell is None or (not isinstance(cell, list) and pd.isna(cell)):
                assert column not in got[label], (label, column)
                continue
            else:
                expected = cell_values(cell)
            assert got[label][column] == expected, (label, column, got[label][column], expected)
            assert type(got[label][column]) is type(expected)
    assert got[frame.index[1]].get("when") is None and got[frame.index[0]]["when"] == ["2026-01-01T00:00:00"]


def test_stored_rows_by_label_keeps_a_row_whose_cells_are_all_null() -> None:
    """Inbound sync tells an object the rule evaluated (a row, maybe empty) from one it did not (no row)."""
    frame = pd.DataFrame({"a": [None, "x"], "b": [np.nan, None]}, index=["none", "some"], dtype=object)
    assert stored_rows_by_label(frame) == {"none": {}, "some": {"a": ["x"]}}
    assert stored_rows_by_label(frame.iloc[:0]) == {}


def test_stored_rows_by_label_of_empty_frames() -> None:
    assert stored_rows_by_label(pd.DataFrame(index=pd.Index([1, 2]))) == {1: {}, 2: {}}
    assert stored_rows_by_label(pd.DataFrame({"a": []})) == {}
    with pytest.raises(ValueError, match="unique"):
        stored_rows_by_label(pd.DataFrame({"a": [1, 2]}, index=[0, 0]))


@pytest.mark.parametrize(
    "text",
    [
        '{"displayName":["Ann Lee"],"n":[1,2.5,null,true],"nested":{"k":["v"]}}',
        json.dumps({"caf\u00e9": ["\u00fc"]}),
        json.dumps({"ascii": ["caf\u00e9"]}, ensure_ascii=False),
        '{"nan":[NaN]}',
        '"\\ud800"',
        "[1e400]",
    ],
)
def test_load_json_is_json_loads(text: str) -> None:
    assert repr(load_json(text)) == repr(json.loads(text))


def test_reference_summary_names_the_winning_reference_contributions() -> None:
    """What the inbound reference step reads of a contribution set: this connector's winning reference markers and
    the reference attributes nobody contributes (their rows are cleared)."""
    contributions = {
        "member": {"ad|In from AD - Group": [100, "Update", REFERENCE_MARKER]},
        "manager": {"ad|In from AD - User": [50, "Update", REFERENCE_MARKER], "hr|In from HR": [10, "Update", ["x"]]},
        "displayName": {"ad|In from AD - Group": [100, "Update", ["Sales"]]},
    }
    assert reference_summary(contributions, "ad") == ((("member", "In from AD - Group"),), ())
    assert reference_summary(contributions, "hr") == ((), ())
    winners, missing = reference_summary({"displayName": {"ad|r": [1, "Update", ["a"]]}}, "ad")
    assert winners == () and sorted(missing) == ["manager", "member"]


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [("a", "CN=a", 1, None, False), ("b", "CN=b", None, "join", True)],
        [("a", "CN=a", 1, 2.5, False)],
        [("a", None, None, None, None)],
        [("a", "CN=a", 3, "projection", 0), ("b", "CN=b", 4, None, 1)],
    ],
)
def test_frame_of_rows_is_the_row_constructor(rows: list[tuple[object, ...]]) -> None:
    names = ["anchor", "dn", "mv_id", "link_type", "is_deleted"]
    expected = pd.DataFrame(rows, columns=names)
    built = frame_of_rows(rows, names)
    assert list(built.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(built, expected)


def test_the_collector_is_off_during_a_pass_and_batches_free_their_cycles() -> None:
    """Inside a pass the automatic collector is off; each batch's end frees its reference cycles; after the pass
    (or a failed one) the collector is as it was."""
    assert gc.isenabled()

    class Node:
        pass

    with collections_between_batches():
        assert not gc.isenabled()
        cycle = Node()
        cycle.itself = cycle  # type: ignore[attr-defined]
        watched = weakref.ref(cycle)
        del cycle
        assert watched() is not None  # garbage, kept until the batch ends
        collect_batch_garbage()
        assert watched() is None
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collections_between_batches():
        raise RuntimeError("a failed pass")
    assert gc.isenabled()


def test_time_ordered_uuids_are_version_7_uuids_each_after_the_one_before() -> None:
    """Provisional anchors append to their indexes (frames.time_ordered_uuids): sorted as drawn, across blocks too."""
    before = time.time_ns() // 1_000_000
    drawn = list(itertools.islice(frames.time_ordered_uuids(), 2 * frames.UUID_BLOCK + 3))  # across three blocks
    after = time.time_ns() // 1_000_000
    for text in drawn[:: frames.UUID_BLOCK // 4] + drawn[-3:]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 7, uuid.RFC_4122)
        assert before <= parsed.int >> 80 <= after + 3  # the 48-bit millisecond timestamp (+1 a block at most)
    assert drawn == sorted(drawn)
    assert len(set(drawn)) == len(drawn)


def test_pending_export_changes_are_stored_as_json_dumps_wrote_them() -> None:
    """Staging compares a new plan with the stored text: stores written before the encoder was made once must compare
    equal (sorted keys, compact, ASCII escapes, dates through str)."""
    changes = {"zeta": ["Ünïcödé", 1.5, True, None], "alpha": [dt.datetime(2026, 12, 5, tzinfo=dt.UTC)], "b": []}
    expected = json.dumps(changes, sort_keys=True, separators=(",", ":"), default=str)
    assert staging._CHANGES_ENCODER.encode(changes) == expected
    assert staging.serialize_changes(changes) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"displayName": ["Ada Lovelace"], "accountEnabled": [True], "a": [], "usageLocation": [None], "n": [-7]},
        {"big": [2**70, -(2**65)], "flag": [False]},
        *({"text": [chr(code) + "x"], "other": ["y"]} for code in range(0x100)),  # control, DEL, Latin-1
        {"emoji": ["\U0001f600"], "cjk": ["\u4e2d"], "separator": ["\u2028"]},
        {"float": [1e16, 0.1]},
        {"when": [pd.Timestamp("2026-12-05T00:00:00Z")], "day": [dt.date(2026, 12, 5)]},
        {"nested": [{"b": 1, "a": [2]}]},
        {"tuple": ("a",)},
        {"dn": ["CN=Ünïcödé,OU=People,DC=contoso,DC=com"], "displayName": ["Ünïcödé"]},
    ],
)
def test_pending_export_changes_serialize_as_json_dumps_does(changes) -> None:
    """The fast encoder of plain changes writes exactly json.dumps's text, whatever the values hold: a plan staged
    again compares equal to the one stored by earlier versions (or by the fallback)."""
    expected = json.dumps(changes, sort_keys=True, separators=(",", ":"), default=str)
    assert staging.serialize_changes(changes) == expected


@pytest.mark.parametrize(
    "rows",
    [
        [{"id": 1, "name": "a"}, {"id": 2}],  # a key missing
        [{"id": 1, "name": "a"}, {"id": 2, "name": "b", "extra": 1}],  # a key more
        [{"id": 1, "name": "a"}, {"id": 2, "other": "b"}],  # as many keys, another one
        [{"id": 1}, {"name": "b"}],  # one key each, not the same
    ],
    ids=["missing", "extra", "other", "one-other"],
)
def test_write_rows_refuses_rows_with_other_columns_before_writing(tmp_path, rows) -> None:
    """Rows are written as columns of the first row's keys: a row with other keys is refused, nothing written."""
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String))
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as store, store.engine.begin() as conn:
        table.create(conn)
        with pytest.raises(ValueError, match="rows for t do not all have the same columns"):
            frames.write_rows(store, conn, table, rows)
        frames.write_rows(store, conn, table, [{"id": 1, "name": "a"}, {"id": 2, "name": None}])
        frames.write_rows(store, conn, table, [{"id": 3}, {"id": 4}])  # one column: the others get their default
        rows = conn.execute(sa.select(table.c.id, table.c.name).order_by(table.c.id)).all()
        assert rows == [(1, "a"), (2, None), (3, None), (4, None)]
