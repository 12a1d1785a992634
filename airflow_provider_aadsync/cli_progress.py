"""How the CLI shows the progress of long work (engine/progress.py): a rich progress bar on a terminal, the same
plain log lines as an Airflow task log otherwise (piped, redirected, under Airflow).

The bar goes to stderr, like the log, so stdout keeps only a command's output (``--json`` stays parseable); log
records go through rich's handler while the bar is shown, so they print above it instead of through it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.progress import Phase
from airflow_provider_aadsync.engine.secrets import ScrubbingFilter

#: Set in every Airflow task's environment: a CLI run by a task logs lines, never a bar.
_AIRFLOW_TASK_ENV = "AIRFLOW_CTX_TASK_ID"


class RichRenderer:
    """Each phase as a bar (done/total, percent, rate, elapsed, ETA, waits); wait lines print above the bars."""

    def __init__(self, console: Console):
        self.console = console
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[waits]}"),
            console=console,
        )
        self._bar: TaskID | None = None
        self._shown = False

    def started(self, phase: Phase) -> None:
        if not self._shown:
            self.bars.start()
            self._shown = True
        self._bar = self.bars.add_task(f"{phase.task}: {phase.name}", total=phase.total, rate="", waits="")

    def advanced(self, phase: Phase, now: float) -> None:
        if self._bar is not None:
            self.bars.update(self._bar, completed=phase.done, total=phase.total, rate=f"{phase.rate(now):,.1f}/s")

    def report(self, phase: Phase, now: float, *, final: bool) -> None:
        if self._bar is None:
            return
        total = phase.total if not final or phase.total is not None else phase.done
        self.bars.update(
            self._bar, completed=phase.done, total=total, rate=f"{phase.rate(now):,.1f}/s", waits=phase.waits.describe()
        )
        if final:
            self.bars.stop_task(self._bar)
            self._bar = None

    def waiting(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def close(self) -> None:
        if self._shown:
            self.bars.stop()
            self._shown = False


def wants_bar(console: Console) -> bool:
    """A bar only on a terminal, and never inside an Airflow task."""
    return console.is_terminal and not os.environ.get(_AIRFLOW_TASK_ENV)


@contextmanager
def cli_progress(console: Console | None = None) -> Iterator[progress.Renderer | None]:
    """For one CLI command: on a terminal, bars and log records through rich; otherwise plain log lines."""
    console = console or Console(stderr=True)
    if not wants_bar(console):
        yield None
        return
    renderer = RichRenderer(console)
    root = logging.getLogger()
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(ScrubbingFilter())  # it replaces basicConfig's handler, and with it that handler's filter
    # only the handlers writing to the terminal (basicConfig's); a log file keeps its handler
    replaced = [h for h in root.handlers if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.stdout)]
    for old in replaced:
        root.removeHandler(old)
    root.addHandler(handler)
    try:
        with progress.rendering(renderer):
            yield renderer
    finally:
        renderer.close()
        root.removeHandler(handler)
        for old in replaced:
            root.addHandler(old)
