"""What a benchmark result must carry besides its figures: the machine it ran on, and the peak memory of each Airflow
task process of a deployment that runs on this machine.

Why the task memory is sampled from outside: a Celery worker runs each task in a process of its own (the task
supervisor forks it, and Airflow's task runner titles it ``airflow worker -- <task instance id>``), and neither
Airflow nor the provider records that process's memory. Its kernel high-water mark (``VmHWM`` in
``/proc/<pid>/status``) only grows, so the last value read before the process ends is its peak, except for growth
in the last sampling interval of its life.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

#: The title Airflow's task runner gives the process that runs a task (airflow.sdk.execution_time.task_runner).
TASK_TITLE = b"airflow worker -- "


def _first_line(command: list[str]) -> str | None:
    if not shutil.which(command[0]) and not Path(command[0]).exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else None
    return None


def _version(distribution: str) -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(distribution)
    return None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_facts(repository: Path, postgres_bin: Path | None = None) -> dict[str, Any]:
    """Cores, memory, CPU model, load, and the versions of what the measured deployment runs."""
    git = _first_line(["git", "-C", str(repository), "rev-parse", "HEAD"])
    return {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "cpu_model": _cpu_model(),
        "load_average": list(os.getloadavg()),
        "kernel": platform.release(),
        "versions": {
            "python": platform.python_version(),
            "apache-airflow": _version("apache-airflow"),
            "apache-airflow-providers-celery": _version("apache-airflow-providers-celery"),
            "airflow-provider-aadsync": _version("airflow-provider-aadsync"),
            "ldap3": _version("ldap3"),
            "SQLAlchemy": _version("SQLAlchemy"),
            "psycopg2": _version("psycopg2-binary") or _version("psycopg2"),
            "postgresql": _first_line([str(postgres_bin / "postgres"), "--version"]) if postgres_bin else None,
            "samba": _first_line(["samba", "--version"]),
            "redis": _first_line(["redis-server", "--version"]),
            "repository_commit": git,
        },
    }


class TaskMemorySampler:
    """Every ``interval`` seconds, the ``VmHWM`` of each process titled as an Airflow task runner, by task instance
    id: ``peaks[ti_id]`` is the largest value read (bytes). A background thread; :meth:`stop` ends it."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="task-memory-sampler", daemon=True)

    def start(self) -> TaskMemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                title = Path(entry.path, "cmdline").read_bytes()
                if not title.startswith(TASK_TITLE):
                    continue
                ti_id = title[len(TASK_TITLE) :].split(b"\0", 1)[0].strip().decode()
                status = Path(entry.path, "status").read_text()
            except (OSError, UnicodeDecodeError):
                continue  # ended between the listing and the read
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    if peak > self.peaks.get(ti_id, 0):
                        self.peaks[ti_id] = peak
                    break
