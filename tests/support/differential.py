"""A seeded random AD world for differential sync tests: delta syncs after AD changes against a full re-evaluation.

``AdModel`` holds what AD holds (users, groups, members, managers); ``random_round`` changes it as an admin would and
returns the DirSync-like partial objects that report the changes (only the changed attributes, member values added or
removed, deletes). ``snapshot`` reads everything a sync writes (metaverse, references, links, pending exports and their
member rows, the connector spaces) for comparison; ``by_anchor`` reads the metaverse keyed by sourceAnchor instead of
metaverse ids, for a store built from scratch.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    link,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
)
from tests.support.world import BASE, deleted, entra_group, entra_user, guid, immutable_id

#: msExchRecipientTypeDetails values: a user mailbox (synced) and an arbitration mailbox (cloud-filtered).
MAILBOX, ARBITRATION = "1", "8388608"
DEPARTMENTS = ["Sales", "Finance", "IT", "HR"]


@dataclass
class AdUser:
    n: int
    attrs: dict[str, list[str]]
    manager: int | None = None

    @property
    def dn(self) -> str:
        return f"CN={self.attrs['cn'][0]},OU=Users,{BASE}"


@dataclass
class AdGroup:
    n: int
    attrs: dict[str, list[str]]
    members: set[int] = field(default_factory=set)

    @property
    def dn(self) -> str:
        return f"CN={self.attrs['cn'][0]},OU=Groups,{BASE}"


class AdModel:
    """What AD holds; every change method returns the partial objects DirSync would report for it."""

    def __init__(self, rng: random.Random, users: int, groups: int):
        self.rng = rng
        self.users: dict[int, AdUser] = {}
        self.groups: dict[int, AdGroup] = {}
        self.next_user = 1
        self.next_group = 100
        #: Users whose ms-DS-ConsistencyGuid (their sourceAnchor) an admin changed.
        self.anchor_changed: set[int] = set()
        #: Deleted objects an admin may restore from the recycle bin (same objectGUID, same values).
        self.recycled: dict[int, AdUser | AdGroup] = {}
        for _ in range(users):
            self._new_user()
        for _ in range(groups):
            self._new_group()
        group_ids = sorted(self.groups)
        # a nested group: the first group holds the second
        self.groups[group_ids[0]].members.add(group_ids[1])
        for n in sorted(self.users):
            if rng.random() < 0.4 and len(self.users) > 1:
                self.users[n].manager = rng.choice([m for m in self.users if m != n])

    # ------------------------------------------------------------------------------------------------- objects
    def _new_user(self) -> AdUser:
        n = self.next_user
        self.next_user += 1
        rng = self.rng
        sam = f"user{n}"
        attrs: dict[str, list[str]] = {
            "objectGUID": [guid(n)],
            "cn": [sam],
            "sAMAccountName": [sam],
            "userPrincipalName": [f"{sam}@corp.example"],
            "givenName": [f"Given{n}"],
            "sn": [f"Surname{n}"],
            "displayName": [f"User {n}"],
            "userAccountControl": ["514" if rng.random() < 0.15 else "512"],
        }
        if rng.random() < 0.5:
            attrs["mail"] = [f"{sam}@corp.example"]
        if rng.random() < 0.5:
            attrs["department"] = [rng.choice(DEPARTMENTS)]
        if rng.random() < 0.3:
            attrs["mS-DS-ConsistencyGuid"] = [guid(5000 + n)]
        roll = rng.random()
        if roll < 0.1:
            attrs["isCriticalSystemObject"] = ["TRUE"]
        elif roll < 0.2:
            attrs["msExchRecipientTypeDetails"] = [ARBITRATION]
        elif roll < 0.35:
            attrs["msExchRecipientTypeDetails"] = [MAILBOX]
        user = self.users[n] = AdUser(n, attrs)
        return user

    def source_anchor(self, n: int) -> str:
        user = self.users[n]
        return immutable_id(user.attrs.get("mS-DS-ConsistencyGuid", user.attrs["objectGUID"])[0])

    def _new_group(self) -> AdGroup:
        n = self.next_group
        self.next_group += 1
        rng = self.rng
        name = f"Group{n}"
        attrs: dict[str, list[str]] = {
            "objectGUID": [guid(n)],
            "cn": [name],
            "sAMAccountName": [name],
            "groupType": ["-2147483646" if rng.random() < 0.7 else "2"],
        }
        if rng.random() < 0.5:
            attrs["mail"] = [f"{name.lower()}@corp.example"]
        if rng.random() < 0.5:
            attrs["description"] = [f"About {name}"]
        users = sorted(self.users)
        members = set(rng.sample(users, min(len(users), rng.randint(0, 6))))
        group = self.groups[n] = AdGroup(n, attrs, members)
        return group

    def user_object(self, user: AdUser) -> SourceObject:
        references = {"manager": [(guid(user.manager), self.users[user.manager].dn)]} if user.manager else {}
        return SourceObject(
            anchor=guid(user.n),
            dn=user.dn,
            object_type="user",
            attrs={k: list(v) for k, v in user.attrs.items()},
            references=references,
        )

    def group_object(self, group: AdGroup) -> SourceObject:
        return SourceObject(
            anchor=guid(group.n),
            dn=group.dn,
            object_type="group",
            attrs={k: list(v) for k, v in group.attrs.items()},
            references={"member": [(guid(m), self._dn(m)) for m in sorted(group.members)]},
        )

    def _dn(self, n: int) -> str:
        return self.users[n].dn if n in self.users else self.groups[n].dn

    def full(self) -> list[SourceObject]:
        return [self.user_object(u) for u in self.users.values()] + [self.group_object(g) for g in self.groups.values()]

    # -------------------------------------------------------------------------------------------------- changes
    def _user_change(self, user: AdUser, attrs: dict[str, list[str]], **references: Any) -> SourceObject:
        for name, values in attrs.items():
            if values:
                user.attrs[name] = list(values)
            else:
                user.attrs.pop(name, None)
        return SourceObject(
            anchor=guid(user.n),
            dn=user.dn,
            object_type="user",
            attrs={k: list(v) for k, v in attrs.items()},
            references=references,
            partial=True,
        )

    def _group_change(self, group: AdGroup, attrs: dict[str, list[str]], adds=(), removes=()) -> SourceObject:
        for name, values in attrs.items():
            if values:
                group.attrs[name] = list(values)
            else:
                group.attrs.pop(name, None)
        group.members |= set(adds)
        group.members -= set(removes)
        return SourceObject(
            anchor=guid(group.n),
            dn=group.dn,
            object_type="group",
            attrs={k: list(v) for k, v in attrs.items()},
            reference_adds={"member": [(guid(m), self._dn(m)) for m in adds]} if adds else {},
            reference_removes={"member": [(guid(m), self._dn(m)) for m in removes]} if removes else {},
            partial=True,
        )

    def random_change(self) -> tuple[str, list[SourceObject]]:
        rng = self.rng
        kind = rng.choice(
            [
                "edit",
                "edit",
                "upn",
                "enable",
                "manager",
                "member-add",
                "member-remove",
                "scope",
                "filter",
                "delete-user",
                "delete-group",
                "new-user",
                "new-group",
                "rename",
                "group-edit",
                "restore",
                "consistency-guid",
                "group-scope",
                "sam",
                "mail-attributes",
                "group-rename",
            ]
        )
        users = sorted(self.users)
        groups = sorted(self.groups)
        user_kinds = ("edit", "upn", "enable", "manager", "scope", "filter", "rename", "delete-user", "sam")
        if kind in (*user_kinds, "consistency-guid", "mail-attributes") and not users:
            kind = "new-user"
        group_kinds = ("member-add", "member-remove", "group-edit", "delete-group", "group-scope", "group-rename")
        if kind in group_kinds and not groups:
            kind = "new-group"
        if kind == "restore" and not self.recycled:
            kind = "new-user"
        if kind == "restore":
            n = rng.choice(sorted(self.recycled))
            restored = self.recycled.pop(n)
            if isinstance(restored, AdUser):
                if restored.manager not in self.users:
                    restored.manager = None
                self.users[n] = restored
                return kind, [self._added(self.user_object(restored))]
            restored.members &= set(self.users) | set(self.groups)
            self.groups[n] = restored
            return kind, [self._added(self.group_object(restored))]
        if kind == "consistency-guid":
            user = self.users[rng.choice(users)]
            value = [] if user.attrs.get("mS-DS-ConsistencyGuid") and rng.random() < 0.3 else [guid(7000 + user.n)]
            self.anchor_changed.add(user.n)
            return kind, [self._user_change(user, {"mS-DS-ConsistencyGuid": value})]
        if kind == "sam":
            user = self.users[rng.choice(users)]
            sam = user.attrs.get("sAMAccountName")
            value = [f"user{user.n}"] if not sam else rng.choice([[], [f"AAD_{user.n}"], [f"{sam[0]}x"]])
            return kind, [self._user_change(user, {"sAMAccountName": value})]
        if kind == "mail-attributes":
            user = self.users[rng.choice(users)]
            name = rng.choice(["proxyAddresses", "mailNickname", "employeeID"])
            value = [] if rng.random() < 0.3 else [f"SMTP:{name}{rng.randint(1, 99)}@corp.example"]
            return kind, [self._user_change(user, {name: value})]
        if kind == "group-scope":
            group = self.groups[rng.choice(groups)]
            value = [] if group.attrs.get("adminDescription") else [f"Group_{group.n}"]
            return kind, [self._group_change(group, {"adminDescription": value})]
        if kind == "group-rename":
            group = self.groups[rng.choice(groups)]
            return kind, [self._group_change(group, {"cn": [f"Group{group.n}-{rng.randint(1, 99)}"]})]
        if kind == "edit":
            user = self.users[rng.choice(users)]
            name = rng.choice(["department", "displayName", "givenName", "mail", "title"])
            value = [] if rng.random() < 0.3 else [f"{name}-{rng.randint(1, 99)}"]
            if name == "mail" and value:
                value = [f"user{user.n}.{rng.randint(1, 9)}@corp.example"]
            return kind, [self._user_change(user, {name: value})]
        if kind == "upn":
            user = self.users[rng.choice(users)]
            upn = f"user{user.n}.r{rng.randint(1, 99)}@corp.example"
            return kind, [self._user_change(user, {"userPrincipalName": [upn]})]
        if kind == "enable":
            user = self.users[rng.choice(users)]
            value = "512" if user.attrs["userAccountControl"] == ["514"] else "514"
            return kind, [self._user_change(user, {"userAccountControl": [value]})]
        if kind == "manager":
            user = self.users[rng.choice(users)]
            others = [m for m in users if m != user.n]
            if user.manager and (rng.random() < 0.4 or not others):
                user.manager = None
                return kind, [self._user_change(user, {}, manager=[])]
            if not others:
                return kind, []
            user.manager = rng.choice(others)
            return kind, [self._user_change(user, {}, manager=[(guid(user.manager), self.users[user.manager].dn)])]
        if kind == "member-add":
            group = self.groups[rng.choice(groups)]
            candidates = [m for m in users + groups if m not in group.members and m != group.n]
            if not candidates:
                return kind, []
            adds = rng.sample(candidates, min(len(candidates), rng.randint(1, 3)))
            return kind, [self._group_change(group, {}, adds=adds)]
        if kind == "member-remove":
            group = self.groups[rng.choice(groups)]
            if not group.members:
                return kind, []
            removes = rng.sample(sorted(group.members), min(len(group.members), rng.randint(1, 2)))
            return kind, [self._group_change(group, {}, removes=removes)]
        if kind == "scope":
            user = self.users[rng.choice(users)]
            value = [] if user.attrs.get("isCriticalSystemObject") else ["TRUE"]
            return kind, [self._user_change(user, {"isCriticalSystemObject": value})]
        if kind == "filter":
            user = self.users[rng.choice(users)]
            current = user.attrs.get("msExchRecipientTypeDetails")
            value = rng.choice([[MAILBOX], []]) if current == [ARBITRATION] else [ARBITRATION]
            return kind, [self._user_change(user, {"msExchRecipientTypeDetails": value})]
        if kind == "rename":
            user = self.users[rng.choice(users)]
            return kind, [self._user_change(user, {"cn": [f"user{user.n}-{rng.randint(1, 99)}"]})]
        if kind == "group-edit":
            group = self.groups[rng.choice(groups)]
            name = rng.choice(["description", "mail", "groupType"])
            if name == "groupType":
                value = ["2"] if group.attrs["groupType"] == ["-2147483646"] else ["-2147483646"]
            elif name == "mail":
                value = [] if group.attrs.get("mail") else [f"group{group.n}.{rng.randint(1, 9)}@corp.example"]
            else:
                value = [] if rng.random() < 0.3 else [f"Text {rng.randint(1, 99)}"]
            return kind, [self._group_change(group, {name: value})]
        if kind == "delete-user":
            n = rng.choice(users)
            return kind, [self._delete(n)]
        if kind == "delete-group":
            n = rng.choice(groups)
            return kind, [self._delete(n)]
        if kind == "new-user":
            user = self._new_user()
            if users and rng.random() < 0.5:
                user.manager = rng.choice(users)
            changes = [self._added(self.user_object(user))]
            if groups and rng.random() < 0.6:
                changes.append(self._group_change(self.groups[rng.choice(groups)], {}, adds=[user.n]))
            return kind, changes
        assert kind == "new-group"
        group = self._new_group()
        if groups and rng.random() < 0.5:
            group.members.add(rng.choice(groups))
        return kind, [self._added(self.group_object(group))]

    @staticmethod
    def _added(obj: SourceObject) -> SourceObject:
        obj.partial = True
        return obj

    def _delete(self, n: int) -> SourceObject:
        obj = self.users.pop(n, None) or self.groups.pop(n)
        dn = obj.dn
        if self.rng.random() < 0.5:
            self.recycled[n] = obj
        # AD drops the links to a deleted object (DirSync does not report them; the connector-space writer drops them)
        for group in self.groups.values():
            group.members.discard(n)
        for user in self.users.values():
            if user.manager == n:
                user.manager = None
        return deleted(guid(n), dn)

    def random_round(self, changes: int) -> list[tuple[str, list[SourceObject]]]:
        return [self.random_change() for _ in range(changes)]


def cloud_twins(model: AdModel, rng: random.Random, share: float = 0.4) -> list[SourceObject]:
    """Entra users already holding the ImmutableId of some AD users (hard match), some values differing, and Entra
    groups holding the anchor of some AD groups, with about their members."""
    twins = []
    for n, user in sorted(model.users.items()):
        if rng.random() >= share:
            continue
        anchor = model.source_anchor(n)
        twins.append(
            entra_user(
                f"cloud-{n}",
                user.attrs["userPrincipalName"][0],
                anchor,
                accountEnabled=True,
                displayName=user.attrs["displayName"][0] if rng.random() < 0.7 else "Old name",
                givenName=user.attrs["givenName"][0],
                surname=user.attrs["sn"][0],
                mailNickname=user.attrs["sAMAccountName"][0],
                extension_aadsyncSourceAnchor=anchor,
            )
        )
    cloud_users = {obj.anchor for obj in twins}
    for n, group in sorted(model.groups.items()):
        if rng.random() >= share + 0.2:
            continue
        anchor = immutable_id(guid(n))
        members = [f"cloud-{m}" for m in sorted(group.members) if f"cloud-{m}" in cloud_users]
        members += [f"cloud-group-{m}" for m in sorted(group.members) if m in model.groups]
        if members and rng.random() < 0.3:
            members.pop(rng.randrange(len(members)))  # a member the cloud group lacks
        if cloud_users and rng.random() < 0.3:
            members.append(rng.choice(sorted(cloud_users)))  # and one it has that AD's group has not
        twins.append(
            entra_group(
                f"cloud-group-{n}",
                group.attrs["cn"][0],
                list(dict.fromkeys(members)),
                mailNickname=group.attrs["sAMAccountName"][0],
                extension_aadsyncSourceAnchor=anchor,
            )
        )
    return twins


def cloud_round(rng: random.Random, cloud: dict[str, SourceObject], model: AdModel) -> list[SourceObject]:
    """A few changes made in Entra ID (``cloud``: its live objects by anchor, changed in place), as an Entra delta
    import reports them: values edited in the portal, cloud users deleted, cloud group members removed and added, new
    cloud-only users (some holding the UPN of an AD user: a soft match)."""
    changes: list[SourceObject] = []
    for _ in range(rng.randint(0, 3)):
        users = sorted(anchor for anchor, obj in cloud.items() if obj.object_type == "user")
        groups = sorted(anchor for anchor, obj in cloud.items() if obj.object_type == "group")
        kind = rng.choice(["edit", "edit", "delete", "member-remove", "member-add", "soft-match", "cloud-only"])
        if kind == "edit" and users:
            anchor = rng.choice(users)
            name = rng.choice(["department", "displayName", "jobTitle"])
            value = [f"cloud-{name}-{rng.randint(1, 9)}"]
            cloud[anchor].attrs[name] = value
            changes.append(SourceObject(anchor, cloud[anchor].dn, "user", attrs={name: value}, partial=True))
        elif kind == "delete" and users:
            anchor = rng.choice(users)
            gone = cloud.pop(anchor)
            for obj in cloud.values():
                if "members" in obj.references:
                    obj.references["members"] = [m for m in obj.references["members"] if m[0] != anchor]
            changes.append(deleted(anchor, gone.dn))
        elif kind == "member-remove" and groups:
            group = cloud[rng.choice(groups)]
            members = group.references.setdefault("members", [])
            if members:
                removed = members.pop(rng.randrange(len(members)))
                changes.append(
                    SourceObject(
                        group.anchor, group.dn, "group", reference_removes={"members": [removed]}, partial=True
                    )
                )
        elif kind == "member-add" and groups and users:
            group = cloud[rng.choice(groups)]
            added = (rng.choice(users), None)
            if added not in group.references.setdefault("members", []):
                group.references["members"].append(added)
                changes.append(
                    SourceObject(group.anchor, group.dn, "group", reference_adds={"members": [added]}, partial=True)
                )
        elif kind in ("soft-match", "cloud-only"):
            anchor = f"cloud-only-{rng.randint(1, 9999)}"
            upn = f"{anchor}@corp.example"
            if kind == "soft-match" and model.users:
                upn = model.users[rng.choice(sorted(model.users))].attrs["userPrincipalName"][0]
            if anchor in cloud:
                continue
            obj = cloud[anchor] = entra_user(anchor, upn, None, accountEnabled=True, displayName="Cloud only")
            changes.append(SourceObject(anchor, obj.dn, "user", attrs=dict(obj.attrs), partial=True))
    return changes


# ---------------------------------------------------------------------------------------------------------- reading
def copy_store(store: Store, path: str) -> str:
    """A consistent copy of a SQLite store (WAL included), through SQLite's backup API; its URL."""
    source_path = store.engine.url.database
    store.engine.dispose()
    with sqlite3.connect(source_path) as source, sqlite3.connect(path) as target:
        source.backup(target)
    return f"sqlite:///{path}"


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a sync writes, as comparable values (metaverse ids as they are)."""
    with store.engine.connect() as connection:
        mv = {
            row.id: (row.object_type, json.loads(row.attrs))
            for row in connection.execute(sa.select(mv_object.c.id, mv_object.c.object_type, mv_object.c.attrs))
        }
        references = set(connection.execute(sa.select(mv_reference)).all())
        links = {
            (r.connector, r.anchor): (r.mv_id, r.link_type, r.rule)
            for r in connection.execute(
                sa.select(link.c.connector, link.c.anchor, link.c.mv_id, link.c.link_type, link.c.rule)
            )
        }
        exports = {
            (r.connector, r.anchor): (r.operation, json.loads(r.changes), r.state, r.dn, r.object_type)
            for r in connection.execute(sa.select(pending_export))
        }
        reference_exports = {
            (r.connector, r.anchor, r.attribute, r.target_anchor): (r.operation, r.state)
            for r in connection.execute(sa.select(pending_export_reference))
        }
        spaces = {
            (r.connector, r.anchor): (r.dn, r.object_type, json.loads(r.attrs), r.is_deleted, r.pending_import)
            for r in connection.execute(sa.select(cs_object))
        }
        cs_references = set(
            connection.execute(
                sa.select(
                    cs_reference.c.connector,
                    cs_reference.c.anchor,
                    cs_reference.c.attribute,
                    cs_reference.c.target_anchor,
                )
            ).all()
        )
    return {
        "metaverse": mv,
        "mv_references": references,
        "links": links,
        "exports": exports,
        "reference_exports": reference_exports,
        "connector_spaces": spaces,
        "cs_references": cs_references,
    }


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """Readable differences between two snapshots (or any dicts of dicts / sets)."""
    found = []
    for part in left:
        a, b = left[part], right[part]
        if a == b:
            continue
        if isinstance(a, set):
            found += [f"{part}: only left {item}" for item in sorted(a - b, key=repr)]
            found += [f"{part}: only right {item}" for item in sorted(b - a, key=repr)]
            continue
        for key in sorted(a.keys() | b.keys(), key=repr):
            x, y = a.get(key), b.get(key)
            if x == y:
                continue
            if isinstance(x, dict) and isinstance(y, dict):
                found += [
                    f"{part}[{key!r}].{name}: {x.get(name)!r} != {y.get(name)!r}"
                    for name in sorted(x.keys() | y.keys())
                    if x.get(name) != y.get(name)
                ]
            else:
                found.append(f"{part}[{key!r}]: {x!r} != {y!r}")
    return found


def by_anchor(store: Store, history: Iterable[str] = ()) -> dict[str, Any]:
    """The metaverse by (type, sourceAnchor): attributes and members by the same keys (ids and links left out).

    ``history``: the sourceAnchors of persons whose anchor changed while joined to a cloud user: a store that lived
    through the change keeps the join (the "sourceAnchor attribute has changed" error), one built from scratch refuses
    to match the cloud user, which holds the old anchor; their cloudAnchor is left out."""
    snap = snapshot(store)
    keys = {}
    for mv_id, (mv_type, attrs) in snap["metaverse"].items():
        anchor = (attrs.get("sourceAnchor") or attrs.get("accountName") or [f"#{mv_id}"])[0]
        keys[mv_id] = (mv_type, anchor)
    mv = {keys[mv_id]: attrs for mv_id, (_t, attrs) in snap["metaverse"].items()}
    for key in mv:
        if key[1] in set(history):
            mv[key] = {name: values for name, values in mv[key].items() if name != "cloudAnchor"}
    members = {(keys[r.mv_id], r.attribute, keys.get(r.target_mv_id, r.target_mv_id)) for r in snap["mv_references"]}
    return {"metaverse": mv, "mv_references": members}
