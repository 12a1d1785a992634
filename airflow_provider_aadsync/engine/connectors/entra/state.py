"""The shared state of one Entra export pass: what every part of the export (planning, request phases,
reconciliation, conflicts) reads and writes, made explicit in one object, with the writes they all make through it
(the open transaction of a call, per-object failures and errors)."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.entra.domains import TenantDomains
from airflow_provider_aadsync.engine.connectors.entra.graph import GraphAnswer, GraphWriter, graph_error
from airflow_provider_aadsync.engine.connectors.entra.schema import MANAGER, MEMBERS
from airflow_provider_aadsync.engine.connectors.entra.settings import ExportSettings, WritePacer
from airflow_provider_aadsync.engine.runs.export_run import ErrorLimitReached
from airflow_provider_aadsync.engine.runs.notices import NOTICE_EXAMPLES, Notices
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    failure_text,
    link,
    pending_export,
    pending_export_reference,
    utcnow,
)


@dataclass
class Operation:
    """One Graph request's worth of the plan, and how to record its outcome."""

    kind: str  # create | update | delete | member-add | member-add-one | member-remove | manager-set | manager-remove
    anchor: str
    object_type: str
    dn: str
    changes: dict[str, list[Any]] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    resend: bool = False  # it was sent by an earlier, interrupted attempt
    unanswered: int = 0  # calls of this run that carried it and whose answer left it out
    #: manager-set: the managers the store holds for the user that the new one replaces (confirmed removed with it).
    replaced: list[str] = field(default_factory=list)
    #: create: the export run that last held it for a soft match (conflicts.SOFT_MATCH_PENDING), else None.
    held_in: int | None = None

    @property
    def reference_attribute(self) -> str | None:
        """The connector-space reference attribute this operation changes (None: an object write)."""
        if self.kind.startswith("member"):
            return MEMBERS
        if self.kind.startswith("manager"):
            return MANAGER
        return None

    @property
    def reference_targets(self) -> list[str]:
        """Every pending reference row this operation settles (a manager set also settles the replaced ones)."""
        return [*self.targets, *self.replaced]


class ExportPass:
    """Inputs, counters, errors and the working sets of one export run of one connector."""

    def __init__(self, store: Store, writer: GraphWriter, connector: str, run_id: int, settings: ExportSettings):
        self.store = store
        self.writer = writer
        self.connector = connector
        self.run_id = run_id
        self.settings = settings
        self.pacer = WritePacer(settings.write_budget, settings.write_window_seconds)
        self.counters: Counter[str] = Counter()
        #: Per-object errors of the run (recorded by the run at its end); the error limit stops the run.
        self.errors: list[dict[str, Any]] = []
        #: The writer's counters when the run started: the run reports its own calls, retries and throttling.
        self.start = dict(writer.counters)
        #: Operations to send again (a conflict resolved, a member pack split, a cut-off call) in the next calls.
        self.retry: list[Operation] = []
        #: object | member: which phase the calls being sent belong to (counted per phase).
        self.phase = "object"
        #: The open transaction of the call whose outcomes are being recorded (None between calls).
        self.connection: sa.Connection | None = None
        #: The tenant's domains, read once per run when a UPN is first written (the initial domain, verified ones).
        self.domains = TenantDomains(writer)
        #: What the run could not write and does not count as an error, grouped (recorded with the run).
        self.notices = Notices()

    def take_retries(self) -> list[Operation]:
        retries, self.retry = self.retry, []
        return retries

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """The open transaction of the call being recorded, or a new one: a call's outcomes commit together."""
        if self.connection is not None:
            yield self.connection
            return
        with self.store.transaction() as connection:
            yield connection

    def row(self, anchor: str) -> sa.ColumnElement[bool]:
        return sa.and_(pending_export.c.connector == self.connector, pending_export.c.anchor == anchor)

    def references(self, anchor: str, targets: Sequence[str], attribute: str = MEMBERS) -> sa.ColumnElement[bool]:
        return sa.and_(
            pending_export_reference.c.connector == self.connector,
            pending_export_reference.c.anchor == anchor,
            pending_export_reference.c.attribute == attribute,
            pending_export_reference.c.target_anchor.in_(list(targets)),
        )

    # ------------------------------------------------------------------------------------ failures and errors
    def error(self, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        source = self.source_dn(anchor) if anchor else None
        self.errors.append({"anchor": anchor, "dn": source or dn, "code": code, "message": message[:2000]})
        if len(self.errors) >= self.settings.error_limit:
            raise ErrorLimitReached

    def notice(
        self, code: str, subject: str, message: str, anchor: str, dn: str | None, limit: int = NOTICE_EXAMPLES, **more
    ) -> None:
        """Count one object under a grouped notice; the first few are kept as examples, named by their AD DN."""
        example: dict[str, Any] = {}
        if self.notices.wants_example(code, subject, limit=limit):
            example = {"dn": self.source_dn(anchor) or dn, "anchor": anchor, **more}
        self.notices.add(code, subject, message, example, limit=limit)

    def source_dn(self, anchor: str) -> str | None:
        """The DN of the object this export comes from (AD), so an error names what people know."""
        target = link.alias("target_link")
        source = link.alias("source_link")
        query = (
            sa.select(cs_object.c.dn)
            .select_from(target)
            .join(source, sa.and_(source.c.mv_id == target.c.mv_id, source.c.connector != self.connector))
            .join(
                cs_object, sa.and_(cs_object.c.connector == source.c.connector, cs_object.c.anchor == source.c.anchor)
            )
            .where(target.c.connector == self.connector, target.c.anchor == anchor, source.c.link_type == "projection")
        )
        with self.store.engine.connect() as connection:
            return connection.execute(query.limit(1)).scalar()

    def fail(self, operation: Operation, answer: GraphAnswer) -> None:
        code, message = graph_error(answer)
        self.fail_rows([operation.anchor], code, f"{operation.kind} of {operation.dn}: {message}", dn=operation.dn)

    def fail_rows(self, anchors: Sequence[str], code: str, message: str, *, dn: str | None = None) -> None:
        with self.transaction() as connection:
            connection.execute(
                sa.update(pending_export)
                .where(pending_export.c.connector == self.connector, pending_export.c.anchor.in_(list(anchors)))
                .values(state="failed", last_error=failure_text(code, message), updated_at=utcnow())
            )
        for anchor in anchors:
            self.error(anchor, dn, code, message)

    def fail_member(self, operation: Operation, answer: GraphAnswer) -> None:
        code, message = graph_error(answer)
        attribute = operation.reference_attribute or MEMBERS
        self.fail_references(
            [], code, message, group=operation.anchor, targets=operation.reference_targets, attribute=attribute
        )

    def fail_references(
        self,
        unresolved_targets: Sequence[str],
        code: str,
        message: str,
        *,
        group: str | None = None,
        targets: Sequence[str] = (),
        attribute: str = MEMBERS,
    ) -> None:
        with self.transaction() as connection:
            if group is not None:
                connection.execute(
                    sa.update(pending_export_reference)
                    .where(self.references(group, targets, attribute))
                    .values(state="failed")
                )
                what = "manager change" if attribute == MANAGER else f"member change of {len(targets)} members"
                self.error(group, None, code, f"{what}: {message}")
            for chunk in chunks(list(unresolved_targets)):
                connection.execute(
                    sa.update(pending_export_reference)
                    .where(
                        pending_export_reference.c.connector == self.connector,
                        pending_export_reference.c.target_anchor.in_(chunk),
                    )
                    .values(state="failed")
                )
        if unresolved_targets:
            self.counters["member_changes_unresolved"] += len(unresolved_targets)


def stored_upn(connection: sa.Connection, connector: str, anchor: str) -> str | None:
    """The UPN the connector space holds for ``anchor`` (what the tenant has, as last exported or imported)."""
    attrs = connection.execute(
        sa.select(cs_object.c.attrs).where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
    ).scalar()
    values = json.loads(attrs).get("userPrincipalName") if attrs else None
    return str(values[0]) if values else None
