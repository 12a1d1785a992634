"""Turn stored attribute dictionaries into the value-cell frames rules evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["frame_from_records"]


def _cell(values: Any) -> Any:
    # The store keeps {name: [values]}; anything that is not a list (a ReferenceValues, an already-made
    # cell) passes through unchanged.
    if type(values) is not list:
        return values
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def frame_from_records(records: Sequence[Mapping[str, Any]], attributes: Iterable[str]) -> pd.DataFrame:
    """One row per record, one object column per requested attribute, cells as value cells.

    :param records: attribute dictionaries ``{name: [values]}``; names match ``attributes`` ignoring case
    :param attributes: the columns wanted, named as given (duplicates ignoring case are dropped)
    :return: a frame on a RangeIndex; an absent attribute or an empty list is ``None``, one value is that
        scalar, more are a list
    """
    wanted: dict[str, str] = {}
    for name in attributes:
        wanted.setdefault(name.casefold(), name)
    # Collect the spellings the records use (cheap: a set update per record), so that each column is read
    # with plain dict lookups instead of lower-casing every key of every record.
    spellings: set[str] = set()
    for record in records:
        spellings.update(record)
    by_key: dict[str, list[str]] = {}
    for spelling in spellings:
        key = spelling.casefold()
        if key in wanted:
            by_key.setdefault(key, []).append(spelling)
    size = len(records)
    data: dict[str, np.ndarray] = {}
    for key, name in wanted.items():
        names = by_key.get(key)
        if not names:
            out = np.empty(size, dtype=object)
            out.fill(None)
        elif len(names) == 1:
            spelling = names[0]
            # fromiter keeps list cells as objects (assigning a list of lists would make numpy broadcast them)
            out = np.fromiter((_cell(record.get(spelling)) for record in records), dtype=object, count=size)
        else:  # one attribute written in several letter cases across records: take the first present
            cells = (_cell(next((r[n] for n in names if n in r), None)) for r in records)
            out = np.fromiter(cells, dtype=object, count=size)
        data[name] = out
    return pd.DataFrame(data, index=pd.RangeIndex(size), columns=list(wanted.values()), dtype=object)
