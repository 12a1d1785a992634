"""Directory extensions as Graph documents them: definitions registered on an application
(``POST /applications/{id}/extensionProperties``, the ``extensionProperty`` resource) and the values they add to
users and groups as ``extension_{appId without dashes}_{name}`` properties.

What Graph documents and the emulator does: the definition's ``name`` becomes ``extension_<appId>_<name>``;
``dataType`` is one of Binary (256 bytes), Boolean, DateTime (ISO 8601, stored in UTC), Integer (32-bit),
LargeInteger (64-bit), String (256 characters), the limits applying to each value of a multi-valued one;
``targetObjects`` names the resources that may carry it; a definition cannot be updated; a value is written with the
resource's own create or update and removed by writing ``null``; it is read back only when ``$select`` names it and
filtered with ``eq`` (and ``ne`` as an advanced query); a deleted definition makes its values undiscoverable, and
registering the same name again brings them back. Undocumented, and so chosen here: a second definition of the same
name answers ``400`` ``ObjectConflict`` on ``name``, and the emulator keeps no 100-values-per-object count.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
import uuid
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.apps import App
from aadsync_devkit.graph_emulator.catalog import GROUP, RESOURCE_NAMES, USER

DATA_TYPES = ("Binary", "Boolean", "DateTime", "Integer", "LargeInteger", "String")
TARGET_OBJECTS = ("User", "Group", "AdministrativeUnit", "Application", "Device", "Organization")
#: The emulator's object kinds that can carry directory extensions, by their ``targetObjects`` name.
TARGET_KINDS = {USER: "User", GROUP: "Group"}
PREFIX = "extension_"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,119}$")
_MAX_STRING = 256
_MAX_BINARY = 256
_INT_RANGES = {"Integer": (-(2**31), 2**31 - 1), "LargeInteger": (-(2**63), 2**63 - 1)}


class NotAvailable(err.BadRequest):
    """A write named an ``extension_`` property that is not registered for the object's type."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"The following extension properties are not available: {','.join(names)}.")


def is_extension(name: str) -> bool:
    return name.lower().startswith(PREFIX)


def utc_timestamp(value: str) -> str:
    """An ISO 8601 date-time as Graph stores it (UTC, seconds); ValueError when it is none."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_value(data_type: str, value: Any) -> Any:
    """One value checked against its definition's type (normalised: DateTime in UTC); ValueError otherwise."""
    if data_type == "String":
        if not isinstance(value, str) or len(value) > _MAX_STRING:
            raise ValueError(value)
        return value
    if data_type == "Boolean":
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if data_type in _INT_RANGES:
        low, high = _INT_RANGES[data_type]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(value)
        return value
    if data_type == "DateTime":
        if not isinstance(value, str):
            raise ValueError(value)
        return utc_timestamp(value)
    if not isinstance(value, str):  # Binary: base64 text
        raise ValueError(value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(value) from None
    if len(raw) > _MAX_BINARY:
        raise ValueError(value)
    return value


class TenantExtensions:
    """The directory-extension side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`: the definitions (by
    lower-cased full name; persisted in the tenant's header) and the checks of the values written with them."""

    _lock: threading.RLock
    apps: dict[str, App]
    extensions: dict[str, dict[str, Any]]

    # ------------------------------------------------------------------------------------------- applications

    def application(self, key: str) -> App:
        """An app registration by its object id, or by ``appId='<client id>'`` (Graph's alternate key)."""
        with self._lock:
            match = re.fullmatch(r"\(?appId='([^']*)'\)?", key.strip(), re.I)
            wanted = (match.group(1) if match else key).lower()
            for app in self.apps.values():
                if (match and app.client_id.lower() == wanted) or (not match and app.object_id.lower() == wanted):
                    return app
            raise err.ResourceNotFound(key)

    @staticmethod
    def application_json(app: App) -> dict[str, Any]:
        return {"id": app.object_id, "appId": app.client_id, "displayName": app.display_name}

    # ------------------------------------------------------------------------------------------- definitions

    def add_extension(self, app_key: str, body: Any) -> dict[str, Any]:
        """Register a definition on the app: ``{"name", "dataType", "targetObjects", "isMultiValued"?}``."""
        if not isinstance(body, dict):
            raise err.BadRequest("Empty Payload, JSON content expected.")
        for name in body:
            if name not in ("name", "dataType", "targetObjects", "isMultiValued", "@odata.type"):
                raise err.UnknownProperty(name)
        name, data_type, targets = body.get("name"), body.get("dataType"), body.get("targetObjects")
        multi = body.get("isMultiValued", False)
        for prop, value in (("name", name), ("dataType", data_type), ("targetObjects", targets)):
            if value in (None, "", []):
                raise err.PropertyRequired(prop)
        if not isinstance(name, str) or not _NAME.match(name):
            raise err.InvalidPropertyValue("name", "ExtensionProperty")
        if data_type not in DATA_TYPES:
            raise err.InvalidPropertyValue("dataType", "ExtensionProperty")
        if not isinstance(targets, list) or not targets or any(t not in TARGET_OBJECTS for t in targets):
            raise err.InvalidPropertyValue("targetObjects", "ExtensionProperty")
        if not isinstance(multi, bool):
            raise err.InvalidPropertyValue("isMultiValued", "ExtensionProperty")
        with self._lock:
            app = self.application(app_key)
            full = f"{PREFIX}{app.client_id.replace('-', '').lower()}_{name}"
            if full.lower() in self.extensions:
                raise err.ObjectConflict("name")
            definition = {
                "id": str(uuid.uuid4()),
                "deletedDateTime": None,
                "appDisplayName": app.display_name,
                "dataType": data_type,
                "isMultiValued": multi,
                "isSyncedFromOnPremises": False,
                "name": full,
                "targetObjects": list(dict.fromkeys(targets)),
                "_app": app.client_id,
            }
            self.extensions[full.lower()] = definition
            return _public(definition)

    def app_extensions(self, app_key: str) -> list[dict[str, Any]]:
        with self._lock:
            app = self.application(app_key)
            return [_public(d) for d in self.extensions.values() if d["_app"] == app.client_id]

    def app_extension(self, app_key: str, extension_id: str) -> dict[str, Any]:
        with self._lock:
            return _public(self._definition(app_key, extension_id))

    def delete_extension(self, app_key: str, extension_id: str) -> None:
        """Drop a definition; the values written with it stay on the objects, undiscoverable, as in Graph."""
        with self._lock:
            definition = self._definition(app_key, extension_id)
            del self.extensions[definition["name"].lower()]

    def available_extensions(self, synced: bool | None = None) -> list[dict[str, Any]]:
        """Every definition of the tenant (``getAvailableExtensionProperties``), optionally only synced or not."""
        with self._lock:
            return [
                _public(d) for d in self.extensions.values() if synced is None or d["isSyncedFromOnPremises"] == synced
            ]

    def _definition(self, app_key: str, extension_id: str) -> dict[str, Any]:
        app = self.application(app_key)
        for definition in self.extensions.values():
            if definition["_app"] == app.client_id and definition["id"] == extension_id.lower():
                return definition
        raise err.ResourceNotFound(extension_id)

    # ------------------------------------------------------------------------------------------- values

    def extension_names(self, kind: str) -> dict[str, str]:
        """The registered extension properties an object of *kind* may carry, as a property table (name -> "rw")."""
        target = TARGET_KINDS.get(kind)
        with self._lock:
            return {d["name"]: "rw" for d in self.extensions.values() if target in d["targetObjects"]}

    def _check_extension_values(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        """The ``extension_`` entries of a write, each checked against its definition (``null`` removes a value);
        400 naming the ones not registered for *kind*."""
        target = TARGET_KINDS.get(kind)
        missing: list[str] = []
        out: dict[str, Any] = {}
        for name, value in values.items():
            definition = self.extensions.get(name.lower())
            if definition is None or target not in definition["targetObjects"]:
                missing.append(name)
                continue
            full = definition["name"]
            if value is None:
                out[full] = None
                continue
            try:
                if definition["isMultiValued"]:
                    if not isinstance(value, list):
                        raise ValueError(value)
                    out[full] = [_one_value(definition["dataType"], v) for v in value]
                else:
                    out[full] = _one_value(definition["dataType"], value)
            except ValueError:
                raise err.InvalidPropertyValue(full, RESOURCE_NAMES[kind]) from None
        if missing:
            raise NotAvailable(missing)
        return out


def _public(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition as Graph renders it (``extensionProperty``), without the emulator's own keys."""
    return {"@odata.type": "#microsoft.graph.extensionProperty"} | {
        k: v for k, v in definition.items() if not k.startswith("_")
    }
