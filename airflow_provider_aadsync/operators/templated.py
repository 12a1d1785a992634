"""What Airflow rendered for a templated parameter, read into the types the engine and the steps take.

Airflow renders an unset param or Variable as ``""`` or as the string ``"None"``; this module is the one place that
reads those as "not set" (None). The CLI passes real values and real None; the engine never sees ``"None"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aadsync.steps import load_rules_for

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.rules import RuleSet

_T = TypeVar("_T")


def templated_value(value: object) -> str | None:
    """A templated parameter's text, or None when it rendered empty or as ``"None"`` (an unset param or Variable)."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "None") else text


def templated_flag(value: object) -> bool:
    """A templated yes/no parameter (``True``, ``"true"``, ``"1"``, ``"yes"``)."""
    return (templated_value(value) or "").lower() in ("true", "1", "yes")


def templated_flag_on(value: object) -> bool:
    """A templated yes/no parameter that is on by default: off only when it renders ``false``, ``0`` or ``no``."""
    return (templated_value(value) or "true").lower() not in ("false", "0", "no")


def templated_int(value: object, default: _T = None) -> int | _T:  # type: ignore[assignment]
    """A templated number; ``default`` (None: the step's default) when it rendered empty or as ``"None"``."""
    text = templated_value(value)
    return default if text is None else int(text)


def templated_float(value: object, default: _T = None) -> float | _T:  # type: ignore[assignment]
    """A templated decimal number; ``default`` when it rendered empty or as ``"None"``."""
    text = templated_value(value)
    return default if text is None else float(text)


def named_int(name: str, value: object) -> int | None:
    """:func:`templated_int` whose error names the parameter (and the Variable behind it) instead of ``int()``'s."""
    try:
        return templated_int(value)
    except ValueError:
        raise ValueError(f"{name}: {templated_value(value)!r} is not a whole number") from None


def named_float(name: str, value: object) -> float | None:
    """:func:`templated_float` whose error names the parameter."""
    try:
        return templated_float(value)
    except ValueError:
        raise ValueError(f"{name}: {templated_value(value)!r} is not a number") from None


def templated_settings(**values: Any) -> dict[str, Any]:
    """The parameters that were set, as text (unset ones left out, so the step's defaults apply)."""
    return {name: text for name, value in values.items() if (text := templated_value(value)) is not None}


def load_rules_templated(rules: str | Sequence[str] | None, endpoint: str, **writeback: Any) -> RuleSet:
    """The rule set of a task (or of the sync manager, from Variables): ``writeback`` holds the rendered group
    writeback settings (``writeback_enabled``, off unless it renders true; ``writeback_ou``, required when it is on;
    the size limit and naming; ``block_soft_match``; ``block_cloud_object_takeover``; ``directory_extensions``;
    ``consistency_guid_writeback``, on unless it renders false), empty or ``"None"`` meaning the defaults."""
    enabled = templated_flag(writeback.pop("writeback_enabled", False))
    block = templated_flag(writeback.pop("block_soft_match", False))
    takeover = templated_flag(writeback.pop("block_cloud_object_takeover", False))
    extensions = templated_value(writeback.pop("directory_extensions", None))
    stamp = templated_flag_on(writeback.pop("consistency_guid_writeback", True))
    chosen = templated_settings(**writeback)
    return load_rules_for(
        rules,
        endpoint,
        writeback_enabled=enabled,
        block_soft_match=block,
        block_cloud_object_takeover=takeover,
        directory_extensions=extensions,
        consistency_guid_writeback=stamp,
        **chosen,
    )
