"""Confirming an export's mass change for one run: the exact counts its guard stop named, not a raised threshold.

A raised threshold confirms any mass change up to it: kept in a DAG run's params, it lets through whatever a rerun of
that DAG run (cleared days later) finds pending, up to the number. A confirmation names each exceeded guard with the
count the stop reported, ``deletes=812`` or ``deletes=812,member_removals=1204``, and lets an export through a guard
only when that guard's count is exactly the confirmed one now: the same plan goes through, a plan grown by one object
stops again, and a confirmation of one guard never lets another one through.

The names, one per count the guards check (engine/runs/export_guards.py):

- ``deletes``: pending object deletes (the deletion threshold);
- ``disables``: accounts switched off (the disable threshold);
- ``member_removals``: group member removals plus users whose manager would be cleared, the count the member removal
  threshold is checked against; it confirms the per-group share too (that stop names the same count);
- ``identity_changes``: accounts getting another sign-in name or mail address (the identity change threshold);
- ``attribute_clears``: objects that would lose every value of an attribute they hold (the attribute clear
  threshold).

Written as ``name=count`` pairs separated by commas (spaces around them are ignored, a name may be given once); an
empty value confirms nothing. Anything else is refused with a message naming the form, so a typo fails the run
before it opens the store instead of passing as "nothing confirmed".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: The guards a confirmation names, in the order messages list them.
CONFIRMATION_NAMES = ("deletes", "disables", "member_removals", "identity_changes", "attribute_clears")
#: What a confirmation looks like (the messages and the parameter descriptions show it).
CONFIRMATION_EXAMPLE = "deletes=812,member_removals=1204"

_COUNT = re.compile(r"[0-9]+")


_PAIR = r"\s*(?:" + "|".join(name.replace("_", "[_-]") for name in CONFIRMATION_NAMES) + r")\s*=\s*[0-9]+\s*"
#: The JSON-schema ``pattern`` of the value (the DAG param's, so Airflow's trigger form refuses a malformed one before
#: the run): ``name=count`` pairs separated by commas, or nothing. It reads as Python's and JavaScript's regexes
#: alike. Stricter than :func:`parse_confirmation` only in letter case (the names in lower case, as the messages
#: print them); a name given twice it cannot see, and the export refuses it when it starts.
CONFIRMATION_PATTERN = rf"^(?:{_PAIR}(?:,{_PAIR})*|\s*)$"


def parse_confirmation(text: str | None) -> dict[str, int]:
    """The counts ``text`` confirms, by guard name (empty or None: none); a ``ValueError`` naming the problem for
    anything else than ``name=count`` pairs separated by commas."""
    if text is None or not str(text).strip():
        return {}
    text = str(text).strip()
    form = (
        f"expected name=count pairs separated by commas, such as {CONFIRMATION_EXAMPLE} (names: "
        f"{', '.join(CONFIRMATION_NAMES)}), as the stopped export's message gives them"
    )
    if text.lower() in ("true", "yes", "on"):
        raise ValueError(
            f"confirm_mass_change {text!r}: {form}; a yes would confirm whatever mass change is pending when the "
            "run goes"
        )
    if _COUNT.fullmatch(text):
        raise ValueError(
            f"confirm_mass_change {text!r}: {form}; a number alone does not say which guard's count it confirms"
        )
    confirmed: dict[str, int] = {}
    for part in text.split(","):
        name, equals, count = (piece.strip() for piece in part.partition("="))
        if not equals or not name:
            raise ValueError(f"confirm_mass_change {text!r}: {part.strip()!r} is not name=count; {form}")
        key = name.lower().replace("-", "_")
        if key not in CONFIRMATION_NAMES:
            raise ValueError(
                f"confirm_mass_change {text!r}: {name!r} is no guard that can be confirmed (names: "
                f"{', '.join(CONFIRMATION_NAMES)})"
            )
        if not _COUNT.fullmatch(count):
            raise ValueError(
                f"confirm_mass_change {text!r}: {name}={count!r}: the count must be a whole number, the exact count "
                "the stopped export's message names (no separators)"
            )
        if key in confirmed:
            raise ValueError(f"confirm_mass_change {text!r}: {key} is named twice")
        confirmed[key] = int(count)
    return confirmed


def format_confirmation(counts: Mapping[str, int]) -> str:
    """``counts`` as a confirmation's text, the names in their fixed order (the form the messages print)."""
    return ",".join(f"{name}={counts[name]}" for name in CONFIRMATION_NAMES if name in counts)


def normalized_confirmation(text: str | None) -> str | None:
    """``text`` checked and written in the fixed form (None when it confirms nothing)."""
    return format_confirmation(parse_confirmation(text)) or None
