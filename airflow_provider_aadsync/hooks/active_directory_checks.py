"""What the AD connection's *Test* button checks, in the order an import needs it: the bind (TLS, credentials), the
base DN (it exists and lies in the naming context: :meth:`ActiveDirectoryHook.get_conn` checks both), and that the
bind account may read changes with DirSync.

DirSync (the import's delta reads) needs the "Replicating Directory Changes" extended right
(DS-Replication-Get-Changes) on the domain's naming context, as Entra Connect's AD DS connector account does. A DC
answers a DirSync search from an account without it with insufficientAccessRights; the check makes the cheapest such
search (a filter that matches nothing, only the cookie comes back) to ask it.
"""

from __future__ import annotations

from typing import Any, Protocol

from ldap3.core import exceptions as ldap_errors

from airflow_provider_aadsync.engine.secrets import scrub
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings


class _Hook(Protocol):
    """What the check uses of :class:`~airflow_provider_aadsync.hooks.active_directory.ActiveDirectoryHook` (typed
    structurally, so the hook can import this module without an import cycle)."""

    @property
    def settings(self) -> ADConnectionSettings: ...
    def get_conn(self) -> Any: ...
    def naming_context(self) -> str: ...
    def server_name(self) -> str: ...
    def dirsync_watermark(self, base: str | None = None) -> bytes: ...


#: What the bind account needs for DirSync, worded for the person who grants it.
DIRSYNC_RIGHT = (
    'grant the bind account "Replicating Directory Changes" on the naming context (Active Directory Users and '
    'Computers: the domain\'s Properties > Security, or dsacls "<naming context>" /G "<account>:CA;Replicating '
    "Directory Changes\"), as for Entra Connect's AD DS connector account"
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
        return True, (
            f"Connected to {where}, naming context {naming_context}; base DN {hook.settings.base_dn} exists; "
            "DirSync is allowed for the bind account"
        )
    except Exception as error:
        return False, scrub(str(error))  # shown in the UI: no known secret in it
