"""How one Entra export run behaves (its settings, filled by the operator or the CLI) and how it keeps its writes
within the tenant's write budget (the pacer)."""

from __future__ import annotations

import time
from collections import deque

from pydantic import Field

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.entra.graph import UNKNOWN_OUTCOME_LIMIT
from airflow_provider_aadsync.engine.runs.defaults import WRITE_BUDGET, WRITE_WINDOW_SECONDS
from airflow_provider_aadsync.engine.runs.export_guards import GuardSettings


class ExportSettings(GuardSettings):
    """How one Entra ID export run behaves; the operator fills it from task parameters."""

    #: The tenant's write budget for this app: requests per window (Graph: 3,000 per 150 s per app and tenant).
    write_budget: int = Field(WRITE_BUDGET, ge=1)
    write_window_seconds: float = Field(WRITE_WINDOW_SECONDS, gt=0)
    #: Before looking up creates an interrupted run had sent: Graph may still be processing the cut-off call.
    resend_settle_seconds: float = Field(5.0, ge=0)
    #: ``$batch`` calls in a row without a readable answer after which the export stops (the next run reconciles
    #: what they held) instead of resending into a connection that keeps failing.
    unknown_outcome_limit: int = Field(UNKNOWN_OUTCOME_LIMIT, ge=1)
    #: Resume adopts an object found by its key only when Graph created it after the create was first sent; this
    #: much earlier still counts, for the difference between our clock and Graph's (createdDateTime has seconds).
    adoption_clock_skew_seconds: float = Field(120.0, ge=0)


class WritePacer:
    """Keeps writes within the budget of a sliding window, sleeping before a call that would exceed it.

    A call's writes count from the moment its answer arrived (``spent``), never earlier than Graph charged them,
    so this window always frees up after Graph's does: paced calls are not throttled. Each send of a write counts,
    as Graph charges it: a call sent again after a dropped answer or a 504 counts twice.
    """

    def __init__(self, budget: int, window: float, *, clock=time.monotonic, sleep=time.sleep):
        self.budget = budget
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.sent: deque[tuple[float, int]] = deque()
        self.in_window = 0
        self.waited = 0.0

    def acquire(self, writes: int) -> None:
        """Wait until ``writes`` more fit in the window."""
        writes = min(writes, self.budget)
        while True:
            now = self.clock()
            while self.sent and self.sent[0][0] <= now - self.window:
                self.in_window -= self.sent.popleft()[1]
            if self.in_window + writes <= self.budget:
                return
            pause = self.sent[0][0] + self.window - now + 0.001
            self.waited += pause
            progress.current().wait(
                "pacing", pause, f"the tenant's write budget ({self.budget:,} writes per {self.window:g} s, pacing)"
            )
            self.sleep(pause)

    def spent(self, writes: int) -> None:
        """Charge ``writes`` to the window now (after the call's answer)."""
        self.sent.append((self.clock(), writes))
        self.in_window += writes
