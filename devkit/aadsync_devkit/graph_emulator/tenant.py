"""One Entra tenant: organization facts, app registrations, directory objects and their links.

``Tenant`` holds the fields; its parts live beside it, one concern each (a moto-style data holder, so tests may
look at its private fields): :mod:`.apps`, :mod:`.objects` (with :mod:`.validation`), :mod:`.delta` and
:mod:`.persistence`. All its methods take the emulator state's one re-entrant lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from aadsync_devkit.graph_emulator.apps import App, TenantApps
from aadsync_devkit.graph_emulator.catalog import CONTACT, GROUP, USER, now_iso
from aadsync_devkit.graph_emulator.delta import TenantDelta
from aadsync_devkit.graph_emulator.domains import TenantDomains
from aadsync_devkit.graph_emulator.managers import TenantManagers
from aadsync_devkit.graph_emulator.objects import TenantObjects
from aadsync_devkit.graph_emulator.persistence import TenantPersistence
from aadsync_devkit.graph_emulator.records import Change, Deleted, DirectoryObject
from aadsync_devkit.graph_emulator.roles import TenantRoles


class Tenant(TenantApps, TenantDomains, TenantRoles, TenantObjects, TenantManagers, TenantDelta, TenantPersistence):
    """One Entra tenant: organization facts, app registrations, directory objects and their links."""

    def __init__(
        self,
        lock: threading.RLock,
        *,
        tenant_id: str,
        name: str,
        display_name: str | None = None,
        verified_domains: Iterable[str] = (),
        apps: Iterable[App] = (),
        created: str | None = None,
    ) -> None:
        self._lock = lock
        self.id = tenant_id
        self.name = name
        self.initial_domain = f"{name}.onmicrosoft.com".lower()
        self.display_name = display_name or name
        domains = [self.initial_domain] + [d.lower() for d in verified_domains]
        self.verified_domains = list(dict.fromkeys(domains))
        self.unverified_domains: list[str] = []
        self.default_domain = self.initial_domain
        self.federated_domains: set[str] = set()
        self.apps = {app.client_id: app for app in apps}
        self.extensions: dict[str, dict[str, Any]] = {}  # directory extension definitions by lower-cased name
        self.role_members: dict[str, list[str]] = {}  # activated directory role (template id) -> member ids
        self.role_eligible: dict[str, list[str]] = {}  # role (template id) -> PIM-eligible principal ids
        self.role_scoped: dict[str, dict[str, list[str]]] = {}  # scope -> role -> ids assigned it at that scope
        self.eligible_scoped: dict[str, dict[str, list[str]]] = {}  # scope -> role -> ids eligible for it there
        self.custom_roles: dict[str, str] = {}  # custom role definition id -> display name
        self.pim_licensed = True  # Microsoft Entra ID P2: PIM's eligibilities can be listed
        self.created = created or now_iso()
        self._seq = 0
        #: Tokens issued before the last ``tokens/revoke`` carry a lower epoch and are refused (not persisted).
        self.token_epoch = 0
        self._objects: dict[str, DirectoryObject] = {}
        # Indexes of the live objects, lower-cased, kept by _index/_unindex wherever _objects changes: uniqueness
        # checks and UPN lookups are O(1) instead of a scan of every object.
        self._by_upn: dict[str, str] = {}  # userPrincipalName -> user id
        self._by_immutable_id: dict[str, str] = {}  # onPremisesImmutableId (as written) -> user id
        self._by_proxy: dict[str, str] = {}  # proxyAddresses entry -> object id
        self._by_nickname: dict[str, set[str]] = {}  # mailNickname -> object ids (not unique in Entra)
        self._kind_counts: dict[str, int] = {}
        self._deleted: dict[str, Deleted] = {}
        self._members: dict[str, dict[str, int]] = {}  # group id -> {member id: link sequence number}
        self._owners: dict[str, dict[str, int]] = {}
        self._managers: dict[str, dict[str, int]] = {}  # user id -> {manager id: link sequence number}
        self._changes: list[Change] = []  # append-only, in sequence order: what delta queries report
        self.delta_epoch = 0  # bumped to invalidate every delta token issued so far
        self.delta_gone_epochs: set[int] = set()  # epochs whose tokens answer 410 Gone (restart) rather than 400
        self._order_cache: dict[str, tuple[int, list[tuple[int, str]]]] = {}
        self._delta_cache: dict[str, tuple[tuple[Any, ...], list[Any]]] = {}  # (seq it was counted at, live users)
        # What the state file lacks (EmulatorState.save writes only that): the ids of objects created, changed,
        # deleted or purged, the links added or removed as (members|owners, group id, member or owner id), and how
        # many change-log entries it holds. _stored: whether it holds this tenant's rows at all (False: write all).
        self._dirty_objects: set[str] = set()
        self._dirty_links: set[tuple[str, str, str]] = set()
        self._saved_changes = 0
        self._stored = False

    # ------------------------------------------------------------------------------------------- organization

    def organization(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "createdDateTime": self.created,
            "onPremisesSyncEnabled": None,
            "onPremisesLastSyncDateTime": None,
            "tenantType": "AAD",
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": name == self.default_domain,
                    "isInitial": name == self.initial_domain,
                    "name": name,
                    "type": "Managed",
                }
                for name in self.verified_domains
            ],
        }

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "name": self.name,
                "displayName": self.display_name,
                "initialDomain": self.initial_domain,
                "verifiedDomains": list(self.verified_domains),
                "unverifiedDomains": list(self.unverified_domains),
                "defaultDomain": self.default_domain,
                "apps": [app.to_dict() for app in self.apps.values()],
                "counts": {
                    "users": self._kind_counts.get(USER, 0),
                    "groups": self._kind_counts.get(GROUP, 0),
                    "contacts": self._kind_counts.get(CONTACT, 0),
                    "deletedItems": len(self._deleted),
                },
            }
