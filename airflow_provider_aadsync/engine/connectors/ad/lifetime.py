"""How long a saved DirSync cookie can be trusted to report every deletion since it was taken.

A delta reads deletions as the deleted objects DirSync returns (``isDeleted``). A deleted object does not live for
ever: once it is gone from the directory, a cookie taken before the deletion reads nothing of it, and the object
would stay in the connector space (and its cloud account in Entra ID) for good. So a cookie older than the shortest
time a deleted object stays visible is not used: the import becomes a full one. That time is the forest's, read from
the DC by the source ([MS-ADTS] 3.1.1.1.15 "Tombstone Lifetime and Deleted-Object Lifetime", the attributes of the
Directory Service object, 6.1.1.2.4.1.1); this module turns what the DC holds into the window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

#: [MS-ADTS] 3.1.1.1.15: "If no value is specified for the tombstoneLifetime attribute of the Directory Services
#: object, the tombstone lifetime defaults to 60 days." Also the window of a source that cannot read the forest's.
DEFAULT_TOMBSTONE_LIFETIME = dt.timedelta(days=60)
#: [MS-ADTS] 3.1.1.1.15: the least value either lifetime may have; a smaller one set counts as 2 days (Windows
#: Server 2008 R2 and later; earlier versions took 60 days for the tombstone lifetime, the longer of the two).
MINIMUM_LIFETIME = dt.timedelta(days=2)


def deletion_window(
    tombstone_lifetime_days: int | None, deleted_object_lifetime_days: int | None, recycle_bin: bool
) -> dt.timedelta:
    """The time a deletion stays visible to the import's DirSync read, from the Directory Service object's
    ``tombstoneLifetime`` and ``msDS-DeletedObjectLifetime`` (None when the attribute has no value) and whether the
    Recycle Bin optional feature is enabled in the forest.

    Without the Recycle Bin, a deleted object becomes a tombstone, garbage-collected once older than the tombstone
    lifetime ([MS-ADTS] 3.1.1.1.15; default 60 days). With it ([MS-ADTS] 3.1.1.9.1, 3.1.1.5.5), a deleted object is
    first a deleted-object for the deleted-object lifetime (default: the tombstone lifetime), then a recycled-object
    for the tombstone lifetime, then collected. The read asks for deleted objects with LDAP_SERVER_SHOW_DELETED_OID,
    which shows tombstones and deleted-objects, not recycled-objects (those need LDAP_SERVER_SHOW_RECYCLED_OID,
    [MS-ADTS] 3.1.1.3.4.1.14 and 3.1.1.3.4.1.29), so with the Recycle Bin a deletion is surely visible for the
    deleted-object lifetime only. The smaller of the two lifetimes is taken then: a window in which every deletion is
    still visible whichever is longer (a deleted-object lifetime longer than the tombstone lifetime would allow
    more; taking less costs a full import earlier, never a missed deletion)."""
    tombstone = _days(tombstone_lifetime_days) or DEFAULT_TOMBSTONE_LIFETIME
    if not recycle_bin:
        return tombstone
    return min(tombstone, _days(deleted_object_lifetime_days) or tombstone)


def _days(value: int | None) -> dt.timedelta | None:
    return None if value is None else max(dt.timedelta(days=value), MINIMUM_LIFETIME)


def source_deletion_window(source: Any) -> dt.timedelta:
    """The deletion window of a directory source: its ``deletion_window()`` (the hook reads the forest's), else the
    spec's default tombstone lifetime."""
    read = getattr(source, "deletion_window", None)
    return read() if read is not None else DEFAULT_TOMBSTONE_LIFETIME
