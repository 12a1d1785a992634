"""The forest's deletion window, read from the DC: how long a saved DirSync cookie still sees every deletion.

What the window is made of, and why, is the engine's (engine.connectors.ad.lifetime); this module reads its inputs
from the configuration naming context, once per import: ``tombstoneLifetime`` and ``msDS-DeletedObjectLifetime`` of
the Directory Service object ([MS-ADTS] 6.1.1.2.4.1.1) and whether the Recycle Bin optional feature is enabled, that
is whether the Partitions container's ``msDS-EnabledFeature`` names the Recycle Bin Feature object ([MS-ADTS]
6.1.1.2.1, 6.1.1.2.4.1.3.1; the feature is forest-wide, 3.1.1.9.1). An attribute or object the account cannot read
counts as absent: the spec's defaults apply (60 days, no Recycle Bin), never a longer window.
"""

from __future__ import annotations

import datetime as dt
import logging

import ldap3
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.engine.connectors.ad.lifetime import deletion_window

log = logging.getLogger(__name__)

TOMBSTONE_LIFETIME = "tombstoneLifetime"
DELETED_OBJECT_LIFETIME = "msDS-DeletedObjectLifetime"
ENABLED_FEATURE = "msDS-EnabledFeature"
#: The Recycle Bin Feature object's RDN under CN=Optional Features ([MS-ADTS] 6.1.1.2.4.1.3.1: name).
RECYCLE_BIN_RDN = "cn=recycle bin feature,"


def directory_service_dn(configuration: str) -> str:
    return f"CN=Directory Service,CN=Windows NT,CN=Services,{configuration}"


def read_deletion_window(conn: ldap3.Connection, configuration: str, url: str) -> dt.timedelta:
    """The deletion window of the forest whose configuration naming context is ``configuration``."""
    service = _read(conn, directory_service_dn(configuration), [TOMBSTONE_LIFETIME, DELETED_OBJECT_LIFETIME])
    partitions = _read(conn, f"CN=Partitions,{configuration}", [ENABLED_FEATURE])
    tombstone, deleted = _days(service, TOMBSTONE_LIFETIME), _days(service, DELETED_OBJECT_LIFETIME)
    features = [value.decode("utf-8", "replace").lower() for value in _values(partitions, ENABLED_FEATURE)]
    recycle_bin = any(feature.startswith(RECYCLE_BIN_RDN) for feature in features)
    window = deletion_window(tombstone, deleted, recycle_bin)
    log.info(
        "%s: tombstoneLifetime %s, msDS-DeletedObjectLifetime %s, Recycle Bin %s: a DirSync cookie older than %d "
        "days is not used (the import becomes a full one)",
        url,
        "unset (60 days)" if tombstone is None else f"{tombstone} days",
        "unset" if deleted is None else f"{deleted} days",
        "enabled" if recycle_bin else "not enabled",
        window.days,
    )
    return window


def _read(conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, list[bytes]]:
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
    except ldap_errors.LDAPOperationResult as error:  # missing or unreadable: the spec's defaults
        log.warning("cannot read %s (%s): its lifetimes count as unset", dn, error.description or error.result)
        return {}
    entries = [entry for entry in conn.response if entry["type"] == "searchResEntry"]
    return dict(entries[0]["raw_attributes"]) if entries else {}


def _values(raw: dict[str, list[bytes]], name: str) -> list[bytes]:
    return next((values for key, values in raw.items() if key.lower() == name.lower()), [])


def _days(raw: dict[str, list[bytes]], name: str) -> int | None:
    values = _values(raw, name)
    try:
        return int(values[0]) if values else None
    except ValueError:
        log.warning("%s holds %r, not a number of days: counted as unset", name, values[0])
        return None
