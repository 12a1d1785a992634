"""Text functions: Left, Mid, Word, PCase, Replace, ReplaceChars, InStr, ... (per value on multi-valued input)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from airflow_provider_aadsync.engine.expressions.coerce import enum_name, to_int, to_text
from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.limits import check_length, shown
from airflow_provider_aadsync.engine.expressions.registry import function, scalar


# ====================================================================================================== text
@function("GUID", 0, pure=False)
def new_guid() -> str:
    """A new random GUID as a string (lowercase, hyphenated, as .NET's ``Guid.NewGuid().ToString()``)."""
    return str(uuid.uuid4())


def _compare(compare: Any) -> bool:
    if isinstance(compare, int) and not isinstance(compare, bool):
        if compare not in (0, 1):
            raise ArgumentError(f"compare must be vbBinaryCompare (0) or vbTextCompare (1), got {compare}")
        return compare == 1
    return enum_name(compare, ("vbBinaryCompare", "vbTextCompare"), "compare") == "vbTextCompare"


@function("InStr", 2, 4, per_value=True)
def instr(stringcheck: Any, stringmatch: Any, start: Any = 1, compare: Any = "vbBinaryCompare") -> int | None:
    """The 1-based position of the first ``stringmatch`` at or after ``start``; 0 when not found."""
    text = to_text(stringcheck, "stringcheck")
    match = to_text(scalar(stringmatch, "stringmatch"), "stringmatch")
    begin = to_int(scalar(start, "start"), "start")
    if text is None or match is None or begin is None:
        return None
    if begin < 1:
        raise ArgumentError(f"start must be 1 or more, got {begin}")
    if _compare(compare):
        text, match = text.casefold(), match.casefold()
    return text.find(match, begin - 1) + 1


@function("InStrRev", 2, 4, per_value=True)
def instr_rev(stringcheck: Any, stringmatch: Any, start: Any = -1, compare: Any = "vbBinaryCompare") -> int | None:
    """The 1-based position of the last ``stringmatch`` ending at or before ``start`` (-1: the end); 0 if none."""
    text = to_text(stringcheck, "stringcheck")
    match = to_text(scalar(stringmatch, "stringmatch"), "stringmatch")
    end = to_int(scalar(start, "start"), "start")
    if text is None or match is None or end is None:
        return None
    if end == -1:
        end = len(text)
    if end < 1:
        raise ArgumentError(f"start must be -1 or 1 or more, got {end}")
    if _compare(compare):
        text, match = text.casefold(), match.casefold()
    return text.rfind(match, 0, end) + 1


@function("LCase", 1, per_value=True)
def lcase(value: Any) -> str | None:
    text = to_text(value, "value")
    return None if text is None else text.lower()


@function("UCase", 1, per_value=True)
def ucase(value: Any) -> str | None:
    text = to_text(value, "string")
    return None if text is None else text.upper()


@function("Left", 2, per_value=True)
def left(string: Any, num_chars: Any) -> str:
    """The first ``NumChars`` characters; 0 → "", negative → the whole string, NULL → "" (as documented)."""
    text = to_text(string, "string")
    count_ = to_int(scalar(num_chars, "NumChars"), "NumChars")
    if text is None:
        return ""
    if count_ is None or count_ < 0:
        return text
    return text[:count_]


@function("Right", 2, per_value=True)
def right(string: Any, num_chars: Any) -> str:
    """The last ``NumChars`` characters; 0 → "", negative → the whole string, NULL → ""."""
    text = to_text(string, "string")
    count_ = to_int(scalar(num_chars, "NumChars"), "NumChars")
    if text is None:
        return ""
    if count_ is None or count_ < 0:
        return text
    return text[max(0, len(text) - count_) :] if count_ else ""


@function("Mid", 2, 3, per_value=True)
def mid(string: Any, start: Any, num_chars: Any = None) -> str:
    """``NumChars`` characters from 1-based ``start``; without ``NumChars`` (VBA; the Item example) the rest.
    As documented: NumChars 0 → "", NumChars < 0 or start <= 0 or start past the end → the whole string, NULL → ""."""
    text = to_text(string, "string")
    begin = to_int(scalar(start, "start"), "start")
    if text is None:
        return ""
    length = None if num_chars is None else to_int(scalar(num_chars, "NumChars"), "NumChars")
    return mid_of_text(text, begin, length)


def mid_of_text(text: str | None, begin: int | None, length: int | None = None) -> str:
    """:func:`mid` once its arguments are a string (or NULL) and whole numbers (or NULL): the column form calls it
    directly for rows of those kinds."""
    if text is None:
        return ""
    if begin is None or begin <= 0 or begin > len(text):
        return text
    if length is None:
        return text[begin - 1 :]
    if length < 0:
        return text
    return text[begin - 1 : begin - 1 + length]


@function("Len", 1, per_value=True)
def length(value: Any) -> int | None:
    text = to_text(value, "value")
    return None if text is None else len(text)


@function("Trim", 1, per_value=True)
def trim(value: Any) -> str | None:
    text = to_text(value, "value")
    return None if text is None else text.strip()


@function("LTrim", 1, per_value=True)
def ltrim(value: Any) -> str | None:
    text = to_text(value, "value")
    return None if text is None else text.lstrip()


@function("RTrim", 1, per_value=True)
def rtrim(value: Any) -> str | None:
    text = to_text(value, "value")
    return None if text is None else text.rstrip()


def _pad(string: Any, length_: Any, pad: Any, *, left_side: bool) -> str:
    text = to_text(string, "string")
    target = to_int(scalar(length_, "length"), "length")
    filler = to_text(scalar(pad, "padCharacter"), "padCharacter")
    if filler is None or len(filler) != 1:
        raise ArgumentError(f"padCharacter must be exactly one character, got {shown(filler)}")
    if text is None:
        return ""
    if target is None or len(text) >= target:
        return text
    check_length(target, "the padded string")
    return text.rjust(target, filler) if left_side else text.ljust(target, filler)


@function("PadLeft", 3, per_value=True)
def pad_left(string: Any, length_: Any, pad: Any) -> str:
    return _pad(string, length_, pad, left_side=True)


@function("PadRight", 3, per_value=True)
def pad_right(string: Any, length_: Any, pad: Any) -> str:
    return _pad(string, length_, pad, left_side=False)


@function("PCase", 1, per_value=True)
def pcase(value: Any) -> str | None:
    """First letter of each space-delimited word upper case, the rest lower case; a word that is entirely upper
    case (an acronym) stays as it is — as .NET's TextInfo.ToTitleCase does, and as the docs' remark and their
    ``PCase(LCase("TEST"))`` example imply."""
    text = to_text(value, "string")
    if text is None:
        return None
    return re.sub(r"\S+", _title_word, text)


def _title_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if any(c.isalpha() for c in word) and word == word.upper():
        return word
    return word[:1].upper() + word[1:].lower()


_MONIKERS = {"\\n": "\n", "\\r": "\r", "\\t": "\t"}


def monikers(text: str) -> str:
    """``\\n``, ``\\r`` and ``\\t`` in Replace's arguments as newline, carriage return and tab."""
    return re.sub(r"\\[nrt]", lambda m: _MONIKERS[m.group(0)], text)


@function("Replace", 3, per_value=True)
def replace(string: Any, old: Any, new: Any) -> str | None:
    """Every ``OldValue`` replaced by ``NewValue``; ``\\n``, ``\\r`` and ``\\t`` in both mean newline, CR and tab."""
    text = to_text(string, "string")
    old_text = to_text(scalar(old, "OldValue"), "OldValue")
    new_text = to_text(scalar(new, "NewValue"), "NewValue") or ""
    if text is None:
        return None
    if not old_text:
        return text
    old_text, new_text = monikers(old_text), monikers(new_text)
    if len(new_text) > len(old_text):
        check_length(len(text) + text.count(old_text) * (len(new_text) - len(old_text)), "the replaced string")
    return text.replace(old_text, new_text)


def parse_replace_pattern(pattern: str) -> dict[str, str]:
    """``{source}:{target},...`` (whitespace ignored) as a mapping; a bad entry is an error naming it."""
    mapping: dict[str, str] = {}
    for entry in re.sub(r"\s+", "", pattern).split(","):
        if not entry:
            continue
        source, sep, target = entry.partition(":")
        if not sep:
            raise ArgumentError(f"ReplacePattern entry {shown(entry)} has no ':' (write source:target)")
        if len(source) != 1:
            raise ArgumentError(f"ReplacePattern source {source!r} must be exactly one character")
        mapping[source] = target
    return mapping


@function("ReplaceChars", 2, per_value=True)
def replace_chars(string: Any, pattern: Any) -> str | None:
    text = to_text(string, "string")
    spec = to_text(scalar(pattern, "ReplacePattern"), "ReplacePattern")
    if text is None:
        return None
    mapping = parse_replace_pattern(spec or "")
    if any(len(target) > 1 for target in mapping.values()):
        check_length(sum(len(mapping.get(char, char)) for char in text), "the replaced string")
    return "".join(mapping.get(char, char) for char in text)


@function("Word", 3, per_value=True)
def word(string: Any, number: Any, delimiters: Any) -> str:
    """The ``WordNumber``-th word, words being runs of characters separated by any of ``delimiters``; "" when
    there is no such word, the number is below 1 or the string is NULL."""
    text = to_text(string, "string")
    index = to_int(scalar(number, "WordNumber"), "WordNumber")
    separators = to_text(scalar(delimiters, "delimiters"), "delimiters") or ""
    if text is None or index is None or index < 1:
        return ""
    words = [w for w in re.split("[" + re.escape(separators) + "]", text) if w] if separators else [text]
    return words[index - 1] if index <= len(words) else ""
