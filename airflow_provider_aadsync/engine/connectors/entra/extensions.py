"""Directory extensions of the sync application: their names, which ones a rule set needs, and registering them.

Graph's directory extensions (``extensionProperty``) are defined on an application registration with
``POST /applications/{application object id}/extensionProperties`` (least privileged application permission:
Application.ReadWrite.OwnedBy, the app owning its own registration; or Application.ReadWrite.All /
Directory.ReadWrite.All). A definition named ``name`` becomes the property ``extension_<appId without dashes>_<name>``
of the users and groups it targets; its values are written with the object's own create or update and read with
``$select``. At most 100 definitions per application; a String value holds at most 256 characters; a second
definition of one name is refused with 400, and a definition cannot be changed (delete it and register it again).

The connector space and the rules name such a property without the application id, ``extension_<name>``: the rules
stay the same whatever app registration a deployment uses, and this module turns one form into the other (the
reader maps Graph's names, the writer the connector space's). Properties of other applications are not read.
The sync app registers every extension its rules read from or write to the ``entra`` connector: String, single
valued, targeting User and/or Group as the rules' object types say. Registration is idempotent: what is registered
already is kept, only the missing definitions are posted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.rules import RuleSet

log = logging.getLogger(__name__)

PREFIX = "extension_"
#: The extension every user and group this engine creates or adopts carries its sourceAnchor in (groups have no
#: onPremisesImmutableId in Graph): a rebuilt store, or a second instance, finds its own groups again by it.
DEFAULT_ANCHOR_EXTENSION = "aadsyncSourceAnchor"
#: Graph's limits: definitions per application, characters of a String value, characters of a definition name.
MAX_PER_APPLICATION = 100
MAX_STRING_LENGTH = 256
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,119}")
#: Object types of the connector → Graph's ``targetObjects`` names.
TARGET_OBJECTS = {"user": "User", "group": "Group"}
#: The application permissions that allow registering (least privileged first), for messages and test_connection.
REGISTER_PERMISSIONS = ("Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All")


class ExtensionNameError(ValueError):
    """A directory extension name Graph would refuse (the message names it and says why)."""


class ExtensionRegistrationError(RuntimeError):
    """Registering the sync app's directory extensions failed; the message says what to fix."""


def extension_name(attribute: str) -> str:
    """The definition name for an AD attribute or a chosen name: ``-`` (``msDS-cloudExtensionAttribute1``) becomes
    ``_``, as Graph names allow letters, digits and underscores only, starting with a letter.

    :raise ExtensionNameError: the name cannot be made a Graph name.
    """
    name = str(attribute).strip().replace("-", "_")
    if not _NAME.fullmatch(name):
        raise ExtensionNameError(
            f"{attribute!r} cannot be a directory extension name: letters, digits, '-' and '_' only, starting with "
            "a letter, at most 120 characters"
        )
    return name


def cs_attribute(name: str) -> str:
    """The connector-space (and rule) name of a directory extension: ``extension_<name>``."""
    return f"{PREFIX}{extension_name(name)}"


def is_extension(attribute: str) -> bool:
    return attribute.lower().startswith(PREFIX) and len(attribute) > len(PREFIX)


def app_key(app_id: str) -> str:
    """The application id as Graph spells it in extension names: without dashes, lower case."""
    return app_id.replace("-", "").lower()


def graph_attribute(app_id: str, name: str) -> str:
    """``extension_<appId without dashes>_<name>`` for a definition name or a connector-space ``extension_<name>``."""
    short = name[len(PREFIX) :] if is_extension(name) else name
    return f"{PREFIX}{app_key(app_id)}_{short}"


class ExtensionNames:
    """Maps between Graph's ``extension_<appId>_<name>`` and the connector space's ``extension_<name>`` for one app
    (no app id: names pass unchanged, as with test doubles that know no application).

    ``anchor_extension`` is the definition name the anchor is kept in on this app (a connection setting, default
    ``aadsyncSourceAnchor``); the rules always call it ``extension_aadsyncSourceAnchor``.
    """

    def __init__(self, app_id: str | None, anchor_extension: str = DEFAULT_ANCHOR_EXTENSION) -> None:
        self.app_id = app_id
        self.anchor_extension = extension_name(anchor_extension)
        self._own = f"{PREFIX}{app_key(app_id)}_" if app_id else None
        #: Graph names (lower case) known to be registered; None: not checked (everything is sent).
        self.registered: set[str] | None = None
        #: Connector-space names registration was tried for, and why it failed (a missing permission).
        self._tried: set[str] = set()
        self.problem: str | None = None

    def is_registered(self, attribute: str) -> bool:
        """Whether a connector-space attribute may be written: not an extension, or a registered one."""
        if self.registered is None or not is_extension(attribute):
            return True
        return self.to_graph(attribute).lower() in self.registered

    def ensure(self, graph: GraphRequests, attributes: Iterable[str], *, register: bool = True) -> None:
        """Before a read or a write names directory extensions: learn what the app has registered (two reads, once)
        and register the ones of ``attributes`` it lacks (String, on users and groups), each tried once. What cannot
        be registered (no permission: the log names it) stays unregistered: neither selected nor written.

        ``register=False`` only learns (the imports: a staging or preview cycle imports too and must write nothing
        to the tenant, not even a definition on the app). An import leaves an unregistered extension out of its
        ``$select``, which misses nothing (no object can hold a value of it yet), and its delta link stays valid
        when the export registers it later: the import's attribute-list key names the configured extensions, not
        the registered ones (steps.run_entra_import)."""
        if self.app_id is None:
            return
        wanted = {
            self.graph_short(a): {"User", "Group"}
            for a in attributes
            if is_extension(a) and a.lower() not in self._tried and not self.is_registered_known(a)
        }
        if not wanted and self.registered is not None:
            return
        tried = {f"{PREFIX}{name}".lower() for name in wanted}
        try:
            outcome = register_extensions(graph, self.app_id, wanted, dry_run=not register)
        except ExtensionRegistrationError as error:
            self._tried.update(tried)
            log.warning("directory extensions are not used: %s (then run `aadsync register-extensions`)", error)
            self.problem = str(error)
            self.registered = self.registered if self.registered is not None else set()
            return
        if register:  # only learnt: the export still registers what is missing before it first writes one
            self._tried.update(tried)
        self.registered = outcome.registered
        for problem in outcome.problems:
            if register:
                log.warning("directory extensions: %s", problem)
            else:
                log.info("directory extensions: %s (yet: the first export registers it)", problem)

    def is_registered_known(self, attribute: str) -> bool:
        return self.registered is not None and self.to_graph(attribute).lower() in self.registered

    def graph_short(self, attribute: str) -> str:
        """The definition name of a connector-space ``extension_<name>`` (the anchor's as configured)."""
        short = attribute[len(PREFIX) :]
        return self.anchor_extension if short.lower() == DEFAULT_ANCHOR_EXTENSION.lower() else short

    def to_graph(self, attribute: str) -> str:
        """The Graph name of a connector-space attribute (``extension_<name>`` → ``extension_<appId>_<name>``)."""
        if self.app_id is None or not is_extension(attribute):
            return attribute
        return graph_attribute(self.app_id, self.graph_short(attribute))

    def from_graph(self, attribute: str) -> str | None:
        """The connector-space name of a Graph property; None for another application's extension."""
        if self._own is None or not attribute.lower().startswith(PREFIX):
            return attribute
        if not attribute.lower().startswith(self._own):
            return None
        short = attribute[len(self._own) :]
        return PREFIX + (DEFAULT_ANCHOR_EXTENSION if short.lower() == self.anchor_extension.lower() else short)

    def graph_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """A Graph object with its extension properties renamed (other applications' ones left out)."""
        if self._own is None or not any(key.lower().startswith(PREFIX) for key in item):
            return item
        renamed: dict[str, Any] = {}
        for key, value in item.items():
            name = self.from_graph(key)
            if name is not None:
                renamed[name] = value
        return renamed

    def needed(self, rules: RuleSet, connector: str = "entra") -> dict[str, set[str]]:
        """:func:`needed_extensions` with the anchor under its configured definition name."""
        needed = needed_extensions(rules, connector)
        return {self.graph_short(PREFIX + name): targets for name, targets in needed.items()}


def extension_names(source: object) -> ExtensionNames:
    """The extension naming of a Graph connection (the EntraHook's ``extension_names``), else names unchanged."""
    names = getattr(source, "extension_names", None)
    return names if isinstance(names, ExtensionNames) else ExtensionNames(None)


def needed_extensions(rules: RuleSet, connector: str = "entra") -> dict[str, set[str]]:
    """Definition name → Graph ``targetObjects`` of every ``extension_<name>`` the rules read from or write to
    ``connector``: inbound rules' source attributes, outbound rules' flow targets, by the rules' object types."""
    needed: dict[str, set[str]] = {}

    def add(attribute: str, object_type: str) -> None:
        target = TARGET_OBJECTS.get(object_type.casefold())
        if target is not None and is_extension(attribute):
            needed.setdefault(extension_name(attribute[len(PREFIX) :]), set()).add(target)

    for rule in rules.inbound(connector):
        for attribute in rule.attributes:
            add(attribute, rule.source_object_type)
    for rule in rules.outbound(connector):
        for target in rule.targets:
            add(target, rule.target_object_type)
    return needed


class GraphRequests(Protocol):
    """What registration needs from a Graph connection (the EntraHook)."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


@dataclass
class Registration:
    """The outcome of :func:`register_extensions`: Graph names created, already there, and problems left."""

    application_object_id: str = ""
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Every definition name (lower case) the application holds, whether the rules need it or not.
    on_application: set[str] = field(default_factory=set)

    @property
    def registered(self) -> set[str]:
        """Graph names (lower case) that are registered now."""
        return self.on_application | {name.lower() for name in (*self.created, *self.existing)}

    def summary(self) -> dict[str, Any]:
        return {"created": self.created, "existing": self.existing, "problems": self.problems}


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def permission_hint(action: str) -> str:
    return (
        f"{action} needs the Microsoft Graph application permission {REGISTER_PERMISSIONS[0]} (with the app's "
        f"service principal an owner of its own app registration) or {REGISTER_PERMISSIONS[1]} or "
        f"{REGISTER_PERMISSIONS[2]}, granted with admin consent"
    )


def application_object_id(graph: GraphRequests, app_id: str) -> str:
    """The object id of the app registration whose client id is ``app_id`` (``GET /applications(appId='...')``).

    :raise ExtensionRegistrationError: Graph refused (403: names the permission) or has no such application.
    """
    try:
        found = graph.request("GET", f"/applications(appId='{app_id}')", params={"$select": "id,appId"})
    except Exception as error:
        status = _status(error)
        if status in (401, 403):
            raise ExtensionRegistrationError(permission_hint("reading the sync app's registration")) from None
        if status == 404:
            raise ExtensionRegistrationError(
                f"no application registration with appId {app_id} in the tenant (the connection's client_id)"
            ) from None
        raise
    object_id = found.get("id") if isinstance(found, dict) else None
    if not isinstance(object_id, str) or not object_id:
        raise ExtensionRegistrationError(f"Graph answered no application id for appId {app_id}")
    return object_id


def registered_extensions(graph: GraphRequests, object_id: str) -> list[dict[str, Any]]:
    """The extension definitions of one application (every page)."""
    found: list[dict[str, Any]] = []
    url: str | None = f"/applications/{object_id}/extensionProperties"
    while url:
        page = graph.request("GET", url)
        found += [item for item in (page or {}).get("value", []) if isinstance(item, dict)]
        url = (page or {}).get("@odata.nextLink")
    return found


def register_extensions(
    graph: GraphRequests, app_id: str, needed: Mapping[str, Iterable[str]], *, dry_run: bool = False
) -> Registration:
    """Register every definition of ``needed`` (name → target objects) the app lacks, once: String, single valued.

    A definition already registered with the same name is kept (its targets are checked: a missing target is a
    problem, as Graph cannot change a definition); more than 100 definitions on the app is a problem before any
    write; a 400 answering a name another run registered meanwhile counts as existing.

    :raise ExtensionRegistrationError: Graph refused for lack of permission (the message names it).
    """
    result = Registration()
    object_id = application_object_id(graph, app_id)
    result.application_object_id = object_id
    try:
        existing = {str(d.get("name", "")).lower(): d for d in registered_extensions(graph, object_id)}
    except Exception as error:
        if _status(error) in (401, 403):
            raise ExtensionRegistrationError(permission_hint("listing the sync app's directory extensions")) from None
        raise
    result.on_application = set(existing)
    missing: dict[str, list[str]] = {}
    for name, targets in sorted(needed.items()):
        full = graph_attribute(app_id, name)
        wanted = sorted(set(targets))
        definition = existing.get(full.lower())
        if definition is None:
            missing[name] = wanted
            continue
        result.existing.append(full)
        lacking = sorted(set(wanted) - set(definition.get("targetObjects") or []))
        if lacking:
            result.problems.append(
                f"{full} is registered for {', '.join(definition.get('targetObjects') or []) or 'no object type'} "
                f"but the rules also need it on {', '.join(lacking)}: a definition cannot be changed; delete it "
                f"(DELETE /applications/{object_id}/extensionProperties/{definition.get('id')}) and register again"
            )
    if len(existing) + len(missing) > MAX_PER_APPLICATION:
        result.problems.append(
            f"registering {len(missing)} more directory extensions would give the app {len(existing) + len(missing)}"
            f", more than Graph's {MAX_PER_APPLICATION} per application: sync fewer attributes as extensions"
        )
        return result
    for name, targets in missing.items():
        full = graph_attribute(app_id, name)
        if dry_run:
            result.problems.append(f"{full} is not registered")
            continue
        body = {"name": name, "dataType": "String", "isMultiValued": False, "targetObjects": targets}
        try:
            graph.request("POST", f"/applications/{object_id}/extensionProperties", json=body)
        except Exception as error:
            status = _status(error)
            if status in (401, 403):
                raise ExtensionRegistrationError(permission_hint(f"registering {full}")) from None
            if status == 400 and _registered_meanwhile(graph, object_id, full):
                result.existing.append(full)
                continue
            raise
        log.info("registered the directory extension %s (targets %s)", full, ", ".join(targets))
        result.created.append(full)
    return result


def _registered_meanwhile(graph: GraphRequests, object_id: str, full: str) -> bool:
    """After a 400 on a create: whether the name is registered now (another run did it first)."""
    return any(str(d.get("name", "")).lower() == full.lower() for d in registered_extensions(graph, object_id))
