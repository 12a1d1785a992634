"""The progress reporter with a fake clock: lines at a steady interval, rate and ETA, a final line per phase, waits
told as they begin and summed."""

from __future__ import annotations

import contextvars
import logging

import pytest

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.progress import LogRenderer, Progress, duration, interval_from_env


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == progress.log.name]


def test_lines_come_at_the_interval_with_rate_and_eta_and_always_a_final_line(caplog, clock):
    caplog.set_level(logging.INFO)
    report = Progress("export to entra", interval=30, clock=clock)
    with report.phase("object writes", 1000):
        for _ in range(8):  # 10 s per 100 objects: a line at 30 s and at 60 s, none between
            clock.now += 10
            report.advance(100)
    assert lines(caplog) == [
        "export to entra: object writes started (1,000 objects)",
        "export to entra: object writes 300/1,000 objects (30%), 10.0/s, ETA 1m10s",
        "export to entra: object writes 600/1,000 objects (60%), 10.0/s, ETA 40 s",
        "export to entra: object writes done, 800/1,000 objects, 10.0/s, in 1m20s",
    ]


def test_waits_are_told_as_they_begin_and_summed_in_the_phase_lines(caplog, clock):
    caplog.set_level(logging.INFO)
    report = Progress("export to entra", interval=30, clock=clock)
    with report.phase("member changes", None, unit="references"):
        for _ in range(3):
            report.wait("throttling", 12, "Graph throttling (Retry-After)")
            clock.now += 12
        report.advance(40)
        for _ in range(20):  # short pacing pauses: the first is told, the rest only count
            report.wait("pacing", 0.5, "the tenant's write budget")
            clock.now += 0.5
    told = lines(caplog)
    assert told[1:4] == [
        "export to entra: waiting 12 s for Graph throttling (Retry-After), 1 wait so far",
        "export to entra: waiting 12 s for Graph throttling (Retry-After), 2 waits so far (24 s in all)",
        "export to entra: waiting 12 s for Graph throttling (Retry-After), 3 waits so far (36 s in all)",
    ]
    assert told[4] == (  # the interval passed
        "export to entra: member changes 40 references, 1.1/s, running 36 s, waited 36 s for throttling (3 waits)"
    )
    assert told[5] == "export to entra: waiting 0.50 s for the tenant's write budget, 1 wait so far"
    assert told[-1] == (
        "export to entra: member changes done, 40 references, 0.9/s, in 46 s, "
        "waited 36 s for throttling (3 waits), 10 s for pacing (20 waits)"
    )
    assert report.waits.seconds == {"throttling": 36, "pacing": 10}


def test_an_estimated_total_and_a_stopped_phase(caplog, clock):
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError), progress.track("full import of ad", interval=30, clock=clock) as report:
        report.start_phase("reading", 500, estimated=True)
        clock.now += 5
        report.advance(50)
        raise RuntimeError("the server went away")
    assert lines(caplog) == [
        "full import of ad: reading started (~500 objects)",
        "full import of ad: reading stopped, 50/~500 objects, 10.0/s, in 5.0 s",
    ]


def test_current_is_the_tracked_task_and_outside_one_only_waits_are_told(caplog):
    caplog.set_level(logging.INFO)
    with progress.track("delta sync of ad") as report:
        assert progress.current() is report
    idle = contextvars.Context().run(progress.current)  # a fresh context: no waits told in it before
    assert idle is not report
    idle.start_phase("nothing to show", 10)
    idle.advance(5)
    idle.wait("lock", 6, "the run lock")
    assert lines(caplog)[-1] == "waiting 6.0 s for the run lock, 1 wait so far"
    assert "nothing to show" not in " ".join(lines(caplog))


def test_a_renderer_set_for_a_block_shows_every_task_started_in_it(clock):
    class Recorder(LogRenderer):
        def __init__(self) -> None:
            self.events: list[str] = []

        def started(self, phase):
            self.events.append(f"start {phase.name}")

        def advanced(self, phase, now):
            self.events.append(f"{phase.done}")

        def report(self, phase, now, *, final):
            self.events.append("final" if final else "line")

    recorder = Recorder()
    with progress.rendering(recorder), progress.track("export to ad", clock=clock, interval=30) as report:
        with report.phase("object writes", 2):
            report.advance()
            report.advance()
    assert recorder.events == ["start object writes", "1", "2", "final"]


@pytest.mark.parametrize(("value", "expected"), [("", 30.0), ("5", 5.0), ("0.5", 0.5), ("0", 30.0), ("soon", 30.0)])
def test_the_interval_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(progress.INTERVAL_ENV, value)
    assert interval_from_env() == expected


def test_durations_are_short():
    assert [duration(s) for s in (0.04, 3.25, 42, 185, 7440)] == ["0.04 s", "3.2 s", "42 s", "3m05s", "2h04m"]
