"""Directory objects of a tenant: lookups by id, UPN and mail nickname, and every write (create, update, links,
delete, restore, purge, admin seeding), each logged in the change log that delta queries read."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import (
    CONTACT,
    CONTACT_PROPS,
    DELTA_KINDS,
    EXTENSION_ATTRIBUTES,
    GROUP,
    GROUP_PROPS,
    MAIL_NICKNAME,
    MEMBERS,
    ODATA_TYPES,
    OWNERS,
    REQUIRED,
    USER,
    USER_PROPS,
    is_unified,
    now_iso,
    object_id_from_url,
    security_identifier,
)
from aadsync_devkit.graph_emulator.extensions import is_extension
from aadsync_devkit.graph_emulator.records import (
    CREATED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    REMOVED,
    UPDATED,
    Change,
    Deleted,
    DirectoryObject,
)
from aadsync_devkit.graph_emulator.validation import TenantValidation


class TenantObjects(TenantValidation):
    """The directory-object side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`: its fields are made by
    ``Tenant.__init__``; the indexes are kept by ``_index``/``_unindex`` wherever ``_objects`` changes."""

    _lock: threading.RLock
    initial_domain: str
    _seq: int
    _objects: dict[str, DirectoryObject]
    _deleted: dict[str, Deleted]
    _kind_counts: dict[str, int]
    _members: dict[str, dict[str, int]]
    _owners: dict[str, dict[str, int]]
    _changes: list[Change]
    _dirty_objects: set[str]
    _dirty_links: set[tuple[str, str, str]]

    def _index(self, obj: DirectoryObject) -> None:
        """Add a live object to the indexes (after it joined ``_objects`` or its properties changed)."""
        self._dirty_objects.add(obj.id)
        if obj.kind == USER:
            self._by_upn[obj.props["userPrincipalName"].lower()] = obj.id
            if obj.props.get("onPremisesImmutableId"):
                self._by_immutable_id[obj.props["onPremisesImmutableId"]] = obj.id
        for proxy in obj.props.get("proxyAddresses") or []:
            self._by_proxy[proxy.lower()] = obj.id
        if obj.props.get("mailNickname"):
            self._by_nickname.setdefault(obj.props["mailNickname"].lower(), set()).add(obj.id)
        self._kind_counts[obj.kind] = self._kind_counts.get(obj.kind, 0) + 1

    def _unindex(self, obj: DirectoryObject) -> None:
        """Remove a live object from the indexes (before it leaves ``_objects`` or its properties change)."""
        self._dirty_objects.add(obj.id)
        if obj.kind == USER and self._by_upn.get(obj.props["userPrincipalName"].lower()) == obj.id:
            del self._by_upn[obj.props["userPrincipalName"].lower()]
        immutable_id = obj.props.get("onPremisesImmutableId") if obj.kind == USER else None
        if immutable_id and self._by_immutable_id.get(immutable_id) == obj.id:
            del self._by_immutable_id[immutable_id]
        for proxy in obj.props.get("proxyAddresses") or []:
            if self._by_proxy.get(proxy.lower()) == obj.id:
                del self._by_proxy[proxy.lower()]
        if obj.props.get("mailNickname"):
            holders = self._by_nickname.get(obj.props["mailNickname"].lower())
            if holders is not None:
                holders.discard(obj.id)
                if not holders:
                    del self._by_nickname[obj.props["mailNickname"].lower()]
        self._kind_counts[obj.kind] -= 1

    def with_mail_nickname(self, nickname: str) -> list[str]:
        """Ids of the live objects with this ``mailNickname`` (case-insensitive), from the index."""
        with self._lock:
            return sorted(self._by_nickname.get(nickname.lower(), ()))

    def _find(self, kind: str | None, key: str) -> DirectoryObject:
        obj = self._objects.get(key) or self._objects.get(key.lower())
        if obj is None and kind == USER and "@" in key:
            found = self._by_upn.get(key.lower())
            obj = self._objects.get(found) if found else None
        if obj is None or (kind is not None and obj.kind != kind):
            raise err.ResourceNotFound(key)
        return obj

    def get(self, kind: str | None, key: str) -> tuple[str, dict[str, Any]]:
        """``(kind, properties copy)`` of a live object by id (or UPN for users); 404 otherwise."""
        with self._lock:
            obj = self._find(kind, key)
            return obj.kind, dict(obj.props)

    def list(self, kind: str, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Live objects of *kind* in creation order, each a copy with ``_seq`` (the paging cursor) added."""
        with self._lock:
            return [
                {**o.props, "_seq": o.seq}
                for o in self._objects.values()
                if o.kind == kind and (predicate is None or predicate(o.props))
            ]

    def members(self, group_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            group = self._find(GROUP, group_id)
            out = []
            for member_id, seq in self._members.get(group.id, {}).items():
                obj = self._objects[member_id]
                out.append((obj.kind, {**obj.props, "_seq": seq}))
            return out

    def deleted_items(self, kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [
                (d.obj.kind, {**d.obj.props, "_seq": d.obj.seq})
                for d in self._deleted.values()
                if kind is None or d.obj.kind == kind
            ]

    def get_deleted(self, object_id: str) -> tuple[str, dict[str, Any]]:
        with self._lock:
            deleted = self._deleted.get(object_id.lower())
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            return deleted.obj.kind, dict(deleted.obj.props)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new(self, kind: str, props: dict[str, Any]) -> DirectoryObject:
        obj = DirectoryObject(kind, self._next_seq(), props)
        self._objects[obj.id] = obj
        self._index(obj)
        self._log(kind, obj.id, CREATED, seq=obj.seq)
        return obj

    def _log(
        self,
        kind: str,
        object_id: str,
        op: str,
        *,
        names: Iterable[str] = (),
        member: str = "",
        seq: int | None = None,
    ) -> int:
        """Append a change of a user or group (other kinds have no delta) and return its sequence number."""
        seq = self._next_seq() if seq is None else seq
        if kind in DELTA_KINDS:
            member_kind = ""
            if member:
                found = self._objects.get(member) or (self._deleted[member].obj if member in self._deleted else None)
                member_kind = found.kind if found else USER
            self._changes.append(Change(seq, kind, object_id, op, tuple(names), member, member_kind))
        return seq

    def _new_id(self, requested: Any) -> str:
        object_id = str(uuid.UUID(str(requested))) if requested else str(uuid.uuid4())
        if object_id in self._objects or object_id in self._deleted:
            raise err.ObjectConflict("id")
        return object_id

    def create_user(self, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        with self._lock:
            values = self._check_body(USER, body, admin=admin)
            for name in REQUIRED[USER]:
                if values.get(name) in (None, ""):
                    raise err.PropertyRequired(name)
            self._check_user_values(values, exclude=None)
            values.pop("passwordProfile", None)  # never stored: the emulator keeps no passwords
            proxies = values.get("proxyAddresses")
            if proxies is None:
                proxies = [f"SMTP:{values['mail']}"] if values.get("mail") else []
            self._check_proxies(proxies, None)
            object_id = self._new_id(values.pop("id", None))
            props = {name: None for name in USER_PROPS if name != "passwordProfile"}
            props.update(
                businessPhones=[],
                imAddresses=[],
                otherMails=[],
                userType="Member",
                creationType=None,
                createdDateTime=now_iso(),
            )
            props.update(values)
            _drop_empty_extensions(props)
            props["onPremisesExtensionAttributes"] = _merged_attributes(
                None, values.get("onPremisesExtensionAttributes")
            )
            props.update(id=object_id, proxyAddresses=list(proxies))
            return dict(self._new(USER, props).props)

    def update_user(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            obj = self._find(USER, key)
            values = self._check_body(USER, body, admin=False)
            self._check_synced(obj, values)
            # Required at the create, and documented as not clearable ("Update user": displayName "can't be cleared
            # during updates", usageLocation "Not nullable", mail "can't be updated to null").
            for name in ("accountEnabled", "displayName", "mailNickname", "userPrincipalName", "usageLocation", "mail"):
                if name in values and values[name] in (None, ""):
                    raise err.InvalidPropertyValue(name, "User")
            self._check_user_values(values, exclude=obj.id)
            values.pop("passwordProfile", None)
            if values.get("mail") and values["mail"] != obj.props.get("mail"):
                proxies = [p for p in obj.props["proxyAddresses"] if not p.startswith("SMTP:")]
                proxies.insert(0, f"SMTP:{values['mail']}")
                self._check_proxies(proxies, obj.id)
                values["proxyAddresses"] = proxies
            if "onPremisesExtensionAttributes" in values:  # a partial object: only the members it names change
                old = obj.props.get("onPremisesExtensionAttributes")
                values["onPremisesExtensionAttributes"] = _merged_attributes(
                    old, values["onPremisesExtensionAttributes"]
                )
            changed = [n for n, v in values.items() if obj.props.get(n) != v]
            self._unindex(obj)
            obj.props.update(values)
            _drop_empty_extensions(obj.props)
            self._index(obj)
            if changed:
                self._log(USER, obj.id, UPDATED, names=changed)

    def create_group(self, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        with self._lock:
            values = self._check_body(GROUP, body, admin=admin)
            for name in REQUIRED[GROUP]:
                if values.get(name) in (None, ""):
                    raise err.PropertyRequired(name)
            if not MAIL_NICKNAME.match(values["mailNickname"]):
                raise err.InvalidPropertyValue("mailNickname", "Group")
            group_types = values.get("groupTypes") or []
            unified = any(t.lower() == "unified" for t in group_types)
            if values["mailEnabled"] and not unified and not admin:
                # Graph's answer (its typos kept): only Microsoft 365 groups and security groups are created here;
                # mail-enabled security groups and distribution groups are made in Exchange Online.
                raise err.BadRequest(err.MAIL_GROUP_CREATE)
            if not values["mailEnabled"] and unified:
                raise err.InvalidPropertyValue("mailEnabled", "Group")
            if unified and self._nickname_taken(values["mailNickname"], None):
                raise err.ObjectConflict("mailNickname")  # before the derived SMTP address could clash
            members, owners = self._bind_ids(body, admin=admin)
            object_id = self._new_id(values.pop("id", None))
            mail = f"{values['mailNickname']}@{self.initial_domain}" if unified else None
            proxies = values.get("proxyAddresses")
            if proxies is None:
                proxies = [f"SMTP:{mail}"] if mail else []
            self._check_proxies(proxies, None)
            props = {name: None for name in GROUP_PROPS}
            props.update(
                createdDateTime=now_iso(),
                renewedDateTime=now_iso(),
                groupTypes=list(group_types),
                mail=mail,
                visibility="Public" if unified else None,
                securityIdentifier=security_identifier(object_id),
            )
            props.update(values)
            _drop_empty_extensions(props)
            props.update(id=object_id, proxyAddresses=list(proxies))
            obj = self._new(GROUP, props)
            self._add_links(obj.id, self._members, members, "members")
            self._add_links(obj.id, self._owners, owners, "owners")
            return dict(obj.props)

    def update_group(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            obj = self._find(GROUP, key)
            values = self._check_body(GROUP, body, admin=False)
            members, owners = self._bind_ids(body)
            self._check_synced(obj, list(values) + (["members"] if members or owners else []))
            self._check_read_only_mail_group(obj)
            if "mailEnabled" in values and values["mailEnabled"] != obj.props.get("mailEnabled"):
                # Update group has no mailEnabled: a group's mail-enablement is fixed when it is created.
                raise err.BadRequest(err.MAIL_ENABLEMENT_UPDATE)
            if "mailNickname" in values and not MAIL_NICKNAME.match(values["mailNickname"] or ""):
                raise err.InvalidPropertyValue("mailNickname", "Group")
            if (
                ("mailNickname" in values or "groupTypes" in values)
                and is_unified({**obj.props, **values})
                and self._nickname_taken(values.get("mailNickname") or obj.props["mailNickname"], obj.id)
            ):
                raise err.ObjectConflict("mailNickname")
            self._add_links(obj.id, self._members, members, "members")
            self._add_links(obj.id, self._owners, owners, "owners")
            changed = [n for n, v in values.items() if obj.props.get(n) != v]
            self._unindex(obj)
            obj.props.update(values)
            _drop_empty_extensions(obj.props)
            self._index(obj)
            if changed:
                self._log(GROUP, obj.id, UPDATED, names=changed)

    @staticmethod
    def _check_read_only_mail_group(group: DirectoryObject) -> None:
        """A mail-enabled security group or a distribution group (mail-enabled, not Unified) is read-only through
        Graph: every write to it is refused as Graph refuses it (they are managed in Exchange Online)."""
        if group.props.get("mailEnabled") and not is_unified(group.props):
            raise err.BadRequest(err.MAIL_GROUP_UPDATE)

    def set_writeback_configuration(self, key: str, value: dict[str, Any]) -> None:
        """A group's beta-only ``writebackConfiguration`` (group writeback's per-group switch)."""
        with self._lock:
            obj = self._find(GROUP, key)
            if obj.props.get("writebackConfiguration") != value:
                obj.props["writebackConfiguration"] = value
                self._log(GROUP, obj.id, UPDATED, names=["writebackConfiguration"])

    def _add_links(self, group_id: str, table: dict[str, dict[str, int]], ids: list[str], prop: str) -> None:
        existing = table.setdefault(group_id, {})
        if len(set(ids)) != len(ids) or any(i in existing for i in ids):
            raise err.ReferenceAlreadyExists(prop)
        for object_id in ids:
            if prop == MEMBERS:
                existing[object_id] = self._log(GROUP, group_id, MEMBER_ADDED, member=object_id)
            else:
                existing[object_id] = self._next_seq()
            self._dirty_links.add((prop, group_id, object_id))

    def add_member(self, group_id: str, member_url: Any) -> None:
        with self._lock:
            group = self._find(GROUP, group_id)
            member_id = object_id_from_url(member_url).lower()
            if member_id not in self._objects:
                raise err.ResourceNotFound(member_id)
            self._check_synced(group, ["members"])
            self._check_read_only_mail_group(group)
            self._add_links(group.id, self._members, [member_id], "members")

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self._lock:
            group = self._find(GROUP, group_id)
            self._check_read_only_mail_group(group)
            members = self._members.setdefault(group.id, {})
            if member_id.lower() not in members:
                raise err.ResourceNotFound(member_id)
            self._check_synced(group, ["members"])
            del members[member_id.lower()]
            self._dirty_links.add((MEMBERS, group.id, member_id.lower()))
            self._log(GROUP, group.id, MEMBER_REMOVED, member=member_id.lower())

    def delete(self, kind: str, key: str) -> None:
        """Users and Microsoft 365 groups go to deleted items (30 days in Entra); other groups are gone at once."""
        with self._lock:
            obj = self._find(kind, key)
            self._check_synced(obj, ["deleted"])
            if kind == GROUP:
                self._check_read_only_mail_group(obj)
            self._drop_manager_links(obj.id)
            member_of = [g for g, members in self._members.items() if obj.id in members]
            for g in member_of:
                del self._members[g][obj.id]
                self._log(GROUP, g, MEMBER_REMOVED, member=obj.id)
            owner_of = [g for g, owners in self._owners.items() if owners.pop(obj.id, None) is not None]
            members = list(self._members.pop(obj.id, {}))
            owners = list(self._owners.pop(obj.id, {}))
            self._dirty_links.update((MEMBERS, g, obj.id) for g in member_of)
            self._dirty_links.update((OWNERS, g, obj.id) for g in owner_of)
            self._dirty_links.update((MEMBERS, obj.id, m) for m in members)
            self._dirty_links.update((OWNERS, obj.id, m) for m in owners)
            self._unindex(obj)
            del self._objects[obj.id]
            soft = kind == USER or is_unified(obj.props)
            if soft:
                obj.props["deletedDateTime"] = now_iso()
                if kind == USER:
                    obj.props["userPrincipalName"] = obj.id.replace("-", "") + obj.props["userPrincipalName"]
                self._deleted[obj.id] = Deleted(obj, member_of, members)
            self._log(kind, obj.id, REMOVED)

    def restore(self, object_id: str) -> tuple[str, dict[str, Any]]:
        with self._lock:
            deleted = self._deleted.get(object_id.lower())
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            obj = deleted.obj
            if obj.kind == USER:
                upn = obj.props["userPrincipalName"][len(obj.id.replace("-", "")) :]
                if self._upn_taken(upn, obj.id):
                    raise err.ObjectConflict("userPrincipalName")
                if self._immutable_id_taken(obj.props.get("onPremisesImmutableId"), obj.id):
                    raise err.ObjectConflict("onPremisesImmutableId")
                obj.props["userPrincipalName"] = upn
            elif is_unified(obj.props) and self._nickname_taken(obj.props["mailNickname"], obj.id):
                raise err.ObjectConflict("mailNickname")
            self._check_proxies(obj.props.get("proxyAddresses") or [], obj.id)
            obj.props["deletedDateTime"] = None
            del self._deleted[obj.id]
            self._objects[obj.id] = obj
            self._index(obj)
            self._log(obj.kind, obj.id, CREATED)
            for g in deleted.member_of:
                if g in self._members:
                    self._members[g][obj.id] = self._log(GROUP, g, MEMBER_ADDED, member=obj.id)
                    self._dirty_links.add((MEMBERS, g, obj.id))
            if obj.kind == GROUP:
                self._members[obj.id] = {
                    m: self._log(GROUP, obj.id, MEMBER_ADDED, member=m) for m in deleted.members if m in self._objects
                }
                self._dirty_links.update((MEMBERS, obj.id, m) for m in self._members[obj.id])
                self._owners.setdefault(obj.id, {})
            return obj.kind, dict(obj.props)

    def purge(self, object_id: str) -> None:
        with self._lock:
            deleted = self._deleted.pop(object_id.lower(), None)
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            self._dirty_objects.add(deleted.obj.id)
            self._log(deleted.obj.kind, deleted.obj.id, REMOVED)

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Admin-only create that may set read-only properties (synced objects, proxyAddresses, contacts)."""
        if not isinstance(body, dict):
            raise err.BadRequest("Each object to seed must be a JSON object with an '@odata.type'.")
        kind = {v.lstrip("#"): k for k, v in ODATA_TYPES.items()}.get(str(body.get("@odata.type", "")).lstrip("#"))
        if kind == USER:
            return self.create_user({"passwordProfile": {"password": secrets.token_urlsafe(12)}, **body}, admin=True)
        if kind == GROUP:
            return self.create_group(body, admin=True)
        if kind == CONTACT:
            with self._lock:
                values = self._check_body(CONTACT, body, admin=True)
                if not values.get("displayName"):
                    raise err.PropertyRequired("displayName")
                proxies = values.get("proxyAddresses") or ([f"SMTP:{values['mail']}"] if values.get("mail") else [])
                self._check_proxies(proxies, None)
                object_id = self._new_id(values.pop("id", None))
                props = {name: None for name in CONTACT_PROPS}
                props.update(addresses=[], phones=[])
                props.update(values)
                props.update(id=object_id, proxyAddresses=list(proxies))
                return dict(self._new(CONTACT, props).props)
        raise err.BadRequest(
            "@odata.type must be #microsoft.graph.user, #microsoft.graph.group or #microsoft.graph.orgContact."
        )


def _drop_empty_extensions(props: dict[str, Any]) -> None:
    """Writing ``null`` to a directory extension removes the value (the object no longer carries it)."""
    for name in [n for n, v in props.items() if v is None and is_extension(n)]:
        del props[name]


def _merged_attributes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """``onPremisesExtensionAttributes`` after a write: all 15 members, those *new* names replaced (``null``
    clears one); Graph returns every member, unset ones as ``null``."""
    return {name: None for name in EXTENSION_ATTRIBUTES} | (old or {}) | (new or {})
