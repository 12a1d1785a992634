"""What the AD connection's *Test* button checks, in the order an import needs it: the bind (TLS, credentials), the
base DN (it exists and lies in the naming context: :meth:`ActiveDirectoryHook.get_conn` checks both), and that the
bind account may read changes with DirSync; then, when full imports read through python-ldap, a bind through it.

DirSync (the import's delta reads) needs the "Replicating Directory Changes" extended right
(DS-Replication-Get-Changes) on the domain's naming context, as Entra Connect's AD DS connector account does. A DC
answers a DirSync search from an account without it with insufficientAccessRights; the check makes the cheapest such
search (a filter that matches nothing, only the cookie comes back) to ask it.

ConsistencyGuid writeback (on by default) writes mS-DS-ConsistencyGuid on user objects. The check asks the DC which
attributes the bind account may write on one user under the base DN (the constructed attribute
allowedAttributesEffective) and adds a note when mS-DS-ConsistencyGuid is not among them: the writeback can be turned
off, so a missing right is a note on a passing test, not a failure.
"""

from __future__ import annotations

from typing import Any, Protocol

import ldap3
from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.engine.dn import DnError, dn_is_under
from airflow_provider_aadsync.engine.secrets import scrub
from airflow_provider_aadsync.hooks.active_directory_pages import check_full_read
from airflow_provider_aadsync.hooks.active_directory_settings import (
    ActiveDirectoryConfigurationError,
    ActiveDirectoryError,
    ADConnectionSettings,
)


class _Hook(Protocol):
    """What the check uses of :class:`~airflow_provider_aadsync.hooks.active_directory.ActiveDirectoryHook` (typed
    structurally, so the hook can import this module without an import cycle)."""

    @property
    def settings(self) -> ADConnectionSettings: ...
    @property
    def search_base(self) -> str: ...
    def get_conn(self) -> Any: ...
    def naming_context(self) -> str: ...
    def server_name(self) -> str: ...
    def dirsync_watermark(self, base: str | None = None) -> bytes: ...


def check_base_dn(conn: ldap3.Connection, settings: ADConnectionSettings, search_base: str) -> None:
    """The base DN must exist and lie inside the default naming context (DirSync reads that context and the
    engine keeps what lies under the base DN): otherwise a full import would see nothing. Checked once per
    connection, by ActiveDirectoryHook.get_conn, before any import or export work."""
    base = settings.base_dn
    conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["defaultNamingContext"])
    raw = conn.response[0]["raw_attributes"] if conn.response else {}
    contexts = raw.get("defaultNamingContext") or []
    if not contexts:
        raise ActiveDirectoryConfigurationError(
            f"{settings.url} does not announce a defaultNamingContext; is it an AD DC?"
        )
    naming_context = contexts[0].decode()
    where = f"base DN {base!r} (connection extra base_dn) on {settings.url}, naming context {naming_context!r}"
    try:
        inside = dn_is_under(base, naming_context)
    except DnError as error:
        raise ActiveDirectoryConfigurationError(f"{where}: {error}") from None
    if not inside:
        raise ActiveDirectoryConfigurationError(
            f"{where}: the base DN lies outside the naming context, so an import would see nothing of it; "
            f"set base_dn to the naming context or an OU under it"
        )
    try:
        conn.search(search_base, "(objectClass=*)", ldap3.BASE, attributes=["objectClass"])
    except ldap_errors.LDAPNoSuchObjectResult:
        raise ActiveDirectoryConfigurationError(
            f"{where}: the base DN does not exist; check its spelling (an OU renamed or moved?)"
        ) from None
    except ldap_errors.LDAPOperationResult as error:
        raise ActiveDirectoryConfigurationError(
            f"{where}: the base DN cannot be read by {settings.bind_dn}: {error.description or error.result}"
        ) from None
    if not any(entry["type"] == "searchResEntry" for entry in conn.response):
        raise ActiveDirectoryConfigurationError(
            f"{where}: the base DN cannot be read by {settings.bind_dn} (no entry returned: missing read permission?)"
        )


#: What the bind account needs for DirSync, worded for the person who grants it.
DIRSYNC_RIGHT = (
    'grant the bind account "Replicating Directory Changes" on the naming context (Active Directory Users and '
    'Computers: the domain\'s Properties > Security, or dsacls "<naming context>" /G "<account>:CA;Replicating '
    "Directory Changes\"), as for Entra Connect's AD DS connector account"
)


#: What ConsistencyGuid writeback needs, worded for the person who grants it.
CONSISTENCY_GUID_RIGHT = (
    'grant the bind account "Write mS-DS-ConsistencyGuid" on user objects under the base DN (dsacls "<OU>" /I:S /G '
    '"<account>:WP;mS-DS-ConsistencyGuid;user", as Set-ADSyncMsDsConsistencyGuidPermissions does), or turn '
    "ConsistencyGuid writeback off (Variable aadsync_consistency_guid_writeback = false)"
)


def consistency_guid_note(hook: _Hook) -> str:
    """Whether the bind account may write mS-DS-ConsistencyGuid on a user under the base DN, as a sentence."""
    conn = hook.get_conn()
    conn.search(
        hook.search_base,
        "(&(objectCategory=person)(objectClass=user)(!(isCriticalSystemObject=TRUE)))",
        ldap3.SUBTREE,
        attributes=["allowedAttributesEffective"],
        size_limit=1,
    )
    entries = [entry for entry in conn.response or [] if entry.get("type") == "searchResEntry"]
    if not entries:
        return "no user under the base DN to check the mS-DS-ConsistencyGuid write right on"
    writable = {bytes(v).decode(errors="replace").lower() for v in entries[0]["raw_attributes"].get(
        "allowedAttributesEffective", [])}  # fmt: skip
    if "ms-ds-consistencyguid" in writable:
        return "the bind account may write mS-DS-ConsistencyGuid on users (ConsistencyGuid writeback)"
    return (
        f"note: the bind account may not write mS-DS-ConsistencyGuid on {entries[0]['dn']}: ConsistencyGuid "
        f"writeback would fail per user; {CONSISTENCY_GUID_RIGHT}"
    )


def check_connection(hook: _Hook) -> tuple[bool, str]:
    """Bind, check the base DN, try a DirSync search on the naming context; never raises (Airflow shows the text)."""
    try:
        hook.get_conn()  # binds and checks the base DN (exists, inside the naming context)
        naming_context = hook.naming_context()
        where = f"{hook.settings.url} ({hook.server_name()})"
        try:
            hook.dirsync_watermark()
        except ldap_errors.LDAPInsufficientAccessRightsResult:
            return False, (
                f"Connected to {where} as {hook.settings.bind_dn} and base DN {hook.settings.base_dn} exists, but "
                f"DirSync on {naming_context} was refused (insufficient access rights): {DIRSYNC_RIGHT}"
            )
        except ldap_errors.LDAPOperationResult as error:
            return False, (
                f"Connected to {where}, but DirSync on {naming_context} failed: {error.description or error.result}"
                f" ({scrub(str(error))}); DirSync needs an AD DC and {DIRSYNC_RIGHT}"
            )
        try:
            client = check_full_read(hook.settings)
        except ActiveDirectoryError as error:
            return False, (
                f"Connected to {where} through ldap3, but the full import's read through python-ldap failed: "
                f"{scrub(str(error))}; set the connection extra full_read_client to ldap3 to read through ldap3"
            )
        return True, (
            f"Connected to {where}, naming context {naming_context}; base DN {hook.settings.base_dn} exists; "
            f"DirSync is allowed for the bind account; full imports read through {client}; "
            f"{consistency_guid_note(hook)}"
        )
    except Exception as error:
        return False, scrub(str(error))  # shown in the UI: no known secret in it
