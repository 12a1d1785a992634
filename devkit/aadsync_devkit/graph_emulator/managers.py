"""A user's manager, the single-valued navigation property Graph documents ("Assign manager", "List manager"):
``PUT /users/{id}/manager/$ref`` with ``{"@odata.id": <user or contact URL>}`` sets or replaces it (204),
``DELETE /users/{id}/manager/$ref`` removes it (204; 404 when there is none), ``GET /users/{id}/manager`` answers the
manager (404 when there is none) and ``$expand=manager`` adds it to a user.

The link is kept like a group's member links (a table of ``user id -> {manager id: link sequence number}``, persisted
as ``links`` rows with ``rel = 'manager'``) and logged as member changes of the user, so delta queries that track the
manager (``$select=manager``; Graph ignores ``$expand`` there) answer ``manager@delta``. Deleting a user drops its
manager link and the links of the users it managed (each logged); a restore does not bring them back.
"""

from __future__ import annotations

import threading
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import CONTACT, USER, object_id_from_url
from aadsync_devkit.graph_emulator.records import MEMBER_ADDED, MEMBER_REMOVED, DirectoryObject

MANAGER = "manager"


class TenantManagers:
    """The manager side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant` (fields made by its ``__init__``)."""

    _lock: threading.RLock
    _objects: dict[str, DirectoryObject]
    _managers: dict[str, dict[str, int]]
    _dirty_links: set[tuple[str, str, str]]

    def set_manager(self, user_key: str, manager_url: Any) -> None:
        """Make the user or contact *manager_url* names the manager of *user_key* (replacing any other)."""
        with self._lock:
            user = self._find(USER, user_key)
            manager_id = object_id_from_url(manager_url).lower()
            manager = self._objects.get(manager_id)
            if manager is None or manager.kind not in (USER, CONTACT):
                raise err.ResourceNotFound(manager_id)
            if manager_id == user.id:
                raise err.BadRequest("A user cannot be their own manager.")
            self._check_synced(user, [MANAGER])
            current = self._managers.get(user.id, {})
            if manager_id in current:
                return  # already the manager: nothing changes, as Graph answers 204
            for old in list(current):
                self._unlink_manager(user.id, old)
            self._managers[user.id] = {manager_id: self._log(USER, user.id, MEMBER_ADDED, member=manager_id)}
            self._dirty_links.add((MANAGER, user.id, manager_id))

    def remove_manager(self, user_key: str) -> None:
        with self._lock:
            user = self._find(USER, user_key)
            current = self._managers.get(user.id)
            if not current:
                raise err.ResourceNotFound(MANAGER)
            self._check_synced(user, [MANAGER])
            for old in list(current):
                self._unlink_manager(user.id, old)

    def manager_of(self, user_key: str) -> tuple[str, dict[str, Any]]:
        """``(kind, properties copy)`` of the user's manager; 404 when the user has none."""
        with self._lock:
            user = self._find(USER, user_key)
            for manager_id in self._managers.get(user.id, {}):
                manager = self._objects[manager_id]
                return manager.kind, dict(manager.props)
            raise err.ResourceNotFound(MANAGER)

    def _unlink_manager(self, user_id: str, manager_id: str) -> None:
        links = self._managers.get(user_id, {})
        if links.pop(manager_id, None) is None:
            return
        if not links:
            self._managers.pop(user_id, None)
        self._dirty_links.add((MANAGER, user_id, manager_id))
        self._log(USER, user_id, MEMBER_REMOVED, member=manager_id)

    def _drop_manager_links(self, object_id: str) -> None:
        """Before *object_id* leaves the live objects: its own manager link and those of the users it managed."""
        for manager_id in list(self._managers.get(object_id, {})):
            self._unlink_manager(object_id, manager_id)
        for user_id in [u for u, links in self._managers.items() if object_id in links]:
            self._unlink_manager(user_id, object_id)
