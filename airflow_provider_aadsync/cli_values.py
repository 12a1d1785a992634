"""Values on the ``aadsync expr`` command line (``--set NAME=VALUE``, ``--param``) and its JSON output: typed by a
prefix (``int:42``, ``b64:...``, ``sid:S-1-5-...``), so binary, numeric and date values can be tried from a shell."""

from __future__ import annotations

import click

EXPR_VALUE_HELP = """Values are strings unless prefixed: int:42, num:1.5, bool:true, b64:<base64> (binary),
hex:<hex> (binary), guid:<GUID> (binary, AD objectGUID byte order), sid:S-1-5-... (binary SID),
date:<date> (UTC DateTime), refs:<count> (unloaded reference values), null: (NULL), str:<text> (a string that
starts with a prefix)."""


def typed_value(text: str) -> object:
    """A command-line value: a string, or a typed value when it starts with one of the prefixes of --help."""
    import base64
    import datetime as dt
    import uuid

    from airflow_provider_aadsync.engine.expressions import ReferenceValues

    prefix, sep, rest = text.partition(":")
    if not sep:
        return text
    prefix = prefix.lower()
    try:
        if prefix == "str":
            return rest
        if prefix == "int":
            return int(rest, 0)
        if prefix == "num":
            return float(rest)
        if prefix == "bool":
            if rest.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return rest.lower() in ("true", "1")
        if prefix == "b64":
            return base64.b64decode(rest, validate=True)
        if prefix == "hex":
            return bytes.fromhex(rest)
        if prefix == "guid":
            return uuid.UUID(rest.strip("{}")).bytes_le
        if prefix == "sid":
            return sid_bytes(rest)
        if prefix == "date":
            from airflow_provider_aadsync.engine.expressions.dates import parse_date

            value = parse_date(rest)
            if value is None:
                raise ValueError("not a date")
            return value.astimezone(dt.UTC)
        if prefix == "refs":
            return ReferenceValues(int(rest))
        if prefix == "null" and not rest:
            return None
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(f"{text[:80]!r}: {exc}") from None
    return text  # "mailto:x", "SMTP:a@b": not a known prefix, so a plain string


def sid_bytes(text: str) -> bytes:
    parts = text.split("-")
    if len(parts) < 3 or parts[0].upper() != "S":
        raise ValueError("expected S-1-<authority>-<subauthorities>")
    subs = [int(p) for p in parts[3:]]
    return (
        bytes([int(parts[1]), len(subs)])
        + int(parts[2]).to_bytes(6, "big")
        + b"".join(s.to_bytes(4, "little") for s in subs)
    )


def json_value(value: object) -> object:
    """A result as JSON data: NULL → null, binary → base64, DateTime → ISO 8601, sentinels → their names."""
    import base64
    import datetime as dt

    from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow

    if value is AuthoritativeNull or value is IgnoreThisFlow:
        return repr(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def name_values(pairs: tuple[str, ...], option: str) -> dict[str, object]:
    values: dict[str, list[object]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=option)
        values.setdefault(name, []).append(typed_value(text))
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}
