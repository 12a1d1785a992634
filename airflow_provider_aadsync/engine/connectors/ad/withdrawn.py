"""An add the AD export had sent, withdrawn by sync before the export recorded it: what its delete row removes.

A written-back group whose cloud group is deleted (or leaves scope) while its add is ``sent`` (an export killed, or
its connection lost, after the add left) is not forgotten: the DC may hold the group, and nothing else would ever
delete it. Sync turns the add into a delete of its provisional anchor (sync/staging.py withdraw_create), keeping the
DN and the changes the add wrote; the deletion guard counts it before the first write, like any delete. The export
looks the add up as it resumes a sent add (writer.py ``_add``): the object at the add's DN, ours only when it carries
the mark the add wrote and nothing else is linked to it. Ours, it is deleted (or moved to the holding OU, as any
deprovisioned object); not there, or not ours (an object someone else made at that DN, or one a sync joined since),
the provisional rows are forgotten.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["withdrawn_add_object"]

#: What an add's mark lookup finds at a DN: the objectGUID and the mark attribute's value (None: no value).
Found = tuple[str, str | None]


class MarkReader(Protocol):
    """The part of the export's LDAP writer the lookup reads (writer.py ADWriter)."""

    def object_mark(self, dn: str, attribute: str) -> Found | None: ...


def withdrawn_add_object(
    writer: MarkReader,
    row: Any,
    mark_attribute: str,
    ours: Callable[[Found, Mapping[str, list[Any]]], bool],
) -> str | None:
    """The objectGUID of the object a withdrawn add (``row``: its delete under the provisional anchor) made, when it
    is at the add's DN and ``ours`` (the writer's own test of a resumed add: our mark, linked to nothing else), else
    None: never made, or someone else's, and nothing is written."""
    found = writer.object_mark(row.dn, mark_attribute)
    if found is None or not ours(found, json.loads(row.changes)):
        return None
    return found[0]
