"""The column forms' values and the vectorised ("fast") forms of functions and operators.

A column (``Col``) holds, per object (row), a value cell, its *kind* and whether the column path evaluated it
(``ok``). A fast form computes the rows whose kinds it knows with whole-array code and returns them; the rows it
leaves go through the function's own implementation, one by one (``columns``), so a fast form only needs to be right
for the kinds it claims — exactly what the per-object implementation gives for them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from airflow_provider_aadsync.engine.expressions.limits import MAX_VALUE_LENGTH
from airflow_provider_aadsync.engine.expressions.text import mid_of_text, monikers
from airflow_provider_aadsync.engine.expressions.values import ReferenceValues, as_list

# ------------------------------------------------------------------------------------------------- kinds
NULL, STR, BIN, INT, FLOAT, BOOL, REF, OTHER = range(8)
_KIND_OF: dict[type, int] = {
    type(None): NULL,
    str: STR,
    bytes: BIN,
    int: INT,
    float: FLOAT,
    bool: BOOL,
    ReferenceValues: REF,
}
SCALAR = BOOL  # kinds 0..BOOL are the plain scalars the fast forms know


def kinds_of(values: np.ndarray) -> np.ndarray:
    """Each value's kind: the exact type decides (a str subclass or numpy's int64 is OTHER, left to the
    implementation)."""
    get = _KIND_OF.get
    return np.fromiter([get(type(v), OTHER) for v in values], dtype=np.int8, count=len(values))


def kind_of(value: Any) -> int:
    return _KIND_OF.get(type(value), OTHER)


def objects(values: Sequence[Any] | np.ndarray, size: int) -> np.ndarray:
    """An object array of ``values`` (element by element, so a list stays one cell)."""
    return np.fromiter(values, dtype=object, count=size)


def nulls(size: int) -> np.ndarray:
    out = np.empty(size, dtype=object)
    out.fill(None)
    return out


class Col:
    """A column of values: ``values[i]`` is row i's value cell and ``kinds[i]`` its kind where ``ok[i]``."""

    __slots__ = ("values", "kinds", "ok")

    def __init__(self, values: np.ndarray, kinds: np.ndarray, ok: np.ndarray) -> None:
        self.values = values
        self.kinds = kinds
        self.ok = ok

    @classmethod
    def empty(cls, size: int) -> Col:
        """No row ok yet; a node fills the rows it evaluates."""
        return cls(nulls(size), np.zeros(size, dtype=np.int8), np.zeros(size, dtype=bool))

    @classmethod
    def constant(cls, value: Any, size: int) -> Col:
        values = np.empty(size, dtype=object)
        values.fill(value)
        return cls(values, np.full(size, kind_of(value), dtype=np.int8), np.ones(size, dtype=bool))

    def set(self, rows: np.ndarray, values: Any, kind: int | np.ndarray) -> None:
        """Rows ``rows`` (a mask) get ``values`` (an object array or one value) of ``kind`` and become ok."""
        self.values[rows] = values
        self.kinds[rows] = kind
        self.ok[rows] = True


Fast = Callable[[Sequence[Col], np.ndarray, Col], np.ndarray]
"""A fast form: fills ``out`` for the rows (of the mask given) whose kinds it knows; returns those rows."""


# ---------------------------------------------------------------------------------------- fast forms
def _string_method(method: Callable[[str], Any], kind: int) -> Fast:
    """LCase, UCase, Trim, Len: of strings (and NULL → NULL); numbers etc. go through the function itself."""

    def fast(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
        (a,) = args
        strings = rows & (a.kinds == STR)
        null_rows = rows & (a.kinds == NULL)
        if strings.any():
            out.set(strings, objects(map(method, a.values[strings]), int(strings.sum())), kind)
        out.set(null_rows, None, NULL)
        return strings | null_rows

    return fast


def _left(text: str | None, count: int) -> str:
    if text is None:
        return ""
    return text if count < 0 else text[:count]


def _right(text: str | None, count: int) -> str:
    if text is None:
        return ""
    if count < 0:
        return text
    return text[max(0, len(text) - count) :] if count else ""


def _slice(take: Callable[[str | None, int], str]) -> Fast:
    """Left, Right: a string or NULL and an integer count."""

    def fast(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
        text, count = args
        done = rows & ((text.kinds == STR) | (text.kinds == NULL)) & (count.kinds == INT)
        if done.any():
            values = map(take, text.values[done], count.values[done])
            out.set(done, objects(values, int(done.sum())), STR)
        return done

    return fast


def _to_base64(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """ConvertToBase64 of binary data (objectGUID → ImmutableId) and of strings (their UTF-16LE bytes)."""
    (a,) = args
    binary = rows & (a.kinds == BIN)
    strings = rows & (a.kinds == STR)
    null_rows = rows & (a.kinds == NULL)
    b64 = base64.b64encode
    if binary.any():
        encoded = [b64(value).decode("ascii") for value in a.values[binary]]
        out.set(binary, objects(encoded, len(encoded)), STR)
    if strings.any():
        utf16 = (value.encode("utf-16-le", errors="surrogatepass") for value in a.values[strings])
        encoded = [b64(value).decode("ascii") for value in utf16]
        out.set(strings, objects(encoded, len(encoded)), STR)
    out.set(null_rows, None, NULL)
    return binary | strings | null_rows


def _bitwise(op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Fast:
    """BitAnd, BitOr of integers (Python integers, any size); NULL either side → NULL."""

    def fast(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
        a, b = args
        ints_a, ints_b = a.kinds == INT, b.kinds == INT
        done = rows & (ints_a | (a.kinds == NULL)) & (ints_b | (b.kinds == NULL))
        both = done & ints_a & ints_b
        if both.any():
            out.set(both, op(a.values[both], b.values[both]), INT)
        out.set(done & ~both, None, NULL)
        return done

    return fast


def _presence(test: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], kind: int = BOOL) -> Fast:
    """IsPresent, IsNull, IsNullOrEmpty, IsEmpty, Count of plain scalars: ``test(kinds, empty_string, empty_bin)``
    over the rows; unloaded references and multi-valued cells go through the function itself."""

    def fast(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
        (a,) = args
        done = rows & (a.kinds <= SCALAR)
        kinds, values = a.kinds[done], a.values[done]
        empty_string = np.zeros(len(kinds), dtype=bool)
        strings = kinds == STR
        empty_string[strings] = values[strings] == ""
        empty_bin = np.zeros(len(kinds), dtype=bool)
        binary = kinds == BIN
        empty_bin[binary] = values[binary] == b""
        out.set(done, test(kinds, empty_string, empty_bin).astype(object), kind)
        return done

    return fast


def _comparison(op: str) -> Fast:
    """``= <> < <= > >=`` of two numbers, two strings, two bools or two bins (as Python compares them); NULL either
    side → NULL. Mixed types (``"5" = 5``) go through the operator itself."""
    compare = {
        "=": np.equal,
        "<>": np.not_equal,
        "<": np.less,
        "<=": np.less_equal,
        ">": np.greater,
        ">=": np.greater_equal,
    }[op]

    def fast(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
        a, b = args
        ka, kb = a.kinds, b.kinds
        scalars = rows & (ka <= SCALAR) & (kb <= SCALAR)
        null_rows = scalars & ((ka == NULL) | (kb == NULL))
        numbers = ((ka == INT) | (ka == FLOAT)) & ((kb == INT) | (kb == FLOAT))
        same = scalars & ~null_rows & (numbers | ((ka == kb) & (ka != INT) & (ka != FLOAT)))
        if same.any():
            out.set(same, compare(a.values[same], b.values[same]).astype(bool).astype(object), BOOL)
        out.set(null_rows, None, NULL)
        return same | null_rows

    return fast


def _concat(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """``&`` of strings and NULLs (NULL is "", NULL & NULL is NULL)."""
    a, b = args
    texts_a = (a.kinds == STR) | (a.kinds == NULL)
    texts_b = (b.kinds == STR) | (b.kinds == NULL)
    done = rows & texts_a & texts_b
    null_rows = done & (a.kinds == NULL) & (b.kinds == NULL)
    joined = done & ~null_rows
    if joined.any():
        pairs = zip(a.values[joined], b.values[joined], strict=True)
        values = [("" if x is None else x) + ("" if y is None else y) for x, y in pairs]
        too_long = np.fromiter((len(value) > MAX_VALUE_LENGTH for value in values), bool, len(values))
        if too_long.any():  # left to the per-object form, which raises the limit's error for these rows
            beyond = np.flatnonzero(joined)[too_long]
            joined[beyond] = done[beyond] = False
            values = [value for value, long in zip(values, too_long.tolist(), strict=True) if not long]
        out.set(joined, objects(values, len(values)), STR)
    out.set(null_rows, None, NULL)
    return done


def _replace(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """Replace of a string or NULL, with string OldValue and string or NULL NewValue (the shipped mailNickname's
    ``Replace([sAMAccountName], " ", "")``). The rows are taken by their (OldValue, NewValue) pair, in practice one
    pair of constants: its monikers are read once and its strings replaced in one pass. A replacement longer than
    what it replaces, which can pass the value limit, is left to the function itself."""
    text, old, new = args
    done = (
        rows
        & ((text.kinds == STR) | (text.kinds == NULL))
        & (old.kinds == STR)
        & ((new.kinds == STR) | (new.kinds == NULL))
    )
    positions = np.flatnonzero(done)
    olds, news = old.values[positions].tolist(), new.values[positions].tolist()
    if len(set(olds)) <= 1 and len(set(news)) <= 1:
        groups = [(olds[0], news[0], done.copy())] if olds else []
    else:
        pairs = list(zip(olds, news, strict=True))
        groups = []
        for old_value, new_value in dict.fromkeys(pairs):
            mask = np.zeros(len(done), dtype=bool)
            mask[positions[[pair == (old_value, new_value) for pair in pairs]]] = True
            groups.append((old_value, new_value, mask))
    for old_value, new_value, mask in groups:
        old_text, new_text = monikers(old_value), monikers(new_value or "")
        null_rows = mask & (text.kinds == NULL)
        strings = mask & ~null_rows
        out.set(null_rows, None, NULL)
        if len(new_text) > len(old_text):
            done[strings] = False
            continue
        values = text.values[strings].tolist()
        if old_text:
            values = [value.replace(old_text, new_text) for value in values]
        out.set(strings, objects(values, len(values)), STR)
    return done


def _instr(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """InStr of a string or NULL and a string, from the start, case-sensitive (its two-argument form): the 1-based
    position of the match, 0 when there is none, NULL for NULL."""
    if len(args) != 2:
        return np.zeros(len(rows), dtype=bool)
    text, match = args
    done = rows & ((text.kinds == STR) | (text.kinds == NULL)) & (match.kinds == STR)
    strings, null_rows = done & (text.kinds == STR), done & (text.kinds == NULL)
    if strings.any():
        found = [
            string.find(wanted) + 1 for string, wanted in zip(text.values[strings], match.values[strings], strict=True)
        ]
        out.set(strings, objects(found, len(found)), INT)
    out.set(null_rows, None, NULL)
    return done


def _flat_values(cells: list[Any]) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """The values of ``cells`` as one flat list (a list cell's values, a scalar as one value, NULL none), each value's
    cell, each cell's first value's place in the list, and whether each cell holds strings only."""
    lists = [cell if type(cell) is list else [] if cell is None else [cell] for cell in cells]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = [value for values in lists for value in values]
    owners = np.repeat(np.arange(len(lists)), lengths)
    strings = np.ones(len(lists), dtype=bool)
    strings[owners[np.fromiter((type(value) is not str for value in flat), dtype=bool, count=len(flat))]] = False
    return flat, owners, np.cumsum(lengths) - lengths, strings


def _contains(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """Contains of string values (a multi-valued cell, a string or NULL) and a string, case-sensitive (its
    two-argument form): the 1-based index of the first value holding the string, 0 when none does. The primary SMTP
    address of the shipped rules looks for "SMTP:" in every object's proxyAddresses: the values of all the rows are
    searched as one flat list, the first hit of each row found with NumPy (not a generator per object)."""
    if len(args) != 2:
        return np.zeros(len(rows), dtype=bool)
    values, search = args
    done = rows & (search.kinds == STR)
    positions = np.flatnonzero(done)
    if not positions.size:
        return done
    flat, owners, starts, strings = _flat_values(values.values[positions].tolist())
    needles = search.values[positions][owners].tolist()
    hits = np.flatnonzero(
        np.fromiter(
            (type(value) is str and needle in value for value, needle in zip(flat, needles, strict=True)),
            dtype=bool,
            count=len(flat),
        )
    )
    first, at = np.unique(owners[hits], return_index=True)  # owners ascend: each row's first hit
    found = np.zeros(len(positions), dtype=np.int64)
    found[first] = hits[at] - starts[first] + 1
    done[positions[~strings]] = False
    kept = positions[strings]
    out.values[kept] = found[strings].tolist()
    out.kinds[kept], out.ok[kept] = INT, True
    return done


def _item(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """Item of a multi-valued cell or a plain scalar and a whole number in range; an index out of range is the
    function's own error, left to it."""
    values, index = args
    done = rows & (index.kinds == INT) & ((values.kinds <= SCALAR) | (values.kinds == OTHER))
    for position in np.flatnonzero(done).tolist():
        cell, number = values.values[position], index.values[position]
        items = as_list(cell)
        if (type(cell) is not list and values.kinds[position] == OTHER) or not 1 <= number <= len(items):
            done[position] = False
            continue
        value = items[number - 1]
        out.values[position], out.kinds[position] = value, kind_of(value)
    out.ok[done] = True
    return done


def _mid(args: Sequence[Col], rows: np.ndarray, out: Col) -> np.ndarray:
    """Mid of a string or NULL and whole numbers (a multi-valued string goes through the function, value by value)."""
    text, *numbers = args
    done = rows & ((text.kinds == STR) | (text.kinds == NULL))
    for number in numbers:
        done &= number.kinds == INT
    if done.any():
        cut = map(mid_of_text, text.values[done], *(number.values[done] for number in numbers))
        out.set(done, objects(cut, int(done.sum())), STR)
    return done


FAST_FUNCTIONS: dict[str, Fast] = {
    "LCase": _string_method(str.lower, STR),
    "UCase": _string_method(str.upper, STR),
    "Trim": _string_method(str.strip, STR),
    "Len": _string_method(len, INT),
    "Left": _slice(_left),
    "Right": _slice(_right),
    "ConvertToBase64": _to_base64,
    "BitAnd": _bitwise(np.bitwise_and),
    "BitOr": _bitwise(np.bitwise_or),
    "IsPresent": _presence(lambda kinds, empty_str, empty_bin: (kinds != NULL) & ~empty_str & ~empty_bin),
    "IsNullOrEmpty": _presence(lambda kinds, empty_str, empty_bin: (kinds == NULL) | empty_str | empty_bin),
    "IsNull": _presence(lambda kinds, empty_str, empty_bin: kinds == NULL),
    "IsEmpty": _presence(lambda kinds, empty_str, empty_bin: empty_str | empty_bin),
    "Count": _presence(lambda kinds, empty_str, empty_bin: (kinds != NULL).astype(np.int64), INT),
    "Replace": _replace,
    "InStr": _instr,
    "Contains": _contains,
    "Item": _item,
    "Mid": _mid,
}

FAST_OPERATORS: dict[str, Fast] = {op: _comparison(op) for op in ("=", "<>", "<", "<=", ">", ">=")}
FAST_OPERATORS["&"] = _concat


def logical_rest(stop: bool, a: Col, b: Col, rows: np.ndarray, out: Col) -> np.ndarray:
    """``||`` (``stop`` True) or ``&&`` (``stop`` False) at the rows whose left side did not decide: left and right
    both a boolean or NULL. The right side's ``stop`` decides; else a NULL makes NULL; else ``not stop``."""
    plain = (a.kinds == BOOL) | (a.kinds == NULL)
    done = rows & plain & ((b.kinds == BOOL) | (b.kinds == NULL))
    decided = done & (b.kinds == BOOL)
    decided[decided] = b.values[decided] == stop
    null_rows = done & ~decided & ((a.kinds == NULL) | (b.kinds == NULL))
    out.set(decided, stop, BOOL)
    out.set(null_rows, None, NULL)
    out.set(done & ~decided & ~null_rows, not stop, BOOL)
    return done
