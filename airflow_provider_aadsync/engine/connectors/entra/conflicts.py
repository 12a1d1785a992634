"""Duplicate attribute resiliency of the Entra export: a UPN that another object holds gets a placeholder, a
conflicting SMTP address is dropped, the conflict is recorded (``export_conflict``) and the write retried; when a
later write of the wanted value goes through, the conflict is released.

A new user whose UPN (or mail) a cloud-only user holds that the last Entra import did not see (created in the tenant
since) is not created beside it with a placeholder: that user is the one a soft match adopts ("With soft match, a
cloud user holding the same UPN is adopted first; the placeholder is for real clashes"). The create is held as a per-
object error; the next cycle's Entra import reads the cloud user and its sync soft-matches it (joins it, withdraws the
create). When the sync does not (soft matching blocked, another anchor held), the create meets it in the connector
space and the placeholder follows, as for any clash; so it does when an import has read the tenant since the hold and
not brought that user in (one it cannot store): the hold lasts until the next import, never for good."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.graph import (
    GraphAnswer,
    conflict_target,
    invalid_target,
    is_placeholder,
    odata_quote,
)
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass, Operation, stored_upn
from airflow_provider_aadsync.engine.runs.export_run import release_conflicts
from airflow_provider_aadsync.engine.store import cs_object, export_conflict, pending_export, run, utcnow

log = logging.getLogger(__name__)

#: Results of an import that read the tenant (its objects are in the connector space).
IMPORTED = ("success", "completed-import-errors")
#: The per-object error of a create held because a cloud user the next import and sync soft-match holds its UPN.
SOFT_MATCH_PENDING = "soft-match-pending"


def placeholder_of(upn: str, wanted: str) -> bool:
    """Whether ``upn`` is a placeholder (either separator) that duplicate attribute resiliency gives ``wanted``: its
    local part is the wanted one's plus the separator and four digits."""
    return is_placeholder(upn) and upn.rpartition("@")[0][:-5].casefold() == wanted.rpartition("@")[0].casefold()


class Conflicts:
    """Resolves, records and releases duplicate-attribute conflicts of one export pass."""

    def __init__(self, state: ExportPass) -> None:
        self.state = state

    def resolve(self, operation: Operation, answer: GraphAnswer) -> bool:
        """Duplicate attribute resiliency: placeholder UPN, dropped SMTP address; the write is retried."""
        if operation.object_type != "user":
            return False
        sent_upn = (operation.changes.get("userPrincipalName") or [""])[0]
        if invalid_target(answer) == "userPrincipalName" and "+" in sent_upn and is_placeholder(sent_upn):
            # Graph's documented UPN characters exclude "+", which the product's private endpoint accepts: keep the
            # placeholder's digits with an allowed separator.
            local, _, domain = sent_upn.rpartition("@")
            fallback = f"{local[:-5]}_{local[-4:]}@{domain}"
            self._update_placeholder(operation.anchor, fallback)
            operation.changes = {**operation.changes, "userPrincipalName": [fallback]}
            self.state.retry.append(operation)
            return True
        target = conflict_target(answer)
        if target is None:
            return False
        if target == "userPrincipalName" and operation.changes.get("userPrincipalName"):
            wanted = operation.changes["userPrincipalName"][0]
            if is_placeholder(wanted):
                return False
            current = self._current_upn(operation.anchor) if operation.kind == "update" else None
            known = self._known_placeholder(operation.anchor, wanted) if operation.kind == "update" else None
            if known is None and current is not None and placeholder_of(current, wanted):
                # No record of the conflict (a rebuilt store, a second instance), but the user already holds a
                # placeholder of this UPN, an earlier export's: keep it, never give it a new random one.
                known = current
            if known is not None and current == known:
                # The conflict persists and the user holds the placeholder it was given: keep it, nothing to write.
                self._record(operation.anchor, "userPrincipalName", wanted, known)
                operation.changes = {k: v for k, v in operation.changes.items() if k != "userPrincipalName"}
            else:
                placeholder = self._placeholder_upn(wanted)
                self._record(operation.anchor, "userPrincipalName", wanted, placeholder)
                operation.changes = {**operation.changes, "userPrincipalName": [placeholder]}
        elif target == "proxyAddresses" and operation.changes.get("mail"):
            wanted = operation.changes["mail"][0]
            self._record(operation.anchor, "mail", wanted, None)
            operation.changes = {k: v for k, v in operation.changes.items() if k != "mail"}
        else:
            return False
        self.state.counters["conflicts_recorded"] += 1
        if operation.kind == "update" and not operation.changes:
            with self.state.transaction() as connection:
                connection.execute(sa.delete(pending_export).where(self.state.row(operation.anchor)))
            return True
        self.state.retry.append(operation)
        return True

    def hold_for_soft_match(self, operation: Operation, answer: GraphAnswer) -> bool:
        """A user create refused for its UPN or its mail (an SMTP address), held by a cloud-only user (no
        onPremisesImmutableId, not mastered by another engine) that is not in the connector space although an Entra
        import has run, and none since an earlier hold of this create: the create is held as a per-object error,
        nothing written, for the next import and sync to soft-match that user on the same attribute (module
        docstring). Returns whether it was held."""
        if operation.kind != "create" or operation.object_type != "user":
            return False
        target = conflict_target(answer)
        attribute = {"userPrincipalName": "userPrincipalName", "proxyAddresses": "mail"}.get(target or "")
        wanted = (operation.changes.get(attribute) or [""])[0] if attribute else ""
        if not attribute or not wanted or (attribute == "userPrincipalName" and is_placeholder(wanted)):
            return False
        holders = self.state.writer.request(
            "GET",
            "/users",
            params={
                "$filter": f"{attribute} eq '{odata_quote(wanted)}'",
                "$select": f"id,{attribute},onPremisesImmutableId,onPremisesSyncEnabled",
            },
        )["value"]
        cloud_only = [
            user
            for user in holders
            if not user.get("onPremisesImmutableId") and user.get("onPremisesSyncEnabled") is not True
        ]
        if len(cloud_only) != 1 or not self._imported_since_missing(cloud_only[0]["id"], operation.held_in):
            return False
        holder = cloud_only[0]["id"]
        self.state.counters["creates_held_for_soft_match"] += 1
        self.state.fail_rows(
            [operation.anchor],
            SOFT_MATCH_PENDING,
            f"not created: the cloud user {holder} holds the {attribute} {wanted!r} and has no onPremisesImmutableId; "
            "it was created after the last Entra import, so the next cycle's import and sync soft-match it (adopt "
            "it) instead of creating a second user; nothing was written",
            dn=operation.dn,
        )
        return True

    def _imported_since_missing(self, object_id: str, held_in: int | None) -> bool:
        """Whether this connector has had an import, its connector space lacks ``object_id`` and no import has read
        the tenant since this create was last held (in run ``held_in``): the next import reads it. Without any import (a
        configuration that never reads the tenant) nothing would; nor would more imports after one that read the
        tenant without bringing it in (a user it cannot store): not held, so never held for good."""
        with self.state.transaction() as connection:
            last_import = connection.execute(
                sa.select(sa.func.max(run.c.id)).where(
                    run.c.connector == self.state.connector, run.c.profile.like("%-import"), run.c.result.in_(IMPORTED)
                )
            ).scalar()
            present = connection.execute(
                sa.select(cs_object.c.anchor).where(
                    cs_object.c.connector == self.state.connector, cs_object.c.anchor == object_id
                )
            ).first()
        if last_import is None or present is not None:
            return False
        return held_in is None or last_import < held_in  # run ids grow: a later import started after the hold

    def _known_placeholder(self, anchor: str, wanted: str) -> str | None:
        """The placeholder an unreleased conflict of the same wanted UPN gave this object (kept while it lasts)."""
        with self.state.transaction() as connection:
            known = connection.execute(
                sa.select(export_conflict.c.placeholder).where(
                    export_conflict.c.connector == self.state.connector,
                    export_conflict.c.anchor == anchor,
                    export_conflict.c.attribute == "userPrincipalName",
                    export_conflict.c.wanted_value == wanted,
                    export_conflict.c.released_at.is_(None),
                )
            ).scalar()
        return known if known and is_placeholder(known) else None

    def _current_upn(self, anchor: str) -> str | None:
        with self.state.transaction() as connection:
            return stored_upn(connection, self.state.connector, anchor)

    def _placeholder_upn(self, wanted: str) -> str:
        prefix, _at, suffix = wanted.rpartition("@")
        initial = self.state.domains.initial or suffix  # the tenant's domains, read once per run (domains.py)
        return f"{prefix}+{random.randint(1000, 9999)}@{initial}"

    def _record(self, anchor: str, attribute: str, wanted: str, placeholder: str | None) -> None:
        with self.state.transaction() as connection:
            self.state.store.upsert(
                connection,
                export_conflict,
                [
                    {
                        "connector": self.state.connector,
                        "anchor": anchor,
                        "attribute": attribute,
                        "wanted_value": wanted,
                        "placeholder": placeholder,
                        "detected_at": utcnow(),
                        "released_at": None,
                        "run_id": self.state.run_id,
                    }
                ],
                update=["wanted_value", "placeholder", "released_at", "run_id"],
            )
        log.warning("duplicate %s %r on %s: %s", attribute, wanted, anchor, placeholder or "value dropped")

    def _update_placeholder(self, anchor: str, placeholder: str) -> None:
        with self.state.transaction() as connection:
            connection.execute(
                sa.update(export_conflict)
                .where(
                    export_conflict.c.connector == self.state.connector,
                    export_conflict.c.anchor == anchor,
                    export_conflict.c.attribute == "userPrincipalName",
                )
                .values(placeholder=placeholder)
            )

    def release(self, connection: sa.Connection, anchor: str, changes: Mapping[str, list[Any]]) -> None:
        """A write of the wanted value went through: the conflict is resolved upstream."""
        upn, mail = changes.get("userPrincipalName"), changes.get("mail")
        # A placeholder is only ever a UPN: an address like sales_2024@ is the wanted value, written.
        released = (["userPrincipalName"] if upn and not is_placeholder(str(upn[0])) else []) + (
            ["mail"] if mail else []
        )
        if released:
            release_conflicts(connection, self.state.connector, [anchor], released)
