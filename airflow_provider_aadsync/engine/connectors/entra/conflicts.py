"""Duplicate attribute resiliency of the Entra export: a UPN that another object holds gets a placeholder, a
conflicting SMTP address is dropped, the conflict is recorded (``export_conflict``) and the write retried; when a
later write of the wanted value goes through, the conflict is released."""

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
)
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass, Operation, stored_upn
from airflow_provider_aadsync.engine.store import export_conflict, pending_export, utcnow

log = logging.getLogger(__name__)


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
            known = self._known_placeholder(operation.anchor, wanted) if operation.kind == "update" else None
            if known is not None and self._current_upn(operation.anchor) == known:
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
            connection.execute(
                sa.update(export_conflict)
                .where(
                    export_conflict.c.connector == self.state.connector,
                    export_conflict.c.anchor == anchor,
                    export_conflict.c.attribute.in_(released),
                    export_conflict.c.released_at.is_(None),
                )
                .values(released_at=utcnow())
            )
