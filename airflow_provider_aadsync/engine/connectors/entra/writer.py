"""Export to Entra ID through Microsoft Graph with the V2 endpoint's capabilities: pending exports → ``$batch`` calls.

The plan is what sync staged (``pending_export`` and ``pending_export_reference``). Writes go in phases, so nothing
refers to an object before it exists: user creates, group creates, updates, member and manager changes, deletes.
Every request travels in a ``$batch`` of up to 20; member adds are packed 20 references per request, so a
250,000-member group is 625 calls (the protocol minimum); a user's manager is one ``PUT`` (or ``DELETE``) of its
``manager/$ref``. Before each call its operations are marked ``sent`` and after it ``confirmed``
(applied to the connector space and removed from the plan) or ``failed``, each in its own transaction: a task
killed anywhere and retried re-sends only what is not confirmed, and reconciles what it had sent (an object created
before the kill is found and adopted; "already exists" on a member add and 404 on a member remove or a delete count
as done). Writes are paced to the tenant's write budget, so the export runs at the throttle cap instead of into
429s (which are still honoured).

Guards, as the product has them and more: the deletion, disable and member removal thresholds stop the export
before the first write (engine/runs/export_guards.py), staging mode writes nothing, 5,000 errors stop the run; duplicate
attribute resiliency gives a conflicting UPN a placeholder and drops a conflicting SMTP address, records the
conflict, and releases it when the conflict is gone.

The exporter is a small coordinator over one explicit pass state (state.py): planning.py reads the plan, phases.py
sends it, reconcile.py records each outcome and settles unknown ones, conflicts.py handles duplicate attributes;
graph.py holds what they share of Graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.entra.conflicts import Conflicts
from airflow_provider_aadsync.engine.connectors.entra.domains import TenantDomains
from airflow_provider_aadsync.engine.connectors.entra.graph import GraphWriter
from airflow_provider_aadsync.engine.connectors.entra.phases import Phases
from airflow_provider_aadsync.engine.connectors.entra.planning import ExportPlan, plan_counts
from airflow_provider_aadsync.engine.connectors.entra.reconcile import Reconciler
from airflow_provider_aadsync.engine.connectors.entra.settings import ExportSettings
from airflow_provider_aadsync.engine.connectors.entra.state import ExportPass
from airflow_provider_aadsync.engine.runs.export_run import ExportResult, open_work, run_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.store.fenced import fenced_writer

__all__ = ["EntraExporter", "ExportSettings", "plan_counts", "run_entra_export"]


def run_entra_export(
    store: Store,
    writer: GraphWriter,
    *,
    connector: str = "entra",
    settings: ExportSettings | None = None,
    lock_holder: str | None = None,
) -> ExportResult:
    """Export the pending plan of ``connector`` to Entra ID, recorded as a run."""
    settings = settings or ExportSettings()
    # The tenant's domains, read once per run (GET /domains) and only when a UPN is compared or written: the identity
    # guard compares a UPN as the export writes it (on the initial domain while its suffix is unverified).
    domains = TenantDomains(writer)

    def exporter(run_id: int) -> EntraExporter:
        built = EntraExporter(store, fenced_writer(writer, store), connector, run_id, settings)
        built.state.domains = domains
        return built

    return run_export(
        store,
        connector=connector,
        settings=settings,
        plan=lambda: plan_counts(store, connector),
        exporter=exporter,
        command="export-entra",
        lock_holder=lock_holder,
        upn_written=domains.accepted_upn,
    )


class EntraExporter:
    """Runs the phases of one export; every ``$batch`` is bracketed by state writes in the store."""

    def __init__(self, store: Store, writer: GraphWriter, connector: str, run_id: int, settings: ExportSettings):
        self.state = ExportPass(store, writer, connector, run_id, settings)
        #: The run's per-object errors (the same list as the pass state's), read by run_export.
        self.errors = self.state.errors
        #: What the run could not write, grouped (the pass state's), recorded with the run by run_export.
        self.notices = self.state.notices
        self.conflicts = Conflicts(self.state)
        self.reconciler = Reconciler(self.state, conflicts=self.conflicts)
        self.plan = ExportPlan(self.state, reconciler=self.reconciler)
        self.phases = Phases(self.state, reconciler=self.reconciler)

    def run(self) -> None:
        objects, references = open_work(self.state.store, self.state.connector)
        report = progress.current()
        # Deletes first, in calls of their own, so a UPN (or ImmutableId) they free is free for the creates and
        # updates that follow: Graph carries out the requests of a $batch without dependsOn in any order.
        self.state.phase = "object"
        with report.phase("object writes", objects):
            self.phases.execute(self.plan.object_operations("delete"))
            self.phases.execute(
                itertools.chain(
                    self.plan.creates("user"),
                    self.plan.creates("group"),
                    self.plan.object_operations("update"),
                )
            )
            self.plan.report_unsupported_creates()
        # Member and manager changes need the ids of the objects created above: Graph's JSON batching cannot hand one
        # request's result to another, so they travel in later calls.
        self.state.phase = "member"
        with report.phase("member changes", references, unit="references"):
            self.phases.execute(itertools.chain(self.plan.member_operations(), self.plan.manager_operations()))
        self.reconciler.forget_empty_updates()

    def final_counters(self, planned: Mapping[str, int]) -> dict[str, float]:
        """The plan's counters with what this run did: its calls against the minimum, throttling, pacing, errors."""
        now, start = self.state.writer.counters, self.state.start
        calls = now.get("batch_requests", 0) - start.get("batch_requests", 0)
        waits = now.get("retry_wait_seconds", 0.0) - start.get("retry_wait_seconds", 0.0)
        throttled = now.get("throttled", 0) - start.get("throttled", 0)
        result: dict[str, float] = {**planned, **self.state.counters}
        result["batch_calls"] = calls
        result["round_trips_vs_minimum"] = (
            round(calls / planned["batch_calls_minimum"], 3) if planned["batch_calls_minimum"] else 0.0
        )
        result["throttled_requests"] = throttled
        result["throttle_wait_seconds"] = round(waits, 2)
        result["pacing_wait_seconds"] = round(self.state.pacer.waited, 2)
        result["errors"] = len(self.state.errors)
        return result
