"""The fenced writer: a connector's writer whose every directory write first makes sure the step still holds the
instance lock (lock.py ``ensure``, through the store handle's ``check_lease``). The store's own fence cannot stop a
write that never touches the store (Graph, LDAP), so the exporters wrap their writers in this."""

from __future__ import annotations

from typing import Any

from airflow_provider_aadsync.engine.store.lock import StoreHandle


class FencedWriter:
    """A connector's writer (EntraHook, ActiveDirectoryHook) whose write methods first ``lock.ensure`` the lock."""

    def __init__(self, writer: Any, store: StoreHandle, methods: tuple[str, ...]):
        self._writer = writer
        self._store = store
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._writer, name)
        if name not in self._methods or not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._store.check_lease()
            return attribute(*args, **kwargs)

        return guarded


def fenced_writer(writer: Any, store: StoreHandle) -> Any:
    """Wrap an exporter's writer so that no write leaves while the step's lock may be lost (see ``lock.ensure``)."""
    return FencedWriter(writer, store, WRITE_METHODS)


#: The methods of the connector writers that change a directory.
WRITE_METHODS = ("batch", "request", "add_object", "modify_object", "modify_references", "move_object", "delete_object")
