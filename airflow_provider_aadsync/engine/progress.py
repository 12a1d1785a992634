"""Progress of long work, so that the task log of a two-hour export is never silent.

A run opens a :func:`track` ("export to entra"); its code opens phases ("object writes", 5,000 objects) and counts
what it finished with cheap increments (:meth:`Progress.advance`, once per ``$batch``, LDAP write or page, never per
value). Every ``interval`` seconds (setting ``AADSYNC_PROGRESS_INTERVAL``, default 30 s) and once at the end of each
phase, the renderer shows where the work stands: the phase, done/total, the rate, an ETA and the time spent waiting.

Waits are told as they begin (:meth:`Progress.wait`): Graph throttling (``Retry-After``), the pacing that keeps writes
within the tenant's budget, the instance lock another run holds. Code that waits (the Entra hook, the lock) reaches
the run's progress through :func:`current`, so nothing has to be passed down; outside a run, wait lines are logged
all the same.

The default renderer writes log lines through :mod:`logging` (the Airflow task log, the CLI's stderr); the CLI puts a
progress bar on a terminal instead (:func:`rendering`). No secret ever reaches a progress line: they carry names of
phases, counts and durations only.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: The environment variable that sets the interval between two progress lines, in seconds.
INTERVAL_ENV = "AADSYNC_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
#: A wait at least this long is always told; shorter ones (pacing's many small pauses) once per interval.
LONG_WAIT_SECONDS = 5.0

#: What a kind of wait is called in a progress line.
WAIT_NAMES = {"throttling": "throttling", "pacing": "pacing", "retry": "retries", "lock": "the run lock"}


def interval_from_env() -> float:
    """The interval from ``AADSYNC_PROGRESS_INTERVAL`` (seconds, > 0), or the default; a bad value says so."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        log.warning("%s=%r is not a number of seconds above 0; using %g s", INTERVAL_ENV, text, DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    return value


def duration(seconds: float) -> str:
    """``0.25 s``, ``42 s``, ``3m05s``, ``2h04m``: short enough for a log line."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds:.2f} s"  # a retry's short back-off: not "0.0 s"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class Waits:
    """Time spent waiting, by kind (throttling, pacing, retry, lock), and how many waits."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def describe(self) -> str:
        """``waited 36 s for throttling (3 waits), 12 s for pacing (40 waits)``, or empty."""
        parts = [
            f"{duration(self.seconds[kind])} for {WAIT_NAMES.get(kind, kind)} ({self.counts[kind]} "
            f"wait{'s' if self.counts[kind] != 1 else ''})"
            for kind in self.seconds
        ]
        return "waited " + ", ".join(parts) if parts else ""


@dataclass
class Phase:
    """One phase of a task as a renderer sees it."""

    task: str
    name: str
    total: int | None
    unit: str
    started: float
    #: The total is an estimate (a full import: what the connector space held before).
    estimated: bool = False
    done: int = 0
    waits: Waits = field(default_factory=Waits)
    #: The phase ended by an error (its final line says "stopped" instead of "done").
    stopped: bool = False

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate so far; None without a total or before anything is done."""
        rate = self.rate(now)
        if not self.total or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def describe(self, now: float, *, final: bool = False) -> str:
        """The phase as one line: ``export to entra: object writes 1,200/5,000 objects (24%), 40.0/s, ETA 1m35s``."""
        done = f"{self.done:,}"
        if self.total is not None:
            total = f"{'~' if self.estimated else ''}{self.total:,}"
            done += f"/{total} {self.unit}"
            if self.total and not final:
                done += f" ({min(self.done / self.total, 1.0):.0%})"
        else:
            done += f" {self.unit}"
        end = (" stopped," if self.stopped else " done,") if final else ""
        parts = [f"{self.task}: {self.name}{end} {done}", f"{self.rate(now):,.1f}/s"]
        if final:
            parts.append(f"in {duration(now - self.started)}")
        else:
            eta = self.eta(now)
            parts.append(f"ETA {duration(eta)}" if eta is not None else f"running {duration(now - self.started)}")
        waits = self.waits.describe()
        if waits:
            parts.append(waits)
        return ", ".join(parts)


class Renderer(Protocol):
    """Shows progress: log lines (:class:`LogRenderer`) or a terminal bar (the CLI's)."""

    def started(self, phase: Phase) -> None: ...

    def advanced(self, phase: Phase, now: float) -> None:
        """After every increment: must be cheap (a bar updates a number; the log renderer does nothing)."""
        ...

    def report(self, phase: Phase, now: float, *, final: bool) -> None:
        """Every interval and at the end of the phase."""
        ...

    def waiting(self, message: str) -> None:
        """A wait begins (already rate-limited by the reporter)."""
        ...


class LogRenderer:
    """Progress as plain log lines through ``logging`` (the Airflow task log; the CLI when not on a terminal)."""

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or log

    def started(self, phase: Phase) -> None:
        total = f" ({'~' if phase.estimated else ''}{phase.total:,} {phase.unit})" if phase.total is not None else ""
        self.logger.info("%s: %s started%s", phase.task, phase.name, total)

    def advanced(self, phase: Phase, now: float) -> None:
        pass

    def report(self, phase: Phase, now: float, *, final: bool) -> None:
        self.logger.info("%s", phase.describe(now, final=final))

    def waiting(self, message: str) -> None:
        self.logger.info("%s", message)


_renderer: contextvars.ContextVar[Renderer | None] = contextvars.ContextVar("aadsync_progress_renderer", default=None)
_current: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("aadsync_progress", default=None)


@contextmanager
def rendering(renderer: Renderer) -> Iterator[Renderer]:
    """Show the progress of every task started inside this block with ``renderer`` (the CLI's terminal bar)."""
    token = _renderer.set(renderer)
    try:
        yield renderer
    finally:
        _renderer.reset(token)


class Progress:
    """The progress of one task: its phases, counts and waits, shown at a steady interval.

    Increments cost a clock read and a comparison; a line is written only when the interval has passed.
    """

    def __init__(
        self,
        task: str,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        renderer: Renderer | None = None,
        phases: bool = True,
    ):
        self.task = task
        #: False for the progress outside any task: it tells waits, and its phases are not shown.
        self.phases = phases
        self.interval = interval if interval is not None else interval_from_env()
        self.clock = clock
        self.renderer = renderer or _renderer.get() or LogRenderer()
        self.phase_now: Phase | None = None
        #: Waits of the whole task (the phases' waits are their share of these).
        self.waits = Waits()
        self._next_report = 0.0
        self._last_wait_line: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------------- phases
    @contextmanager
    def phase(
        self, name: str, total: int | None = None, *, unit: str = "objects", estimated: bool = False
    ) -> Iterator[Phase | None]:
        """Run a phase: a line when it starts, lines every interval, and always a final line."""
        self.start_phase(name, total, unit=unit, estimated=estimated)
        try:
            yield self.phase_now
        except BaseException:
            self.end_phase(stopped=True)
            raise
        self.end_phase()

    def start_phase(
        self, name: str, total: int | None = None, *, unit: str = "objects", estimated: bool = False
    ) -> None:
        """Start a phase (ending the one before); ``estimated``: the total is a guess, shown with ``~``."""
        if self.phase_now is not None:
            self.end_phase()
        if not self.phases:
            return
        now = self.clock()
        self.phase_now = Phase(self.task, name, total, unit, now, estimated=estimated)
        self._next_report = now + self.interval
        self.renderer.started(self.phase_now)

    def end_phase(self, *, stopped: bool = False) -> None:
        """The phase's final line (done, rate, duration, waits); ``stopped``: it ended by an error."""
        if self.phase_now is None:
            return
        self.phase_now.stopped = stopped
        self.renderer.report(self.phase_now, self.clock(), final=True)
        self.phase_now = None

    def add_total(self, more: int) -> None:
        """The phase found more work than it knew of when it started (a retry joins a later call)."""
        if self.phase_now is not None and self.phase_now.total is not None:
            self.phase_now.total += more

    def advance(self, count: int = 1) -> None:
        """``count`` more units done (once per call, batch or page)."""
        phase = self.phase_now
        if phase is None:
            return
        phase.done += count
        now = self.clock()
        self.renderer.advanced(phase, now)
        if now >= self._next_report:
            self._next_report = now + self.interval
            self.renderer.report(phase, now, final=False)

    def tick(self) -> None:
        """A report when the interval has passed, without counting anything (long work between increments)."""
        self.advance(0)

    # ------------------------------------------------------------------------------------------------ waits
    def wait(self, kind: str, seconds: float, reason: str) -> None:
        """A wait of ``seconds`` begins (before sleeping): counted, and told when it is long or the first for a
        while. ``kind``: throttling, pacing, retry, lock; ``reason`` what we wait for ("Graph throttling
        (Retry-After)"); never a secret."""
        self.waits.add(kind, seconds)
        if self.phase_now is not None:
            self.phase_now.waits.add(kind, seconds)
        now = self.clock()
        last = self._last_wait_line.get(kind)
        if seconds >= LONG_WAIT_SECONDS or last is None or now - last >= self.interval:
            self._last_wait_line[kind] = now
            count = self.waits.counts[kind]
            so_far = f"{count} wait{'s' if count != 1 else ''} so far"
            if count > 1:
                so_far += f" ({duration(self.waits.seconds[kind])} in all)"
            where = f"{self.task}: " if self.task else ""
            self.renderer.waiting(f"{where}waiting {duration(seconds)} for {reason}, {so_far}")
        self.tick()


@contextmanager
def track(task: str, **options: Any) -> Iterator[Progress]:
    """Make a task's progress the current one (what :func:`current` returns) for the block."""
    progress = Progress(task, **options)
    token = _current.set(progress)
    try:
        yield progress
    except BaseException:
        progress.end_phase(stopped=True)
        raise
    finally:
        progress.end_phase()
        _current.reset(token)


def current() -> Progress:
    """The progress of the task running now, or one that only tells waits (outside any task)."""
    progress = _current.get()
    if progress is None:  # kept for this context, so that its waits add up ("3 waits so far")
        progress = Progress("", phases=False)
        _current.set(progress)
    return progress
