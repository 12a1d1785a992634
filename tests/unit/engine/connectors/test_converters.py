"""Typed columns (connectors/converters.py): converting a column at once gives what the per-value converters give."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pandas as pd
import pytest

from airflow_provider_aadsync.engine.connectors.ad.schema import SCHEMA as ACTIVE_DIRECTORY
from airflow_provider_aadsync.engine.connectors.converters import (
    boolean,
    convert_column,
    guid_bytes,
    guid_bytes_column,
    integer,
    sid_bytes,
    sid_bytes_column,
)

NOT_QUITE_GUIDS = [
    "",
    "x" * 36,
    "00000000-0000-0000-0000-000000000000",
    "12345678-1234-1234-1234-12345678901 ",  # whitespace: uuid.UUID accepts none inside 32 digits
    "1234567 -1234-1234-1234-123456789012",
    "1_234567-1234-1234-1234-123456789012",  # int() would take the underscore; the length check does not
    "+1234567-1234-1234-1234-123456789012",
    "12345678_1234-1234-1234-123456789012",
    "12345678-1234-1234-1234-12345678901é",  # not ASCII
]


def _odd(rng: random.Random) -> str:
    guid = str(uuid.UUID(int=rng.getrandbits(128)))
    return rng.choice(
        [
            *NOT_QUITE_GUIDS,
            guid.upper(),
            "{" + guid + "}",
            "urn:uuid:" + guid,
            guid.replace("-", ""),
            " " + guid[1:],
            guid[:35] + "g",
        ]
    )


class TestGuidBytesColumn:
    @pytest.mark.parametrize("seed", range(5))
    def test_equals_guid_bytes_when_texts_are_mixed(self, seed):
        rng = random.Random(seed)
        for _ in range(50):
            texts = [
                _odd(rng) if rng.random() < 0.3 else str(uuid.UUID(int=rng.getrandbits(128)))
                for _ in range(rng.randrange(1, 40))
            ]
            assert guid_bytes_column(texts) == [guid_bytes(text) for text in texts]

    def test_keeps_trailing_zero_bytes(self):
        text = "00000000-0000-0000-0000-000000000000"
        assert guid_bytes_column([text, text]) == [bytes(16), bytes(16)]

    def test_all_canonical(self):
        guids = [uuid.uuid4() for _ in range(100)]
        assert guid_bytes_column([str(g) for g in guids]) == [g.bytes_le for g in guids]


class TestSidBytesColumn:
    def test_equals_sid_bytes_text_by_text(self):
        domain = "S-1-5-21-3623811015-3361044348-30300820"
        texts = [
            *(f"{domain}-{rid}" for rid in (500, 512, 1104, 0, 4294967295, 999999999, 1000000000)),
            f"{domain}-0500",
            f"{domain}- 7",
            f"{domain}-x",
            f"{domain}-",
            f"{domain}-\uff15",  # a fullwidth digit: int() reads it, the column form leaves it to sid_bytes
            "s-1-5-21-1-2-3-500",
            "S-1-5-32-544",
            "S-1-5-18",
            "S-1-500",
            "S-1",
            "S-",
            "-5",
            "",
            "bad",
            "S-1-5-21-1-2-3",
        ]
        assert sid_bytes_column(texts) == [sid_bytes(text) for text in texts]

    def test_a_domain_part_encoded_once_reused_for_each_relative_id(self):
        domain = "S-1-5-21-1-2-3"
        texts = [f"{domain}-{1000 + n}" for n in range(50)]
        assert sid_bytes_column(texts) == [sid_bytes(text) for text in texts]


def _column(cells: list) -> np.ndarray:
    return np.fromiter(cells, dtype=object, count=len(cells))


def _per_cell(cells: list, convert) -> list:
    return [None if c is None else [convert(v) for v in c] if isinstance(c, list) else convert(c) for c in cells]


class TestConvertColumn:
    CELLS = [
        None,
        str(uuid.uuid4()),
        [str(uuid.uuid4()), "x"],
        "S-1-5-21-1-2-3-500",
        "512",
        " 7 ",
        "1_000",
        "TRUE",
        "false",
        "bad",
        5,
        b"ab",
        1.5,
        ("a",),
        ["1", "x"],
        type("Text", (str,), {})("42"),  # a str subclass is converted too
    ]

    @pytest.mark.parametrize("convert", [guid_bytes, sid_bytes, integer, boolean])
    def test_equals_the_converter_cell_by_cell(self, convert):
        assert convert_column(_column(self.CELLS), convert).tolist() == _per_cell(self.CELLS, convert)

    def test_another_converter_sees_every_value_but_null(self):
        cells = [None, "a", ["b", "c"], 5, 1.5]
        assert convert_column(_column(cells), repr).tolist() == _per_cell(cells, repr)

    def test_type_columns_converts_in_place_as_object_columns(self):
        guid = uuid.uuid4()
        frame = pd.DataFrame(
            {"objectGUID": [str(guid), None], "userAccountControl": ["512", None], "cn": ["a", "b"]}, dtype=object
        )
        ACTIVE_DIRECTORY.type_columns(frame)
        assert frame["objectGUID"].tolist() == [guid.bytes_le, None]
        assert frame["userAccountControl"].tolist() == [512, None]
        assert frame["cn"].tolist() == ["a", "b"]
        assert all(dtype is np.dtype(object) for dtype in frame.dtypes)
