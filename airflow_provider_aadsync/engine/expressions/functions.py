"""The functions of "Azure AD Connect sync: Functions Reference" (plus ValueCount and ImportedValue), by name.

Every function is registered in ``FUNCTIONS`` (keyed by the case-folded name) with its argument counts and how the
compiler calls it:

* ``eager``   — ``impl(*values)``: the arguments are evaluated first (most functions);
* ``lazy``    — ``impl(env, *thunks)``: the function evaluates its arguments itself (IIF, Switch);
* ``context`` — ``impl(env, *values)``: reads the evaluation context (ValueCount, ImportedValue);
* ``binder``  — ``impl(env, variable, *thunks)``: the first argument is a ``$variable`` the function binds
  (Select, Where, With).

Functions on single strings (Trim, Left, Word, ...) applied to a multi-valued argument work on every value and
return the results as a multi-valued cell (``values.mv_result``), as the language's docs describe
(``Trim([proxyAddresses])``). Implementations raise ``coerce.ArgumentError``; the compiler adds the function name.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_aadsync.engine.expressions import dates
from airflow_provider_aadsync.engine.expressions.coerce import (
    ArgumentError,
    enum_name,
    format_number,
    parse_number,
    to_bool,
    to_bytes,
    to_datetime,
    to_int,
    to_number,
    to_text,
)
from airflow_provider_aadsync.engine.expressions.errors import ExpressionEvaluationError, FlowError
from airflow_provider_aadsync.engine.expressions.values import (
    ReferenceValues,
    as_list,
    cell,
    lookup_in,
    mv_result,
    type_name,
)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function: documented name, implementation, argument counts and calling convention."""

    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    kind: str = "eager"
    pure: bool = True  # same arguments, same result (so constant arguments may be folded at compile time)
    raw_attribute: bool = False  # a direct [attribute] argument may be unloaded ReferenceValues
    name_argument: bool = False  # the first argument is an attribute name (ValueCount("member"))

    def arity(self) -> str:
        """ "2 arguments", "2 to 4 arguments", "at least 2 arguments"."""
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        return f"{self.min_args} to {self.max_args} arguments"


FUNCTIONS: dict[str, FunctionSpec] = {}

# bare words that are values, not functions: enum constants some functions take (InStr's vbTextCompare, ...)
ENUM_WORDS = {
    word.casefold(): word
    for word in ("vbTextCompare", "vbBinaryCompare", "CaseSensitive", "CaseInsensitive", "Unicode", "ASCII", "UTF8")
    + ("Binary",)
}


def function(
    name: str,
    min_args: int,
    max_args: int | None | str = "same",
    *,
    kind: str = "eager",
    pure: bool = True,
    per_value: bool = False,
    raw_attribute: bool = False,
    name_argument: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``impl`` as the function ``name``; ``per_value`` maps it over a multi-valued first argument."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        call = _per_value(impl) if per_value else impl
        upper = min_args if max_args == "same" else max_args
        FUNCTIONS[name.casefold()] = FunctionSpec(
            name,
            call,
            min_args,
            upper,
            kind,
            pure,
            raw_attribute,
            name_argument,  # type: ignore[arg-type]
        )
        return impl

    return register


def _per_value(impl: Callable[..., Any]) -> Callable[..., Any]:
    def mapped(first: Any, *rest: Any) -> Any:
        if isinstance(first, list):
            return mv_result(impl(value, *rest) for value in first)
        return impl(first, *rest)

    mapped.__name__ = impl.__name__
    mapped.__doc__ = impl.__doc__
    return mapped


def _scalar(value: Any, what: str) -> Any:
    if isinstance(value, list):
        raise ArgumentError(f"{what} must be single-valued, got {len(value)} values")
    return value


# ================================================================================================ conversion
@function("CBool", 1)
def cbool(value: Any) -> bool:
    """True when the expression is non-zero / True; False otherwise (NULL included), as documented."""
    return bool(to_bool(_scalar(value, "expression"), "expression"))


@function("CDate", 1, per_value=True)
def cdate(value: Any) -> _dt.datetime | None:
    return to_datetime(value, "value")


@function("CGuid", 1, per_value=True)
def cguid(value: Any) -> bytes | None:
    """The binary form (``uuid.UUID(s).bytes_le``, AD's objectGUID byte order) of ``xxxxxxxx-...`` or ``{...}``."""
    text = to_text(value, "GUID")
    if text is None:
        return None
    guid = _parse_guid(text)
    if guid is None:
        raise ArgumentError(f"{text!r} is not a GUID")
    return guid.bytes_le


_GUID = re.compile(r"^(\{)?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?(1)\})$")


def _parse_guid(text: str) -> uuid.UUID | None:
    text = text.strip()
    return uuid.UUID(text.strip("{}")) if _GUID.match(text) else None


_ENCODINGS = ("Unicode", "ASCII", "UTF8", "Binary")
_CODECS = {"Unicode": "utf-16-le", "ASCII": "ascii", "UTF8": "utf-8"}


@function("ConvertFromBase64", 1, 2, per_value=True)
def convert_from_base64(source: Any, encoding: Any = "Unicode") -> str | bytes | None:
    """Decode base64 to text (Unicode = UTF-16LE by default; ASCII, UTF8). Extension: ``Binary`` returns bytes."""
    text = to_text(source, "source")
    if text is None:
        return None
    codec = enum_name(encoding, _ENCODINGS, "Encoding")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"{text!r} is not base64") from None
    if codec == "Binary":
        return raw
    try:
        # surrogatepass: a GUID's 16 bytes read as UTF-16 survive ConvertToBase64(ConvertFromBase64(x)) unchanged
        return raw.decode(_CODECS[codec], errors="surrogatepass" if codec == "Unicode" else "strict")
    except UnicodeDecodeError:
        raise ArgumentError(f"the decoded bytes are not {codec} text") from None


@function("ConvertToBase64", 1, per_value=True)
def convert_to_base64(source: Any) -> str | None:
    """Base64 of a string's UTF-16LE ("Unicode") bytes, or of binary data as it is (objectGUID → ImmutableId)."""
    if source is None:
        return None
    if isinstance(source, bytes):
        return base64.b64encode(source).decode("ascii")
    text = to_text(source, "source")
    return base64.b64encode(text.encode("utf-16-le", errors="surrogatepass")).decode("ascii")  # type: ignore[union-attr]


@function("ConvertFromUTF8Hex", 1, per_value=True)
def convert_from_utf8_hex(source: Any) -> str | None:
    text = to_text(source, "source")
    if text is None:
        return None
    try:
        return bytes.fromhex(text).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise ArgumentError(f"{text!r} is not UTF-8 hex") from None


@function("ConvertToUTF8Hex", 1, per_value=True)
def convert_to_utf8_hex(source: Any) -> str | None:
    text = to_text(source, "source")
    return None if text is None else text.encode("utf-8").hex().upper()


@function("CNum", 1, per_value=True)
def cnum(value: Any) -> int | float | None:
    return to_number(value, "value")


@function("CRef", 1, per_value=True)
def cref(value: Any) -> str | None:
    """A reference is its DN string here."""
    return to_text(value, "value")


@function("CStr", 1, per_value=True)
def cstr(value: Any) -> str | None:
    """Numbers, Booleans ("True"/"False"), references and strings as a string; DateTimes as ``yyyy-MM-dd HH:mm:ss``."""
    if isinstance(value, _dt.datetime):
        return dates.format_datetime(value, "yyyy-MM-dd HH:mm:ss")
    if isinstance(value, bytes):
        raise ArgumentError("cannot convert binary to a string; use StringFromGuid, StringFromSid or ConvertToBase64")
    return to_text(value, "value")


@function("StringFromGuid", 1, per_value=True)
def string_from_guid(value: Any) -> str | None:
    """``str(uuid.UUID(bytes_le=value))``: lowercase, hyphenated, no braces."""
    raw = to_bytes(value, "GUID")
    if raw is None:
        return None
    if len(raw) != 16:
        raise ArgumentError(f"a binary GUID has 16 bytes, got {len(raw)}")
    return str(uuid.UUID(bytes_le=raw))


@function("StringFromSid", 1, per_value=True)
def string_from_sid(value: Any) -> str | None:
    """A binary SID as ``S-1-5-21-...``."""
    raw = to_bytes(value, "ObjectSID")
    if raw is None:
        return None
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ArgumentError(f"{len(raw)} bytes are not a binary SID")
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i : 12 + 4 * i], "little") for i in range(raw[1])]
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


# ================================================================================================= date/time
@function("DateAdd", 3)
def date_add(interval: Any, value: Any, date: Any) -> _dt.datetime | None:
    when = to_datetime(_scalar(date, "date"), "date")
    number = to_int(_scalar(value, "value"), "value")
    if when is None or number is None:
        return None
    return dates.date_add(to_text(interval, "interval") or "", number, when)


@function("DateFromNum", 1, per_value=True)
def date_from_num(value: Any) -> _dt.datetime | None:
    number = to_int(value, "value")
    return None if number is None else dates.date_from_num(number)


@function("FormatDateTime", 2, per_value=True)
def format_date_time(value: Any, fmt: Any) -> str | None:
    when = to_datetime(value, "value")
    return None if when is None else dates.format_datetime(when, to_text(fmt, "format") or "")


@function("Now", 0, pure=False)
def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@function("NumFromDate", 1, per_value=True)
def num_from_date(value: Any) -> int | None:
    when = to_datetime(value, "value")
    return None if when is None else dates.num_from_date(when)


# ================================================================================================= directory
def split_dn(dn: str) -> list[tuple[str, str]]:
    """A DN as (attribute type, unescaped value) pairs, left to right; escaped and quoted commas are kept."""
    components: list[tuple[str, str]] = []
    current: list[str] = []
    i, quoted = 0, False
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            current.append(dn[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in ",;" and not quoted:
            components.append(_rdn("".join(current)))
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    if current or components:
        components.append(_rdn("".join(current)))
    return components


def _rdn(text: str) -> tuple[str, str]:
    kind, sep, value = text.strip().partition("=")
    if not sep:
        raise ArgumentError(f"{text.strip()!r} is not a DN component (type=value)")
    return kind.strip(), _unescape_dn_value(value.strip())


def _unescape_dn_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 2 < len(value) + 1:
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(value[i].encode())
        i += 1
    return out.decode("utf-8", errors="replace")


@function("DNComponent", 2, per_value=True)
def dn_component(dn: Any, number: Any) -> str | None:
    """The (unescaped) value of the ``number``-th component from the left; NULL when there is none."""
    text = to_text(dn, "dn")
    index = to_int(_scalar(number, "ComponentNumber"), "ComponentNumber")
    if text is None or index is None:
        return None
    components = split_dn(text)
    return components[index - 1][1] if 1 <= index <= len(components) else None


@function("DNComponentRev", 2, 3, per_value=True)
def dn_component_rev(dn: Any, number: Any, options: Any = None) -> str | None:
    """The ``number``-th component from the right; option ``"DC"`` skips the ``dc=`` components."""
    text = to_text(dn, "dn")
    index = to_int(_scalar(number, "ComponentNumber"), "ComponentNumber")
    if text is None or index is None:
        return None
    components = split_dn(text)
    if options is not None:
        enum_name(options, ("DC",), "Options")
        components = [c for c in components if c[0].casefold() != "dc"]
    return components[-index][1] if 1 <= index <= len(components) else None


_DN_SPECIALS = set(',+"\\<>;=')


@function("EscapeDNComponent", 1, per_value=True)
def escape_dn_component(value: Any) -> str | None:
    """Escape the value of ``type=value`` (or a bare value) for LDAP: ``,+"\\<>;=`` get a backslash, a leading
    ``#`` or space and a trailing space too, control characters become ``\\XX``."""
    text = to_text(value, "value")
    if text is None:
        return None
    kind, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9-]*\s*", kind):
        kind, sep, rest = "", "", text
    out = []
    for position, char in enumerate(rest):
        if char in _DN_SPECIALS:
            out.append("\\" + char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\{ord(char):02X}")
        elif (char in "# " and position == 0) or (char == " " and position == len(rest) - 1):
            out.append("\\" + char)
        else:
            out.append(char)
    return f"{kind}{sep}{''.join(out)}"


# ================================================================================================ evaluation
@function("IsBitSet", 2)
def is_bit_set(value: Any, flag: Any) -> bool | None:
    """True when every bit of ``flag`` is set in ``value`` (``IsBitSet([userAccountControl],2)``: disabled)."""
    number = to_int(_scalar(value, "value"), "value")
    mask = to_int(_scalar(flag, "flag"), "flag")
    if number is None or mask is None:
        return False
    return number & mask == mask


@function("IsDate", 1)
def is_date(value: Any) -> bool:
    if isinstance(value, _dt.datetime):
        return True
    return isinstance(value, str) and dates.parse_date(value) is not None


@function("IsEmpty", 1, raw_attribute=True)
def is_empty(value: Any) -> bool:
    """True for a present, empty string (an absent attribute is NULL, not empty)."""
    if isinstance(value, list):
        return all(v == "" for v in value)
    return value == "" or value == b""


@function("IsGuid", 1)
def is_guid(value: Any) -> bool:
    return isinstance(value, str) and _parse_guid(value) is not None


@function("IsNull", 1, raw_attribute=True)
def is_null(value: Any) -> bool:
    if isinstance(value, ReferenceValues):
        return value.count == 0
    return value is None


@function("IsNullOrEmpty", 1, raw_attribute=True)
def is_null_or_empty(value: Any) -> bool:
    return not is_present(value)


@function("IsNumeric", 1)
def is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and parse_number(value) is not None


@function("IsPresent", 1, raw_attribute=True)
def is_present(value: Any) -> bool:
    """True for a value that is not NULL and not an empty string (any such value of a multi-valued one)."""
    if isinstance(value, ReferenceValues):
        return value.count > 0
    if isinstance(value, list):
        return any(is_present(v) for v in value)
    return value is not None and value != "" and value != b""


@function("IsString", 1)
def is_string(value: Any) -> bool:
    return isinstance(value, str | int | float) or isinstance(value, _dt.datetime)


# ====================================================================================================== math
@function("BitAnd", 2)
def bit_and(value1: Any, value2: Any) -> int | None:
    a, b = to_int(_scalar(value1, "value1"), "value1"), to_int(_scalar(value2, "value2"), "value2")
    return None if a is None or b is None else a & b


@function("BitOr", 2)
def bit_or(value1: Any, value2: Any) -> int | None:
    a, b = to_int(_scalar(value1, "value1"), "value1"), to_int(_scalar(value2, "value2"), "value2")
    return None if a is None or b is None else a | b


@function("RandomNum", 2, pure=False)
def random_num(start: Any, end: Any) -> int:
    low, high = to_int(_scalar(start, "start"), "start"), to_int(_scalar(end, "end"), "end")
    if low is None or high is None or low > high:
        raise ArgumentError(f"needs start <= end, got {start!r} and {end!r}")
    return random.randint(low, high)  # noqa: S311 - not for secrets


# =============================================================================================== multi-valued
def _case(casetype: Any) -> bool:
    return enum_name(casetype, ("CaseSensitive", "CaseInsensitive"), "Casetype") == "CaseInsensitive"


@function("Contains", 2, 3)
def contains(attribute: Any, search: Any, casetype: Any = "CaseSensitive") -> int:
    """The 1-based index of the first value containing ``search`` (case-sensitive unless CaseInsensitive); 0 if
    none does."""
    needle = to_text(_scalar(search, "search"), "search")
    if needle is None:
        return 0
    fold = _case(casetype)
    if fold:
        needle = needle.casefold()
    for index, value in enumerate(as_list(attribute), start=1):
        text = to_text(value, "attribute value")
        if text is not None and needle in (text.casefold() if fold else text):
            return index
    return 0


@function("Count", 1, raw_attribute=True)
def count(attribute: Any) -> int:
    if isinstance(attribute, ReferenceValues):
        return attribute.count
    return len(as_list(attribute))


def _item(attribute: Any, index: Any, or_null: bool) -> Any:
    values = as_list(attribute)
    position = to_int(_scalar(index, "index"), "index")
    if position is not None and 1 <= position <= len(values):
        return values[position - 1]
    if or_null:
        return None
    raise ArgumentError(f"index {position} is out of range (the attribute has {len(values)} values)")


@function("Item", 2)
def item(attribute: Any, index: Any) -> Any:
    """The ``index``-th value (1-based, as Contains returns it); an error when out of range."""
    return _item(attribute, index, or_null=False)


@function("ItemOrNull", 2)
def item_or_null(attribute: Any, index: Any) -> Any:
    return _item(attribute, index, or_null=True)


@function("Join", 1, 2)
def join(attribute: Any, delimiter: Any = " ") -> str | None:
    if attribute is None:
        return None
    separator = to_text(_scalar(delimiter, "Delimiter"), "Delimiter") or ""
    return separator.join(to_text(v, "attribute value") or "" for v in as_list(attribute))


@function("RemoveDuplicates", 1)
def remove_duplicates(attribute: Any) -> Any:
    """Each value once, first occurrence kept, case-sensitive."""
    seen: list[Any] = []
    for value in as_list(attribute):
        if value not in seen:
            seen.append(value)
    return mv_result(seen)


@function("Split", 2, 3)
def split(value: Any, delimiter: Any, limit: Any = None) -> Any:
    """Split at ``delimiter``; ``limit`` caps the number of values (the last keeps the rest, as .NET does)."""
    text = to_text(_scalar(value, "value"), "value")
    if text is None:
        return None
    separator = to_text(_scalar(delimiter, "delimiter"), "delimiter")
    if not separator:
        raise ArgumentError("delimiter must not be empty")
    cap = to_int(_scalar(limit, "limit"), "limit")
    if cap is not None and cap < 1:
        raise ArgumentError(f"limit must be at least 1, got {cap}")
    parts = text.split(separator) if cap is None else text.split(separator, cap - 1)
    return mv_result(parts)


# ============================================================================================== program flow
@function("Error", 1)
def error(message: Any) -> None:
    raise FlowError(to_text(_scalar(message, "ErrorMessage"), "ErrorMessage") or "")


def truth(value: Any) -> bool:
    """A condition's value as IIF reads it: NULL is False."""
    return bool(to_bool(value, "condition"))


@function("IIF", 3, kind="lazy")
def iif(
    env: Any, condition: Callable[[Any], Any], if_true: Callable[[Any], Any], if_false: Callable[[Any], Any]
) -> Any:
    """Only the chosen branch is evaluated. A multi-valued condition (``IIF(InStr([proxyAddresses],"SIP:")=1,NULL,
    [proxyAddresses])``) chooses per value: a multi-valued branch gives its value at that position."""
    test = condition(env)
    if not isinstance(test, list):
        return if_true(env) if truth(test) else if_false(env)
    flags = [truth(v) for v in test]
    branches: dict[bool, Any] = {}
    if True in flags:
        branches[True] = if_true(env)
    if False in flags:
        branches[False] = if_false(env)
    out = []
    for position, flag in enumerate(flags):
        chosen = branches[flag]
        if isinstance(chosen, list):
            if len(chosen) != len(flags):
                raise ArgumentError(f"a multi-valued condition has {len(flags)} values but a branch has {len(chosen)}")
            chosen = chosen[position]
        out.append(chosen)
    return mv_result(out)


@function("Switch", 2, None, kind="lazy")
def switch(env: Any, *pairs: Callable[[Any], Any]) -> Any:
    """The value after the first condition that is True; NULL when none is. Conditions are evaluated left to right
    up to the first True one, and only the chosen value (so a final ``True, Error("...")`` is an else-branch)."""
    for position in range(0, len(pairs), 2):
        if truth(_scalar(pairs[position](env), "condition")):
            return pairs[position + 1](env)
    return None


def _bind(env: Any, variable: str, value: Any, body: Callable[[Any], Any]) -> Any:
    variables = env.variables
    missing = object()
    saved = variables.get(variable, missing)
    variables[variable] = value
    try:
        return body(env)
    finally:
        if saved is missing:
            del variables[variable]
        else:
            variables[variable] = saved


@function("Select", 3, kind="binder")
def select(env: Any, variable: str, source: Callable[[Any], Any], func: Callable[[Any], Any]) -> Any:
    """``Select($item,[otherPhone],Replace($item,"-",""))``: ``func`` of every value; NULL results are dropped."""
    return mv_result(_bind(env, variable, value, func) for value in as_list(source(env)))


@function("Where", 3, kind="binder")
def where(env: Any, variable: str, source: Callable[[Any], Any], condition: Callable[[Any], Any]) -> Any:
    """``Where($item,[proxyAddresses],Left($item,5)="SMTP:")``: the values for which the condition is True."""
    return mv_result(v for v in as_list(source(env)) if truth(_scalar(_bind(env, variable, v, condition), "condition")))


@function("With", 3, kind="binder")
def with_(env: Any, variable: str, sub_expression: Callable[[Any], Any], expression: Callable[[Any], Any]) -> Any:
    """``With($v, subExpression, complexExpression)``: ``subExpression`` is evaluated once."""
    return _bind(env, variable, sub_expression(env), expression)


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
    match = to_text(_scalar(stringmatch, "stringmatch"), "stringmatch")
    begin = to_int(_scalar(start, "start"), "start")
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
    match = to_text(_scalar(stringmatch, "stringmatch"), "stringmatch")
    end = to_int(_scalar(start, "start"), "start")
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
    count_ = to_int(_scalar(num_chars, "NumChars"), "NumChars")
    if text is None:
        return ""
    if count_ is None or count_ < 0:
        return text
    return text[:count_]


@function("Right", 2, per_value=True)
def right(string: Any, num_chars: Any) -> str:
    """The last ``NumChars`` characters; 0 → "", negative → the whole string, NULL → ""."""
    text = to_text(string, "string")
    count_ = to_int(_scalar(num_chars, "NumChars"), "NumChars")
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
    begin = to_int(_scalar(start, "start"), "start")
    if text is None:
        return ""
    length = None if num_chars is None else to_int(_scalar(num_chars, "NumChars"), "NumChars")
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
    target = to_int(_scalar(length_, "length"), "length")
    filler = to_text(_scalar(pad, "padCharacter"), "padCharacter")
    if filler is None or len(filler) != 1:
        raise ArgumentError(f"padCharacter must be exactly one character, got {filler!r}")
    if text is None:
        return ""
    if target is None or len(text) >= target:
        return text
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


def _monikers(text: str) -> str:
    return re.sub(r"\\[nrt]", lambda m: _MONIKERS[m.group(0)], text)


@function("Replace", 3, per_value=True)
def replace(string: Any, old: Any, new: Any) -> str | None:
    """Every ``OldValue`` replaced by ``NewValue``; ``\\n``, ``\\r`` and ``\\t`` in both mean newline, CR and tab."""
    text = to_text(string, "string")
    old_text = to_text(_scalar(old, "OldValue"), "OldValue")
    new_text = to_text(_scalar(new, "NewValue"), "NewValue") or ""
    if text is None:
        return None
    if not old_text:
        return text
    return text.replace(_monikers(old_text), _monikers(new_text))


def parse_replace_pattern(pattern: str) -> dict[str, str]:
    """``{source}:{target},...`` (whitespace ignored) as a mapping; a bad entry is an error naming it."""
    mapping: dict[str, str] = {}
    for entry in re.sub(r"\s+", "", pattern).split(","):
        if not entry:
            continue
        source, sep, target = entry.partition(":")
        if not sep:
            raise ArgumentError(f"ReplacePattern entry {entry!r} has no ':' (write source:target)")
        if len(source) != 1:
            raise ArgumentError(f"ReplacePattern source {source!r} must be exactly one character")
        mapping[source] = target
    return mapping


@function("ReplaceChars", 2, per_value=True)
def replace_chars(string: Any, pattern: Any) -> str | None:
    text = to_text(string, "string")
    spec = to_text(_scalar(pattern, "ReplacePattern"), "ReplacePattern")
    if text is None:
        return None
    mapping = parse_replace_pattern(spec or "")
    return "".join(mapping.get(char, char) for char in text)


@function("Word", 3, per_value=True)
def word(string: Any, number: Any, delimiters: Any) -> str:
    """The ``WordNumber``-th word, words being runs of characters separated by any of ``delimiters``; "" when
    there is no such word, the number is below 1 or the string is NULL."""
    text = to_text(string, "string")
    index = to_int(_scalar(number, "WordNumber"), "WordNumber")
    separators = to_text(_scalar(delimiters, "delimiters"), "delimiters") or ""
    if text is None or index is None or index < 1:
        return ""
    words = [w for w in re.split("[" + re.escape(separators) + "]", text) if w] if separators else [text]
    return words[index - 1] if index <= len(words) else ""


# ===================================================================================== engine-provided functions
@function("ValueCount", 1, kind="context", pure=False, name_argument=True)
def value_count(env: Any, name: Any) -> int:
    """The number of values of the attribute named ``name`` (a string), without loading them (group members)."""
    attribute = to_text(_scalar(name, "name"), "name")
    value = cell(lookup_in(env.context, attribute)) if attribute else None
    if isinstance(value, ReferenceValues):
        return value.count
    return len(as_list(value))


@function("ImportedValue", 1, kind="context", pure=False, name_argument=True)
def imported_value(env: Any, name: Any) -> Any:
    """The attribute's value as last imported (``context.imported_value(name)``; without that method, ``get``)."""
    attribute = to_text(_scalar(name, "name"), "name")
    if not attribute:
        return None
    reader = getattr(env.context, "imported_value", None)
    value = cell(reader(attribute) if reader is not None else lookup_in(env.context, attribute))
    if isinstance(value, ReferenceValues):
        raise ExpressionEvaluationError(
            f"attribute {attribute!r} holds {value.count} reference values that are not loaded; "
            f'only ValueCount("{attribute}") can use it',
            function="ImportedValue",
        )
    return value


def describe(value: Any) -> str:
    """A short description of a value for messages."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value)
    return f"{type_name(value)} {value!r}"


# The Cert* functions register themselves on import; they live in their own module (and need `cryptography`).
from airflow_provider_aadsync.engine.expressions import certificates as _certificates  # noqa: E402, F401
