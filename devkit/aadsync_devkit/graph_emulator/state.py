"""The emulator's state: every tenant, the settings and the request counters, behind one re-entrant lock.

Routes stay thin: they parse the request, call one method here (or on a :class:`~.tenant.Tenant`) and render the
result. All reads and writes take the one lock, so the state is safe to use from uvicorn's thread and from tests at
once. Objects are plain property dicts (Graph's JSON names); relationships (group members, owners) live beside them.
With a state file, the state is persisted to SQLite (see :mod:`.persistence`).
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.apps import App
from aadsync_devkit.graph_emulator.delta import DeltaTokens
from aadsync_devkit.graph_emulator.persistence import StatePersistence
from aadsync_devkit.graph_emulator.settings import DEFAULT_TOKEN_LIFETIME, MALFORMED_KINDS, SETTINGS
from aadsync_devkit.graph_emulator.tenant import Tenant
from aadsync_devkit.graph_emulator.throttling import SlidingWindow, Throttling


class EmulatorState(DeltaTokens, Throttling, StatePersistence):
    """Every tenant, the settings and the request counters, behind one re-entrant lock; in memory, or persisted to a
    SQLite file (``state_file``; see :meth:`save`).

    Also the service-wide behaviours: delta state tokens (signed, so clients cannot forge them), throttling and
    fault injection (both off by default). ``clock`` is the time source of all three; tests may replace it.
    """

    tenant_type = Tenant

    def __init__(self, *, state_file: Path | None = None, token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.clock: Callable[[], float] = time.time
        self.settings: dict[str, Any] = {name: spec[0] for name, spec in SETTINGS.items()}
        self.token_lifetime = token_lifetime
        self.delta_key = secrets.token_bytes(32)
        self.random = random.Random()
        self._windows: dict[tuple[str, ...], SlidingWindow] = {}
        self.tenants: dict[str, Tenant] = {}
        self.counters: dict[str, Any] = {}
        self.reset_counters()
        self._last_save = 0.0
        self._save_cost = 0.0
        self._save_timer: threading.Timer | None = None
        self._file_generation: str | None = None  # the state file's generation that the tenants' dirty sets track
        self._dropped_tenants: set[str] = set()  # deleted since the last save: their rows leave the file
        if self.state_file and self.state_file.exists():
            self.load()

    @property
    def token_lifetime(self) -> int:
        return int(self.settings["tokenLifetimeSeconds"])

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self.settings["tokenLifetimeSeconds"] = int(value)

    # ------------------------------------------------------------------------------------------- settings

    def settings_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.settings)

    def update_settings(self, body: Any) -> dict[str, Any]:
        """Validate and apply a partial settings object (all or nothing; ``null`` restores a default); answer the
        new values of the settings it named."""
        if not isinstance(body, dict):
            raise err.BadRequest("A JSON object is expected.")
        updates: dict[str, Any] = {}
        for name, value in body.items():
            if name not in SETTINGS:
                raise err.BadRequest(f"Unknown setting '{name}'; known: {', '.join(SETTINGS)}.")
            default, low, high, kind = SETTINGS[name]
            if value is None:
                updates[name] = default
                continue
            if kind is str:
                if not isinstance(value, str) or not value:
                    raise err.BadRequest(f"{name} must be a non-empty string.")
                if name == "faultMalformed" and value not in MALFORMED_KINDS:
                    raise err.BadRequest(f"faultMalformed must be one of {', '.join(MALFORMED_KINDS)}.")
            elif kind is bool:
                if not isinstance(value, bool):
                    raise err.BadRequest(f"{name} must be true or false.")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and not isinstance(value, int))
                or value < low
                or (high is not None and value > high)
            ):
                bounds = f"at least {low}" + (f" and at most {high}" if high is not None else "")
                raise err.BadRequest(f"{name} must be {'an integer' if kind is int else 'a number'} {bounds}.")
            updates[name] = value
        with self.lock:
            self.settings.update(updates)
            if "randomSeed" in updates:
                self.random = random.Random(updates["randomSeed"])
            return {name: self.settings[name] for name in updates}

    # ------------------------------------------------------------------------------------------- tenants

    def create_tenant(self, spec: dict[str, Any]) -> Tenant:
        if not isinstance(spec, dict):
            raise err.BadRequest("A JSON object is expected.")
        tenant_id = str(uuid.UUID(str(spec["id"]))) if spec.get("id") else str(uuid.uuid4())
        name = str(spec.get("name") or f"tenant{tenant_id[:8]}").lower()
        if not re.fullmatch(r"[a-z0-9]{1,27}", name):
            raise err.BadRequest("name must be 1-27 letters or digits (it becomes <name>.onmicrosoft.com).")
        apps = [App.from_dict(a) for a in spec.get("apps") or [{}]]
        with self.lock:
            if tenant_id in self.tenants or any(t.name == name for t in self.tenants.values()):
                raise err.GraphError(409, "Conflict", f"Tenant '{tenant_id}' or name '{name}' already exists.")
            tenant = Tenant(
                self.lock,
                tenant_id=tenant_id,
                name=name,
                display_name=spec.get("displayName"),
                verified_domains=spec.get("verifiedDomains") or [],
                apps=apps,
            )
            tenant.pim_licensed = spec.get("pimLicensed") is not False
            self.tenants[tenant_id] = tenant
            return tenant

    def find_tenant(self, key: str) -> Tenant | None:
        """A tenant by id or by one of its verified domain names (as the identity platform accepts both)."""
        with self.lock:
            wanted = key.lower()
            if wanted in self.tenants:
                return self.tenants[wanted]
            return next((t for t in self.tenants.values() if wanted in t.verified_domains), None)

    def delete_tenant(self, tenant_id: str) -> None:
        with self.lock:
            if self.tenants.pop(tenant_id.lower(), None) is None:
                raise err.ResourceNotFound(tenant_id)
            self._dropped_tenants.add(tenant_id.lower())

    def reset(self) -> None:
        with self.lock:
            self.tenants.clear()
            self._file_generation = None  # the next save writes a new file
            self.settings = {name: spec[0] for name, spec in SETTINGS.items()}
            self.random = random.Random()
            self._windows.clear()
            self.reset_counters()
