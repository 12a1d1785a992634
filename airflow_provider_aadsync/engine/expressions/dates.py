"""Date/time functions: CDate parsing, AD's FILETIME numbers, .NET custom format strings, DateAdd.

DateTimes are timezone-aware UTC ``datetime.datetime`` values (naive ones read from a context count as UTC).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re

from airflow_provider_aadsync.engine.expressions.errors import ArgumentError

UTC = _dt.UTC
_FILETIME_EPOCH = _dt.datetime(1601, 1, 1, tzinfo=UTC)
_MAX_FILETIME = int((_dt.datetime.max.replace(tzinfo=UTC) - _FILETIME_EPOCH).total_seconds()) * 10_000_000

_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")
_TIME_FORMATS = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p", "%I %p", "%I:%M:%S%p", "%I:%M%p")
# a trailing zone: Z, UTC/GMT, +hh, -h, +hh:mm, -hhmm
_ZONE = re.compile(r"\s*(?:(?P<z>Z|UTC|GMT)|(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?)$", re.IGNORECASE)
_GENERALIZED = re.compile(r"^(\d{14})(?:\.(\d+))?(Z|[+-]\d{4})?$")  # LDAP GeneralizedTime: 20140905081453.0Z


def parse_date(text: str) -> _dt.datetime | None:
    """``text`` as a UTC DateTime, or None: ISO 8601, ``yyyy-mm-dd``, ``mm/dd/yyyy``, optional time (24 h or
    AM/PM) and an optional zone offset in hours (``"2013-01-10 4:00 PM -8"``), or LDAP GeneralizedTime."""
    text = text.strip()
    if not text:
        return None
    generalized = _GENERALIZED.match(text)
    if generalized:
        stamp = _dt.datetime.strptime(generalized.group(1), "%Y%m%d%H%M%S")
        zone = generalized.group(3) or "Z"
        offset = _dt.timedelta(0) if zone == "Z" else _offset(zone[0], zone[1:3], zone[3:5])
        return (stamp - offset).replace(tzinfo=UTC)
    try:
        parsed = _dt.datetime.fromisoformat(text.replace(" ", "T", 1) if re.match(r"^\d{4}-", text) else text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    offset = _dt.timedelta(0)
    zone = _ZONE.search(text)
    # a bare "-8" after a date-only text would be ambiguous with the date itself; zones need a time or a space
    if zone and zone.start() > 0 and (zone.group("z") or text[zone.start() - 1 : zone.start() + 1].strip() != ""):
        candidate = text[: zone.start()].strip()
        if _parse_local(candidate) is not None:
            if not zone.group("z"):
                offset = _offset(zone.group("sign"), zone.group("h"), zone.group("m") or "0")
            text = candidate
    local = _parse_local(text)
    if local is None:
        return None
    return (local - offset).replace(tzinfo=UTC)


def _offset(sign: str, hours: str, minutes: str) -> _dt.timedelta:
    delta = _dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
    return -delta if sign == "-" else delta


def _parse_local(text: str) -> _dt.datetime | None:
    for date_format in _DATE_FORMATS:
        try:
            return _dt.datetime.strptime(text, date_format)
        except ValueError:
            pass
        for time_format in _TIME_FORMATS:
            try:
                return _dt.datetime.strptime(text, f"{date_format} {time_format}")
            except ValueError:
                pass
    return None


def date_from_num(value: int) -> _dt.datetime:
    """AD's date number (100-ns intervals since 1601-01-01 UTC, a FILETIME) as a DateTime; 0 is 1601-01-01 and
    numbers past year 9999 (``accountExpires`` = 0x7FFFFFFFFFFFFFFF, "never") give 9999-12-31 23:59:59.999999."""
    if value < 0:
        raise ArgumentError(f"a date number cannot be negative, got {value}")
    if value >= _MAX_FILETIME:
        return _dt.datetime.max.replace(tzinfo=UTC)
    return _FILETIME_EPOCH + _dt.timedelta(microseconds=value // 10)


def num_from_date(value: _dt.datetime) -> int:
    """A DateTime as AD's date number (the inverse of ``date_from_num``)."""
    delta = value - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


_INTERVALS = ("yyyy", "q", "m", "y", "d", "w", "ww", "h", "n", "s")


def date_add(interval: str, value: int, date: _dt.datetime) -> _dt.datetime:
    """VBA's DateAdd: months/quarters/years keep the day, clamped to the month's last day."""
    unit = interval.strip().casefold()
    if unit in ("yyyy", "q", "m"):
        months = value * {"yyyy": 12, "q": 3, "m": 1}[unit]
        index = date.year * 12 + (date.month - 1) + months
        year, month = divmod(index, 12)
        if not 1 <= year <= 9999:
            raise ArgumentError(f"the result is outside the years 1-9999 ({year})")
        day = min(date.day, calendar.monthrange(year, month + 1)[1])
        return date.replace(year=year, month=month + 1, day=day)
    seconds = {"y": 86_400, "d": 86_400, "w": 86_400, "ww": 7 * 86_400, "h": 3_600, "n": 60, "s": 1}.get(unit)
    if seconds is None:
        raise ArgumentError(f"interval must be one of {', '.join(_INTERVALS)}, got {interval!r}")
    try:
        return date + _dt.timedelta(seconds=seconds * value)
    except OverflowError:
        raise ArgumentError("the result is outside the years 1-9999") from None


# .NET custom date and time format specifiers (the ones FormatDateTime documents through DAX's FORMAT page)
_SPECIFIER = re.compile(
    r"'[^']*'|\"[^\"]*\"|\\.|(yyyy+|yy|y|MMMM|MMM|MM|M|dddd|ddd|dd|d|HH|H|hh|h|mm|m|ss|s|f{1,7}|F{1,7}|tt|t|zzz|zz|z|K|g+|:|/)",
    re.DOTALL,
)
_MONTHS = [calendar.month_name[i] for i in range(13)]
_DAYS = [calendar.day_name[i] for i in range(7)]


def format_datetime(value: _dt.datetime, fmt: str) -> str:
    """``value`` formatted with a .NET custom format string (``"yyyy-MM-dd"``, ``"yyyyMMddHHmmss.0Z"``); other
    characters are copied, ``'quoted'`` text and ``\\x`` escapes are literal. Invariant culture, UTC."""
    out: list[str] = []
    position = 0
    for match in _SPECIFIER.finditer(fmt):
        out.append(fmt[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token[0] in "'\"":
            out.append(token[1:-1])
        elif token[0] == "\\":
            out.append(token[1])
        else:
            out.append(_format_one(value, token))
    out.append(fmt[position:])
    return "".join(out)


def _format_one(value: _dt.datetime, token: str) -> str:
    head = token[0]
    if head == "y":
        if len(token) == 1:
            return str(value.year % 100)
        if len(token) == 2:
            return f"{value.year % 100:02d}"
        return f"{value.year:0{len(token)}d}"
    if head == "M":
        return [str(value.month), f"{value.month:02d}", _MONTHS[value.month][:3], _MONTHS[value.month]][len(token) - 1]
    if head == "d":
        day_name = _DAYS[value.weekday()]
        return [str(value.day), f"{value.day:02d}", day_name[:3], day_name][len(token) - 1]
    if head == "H":
        return f"{value.hour:0{len(token)}d}"
    if head == "h":
        return f"{(value.hour % 12) or 12:0{len(token)}d}"
    if head == "m":
        return f"{value.minute:0{len(token)}d}"
    if head == "s":
        return f"{value.second:0{len(token)}d}"
    if head in "fF":
        digits = f"{value.microsecond:06d}0"[: len(token)]
        return digits.rstrip("0") if head == "F" else digits
    if head == "t":
        marker = "AM" if value.hour < 12 else "PM"
        return marker[: len(token)]
    if head == "z":
        return {"z": "+0", "zz": "+00", "zzz": "+00:00"}[token]
    if head == "K":
        return "Z"
    if head == "g":
        return "A.D."
    return token  # ":" and "/" separators of the invariant culture
