"""A benchmark stopped by a signal still stops what it started: its ``finally`` blocks run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
STOPPED_BY = """
import os, signal, sys, time
from aadsync_devkit.bench.runner import exit_on_signals
exit_on_signals()
try:
    print("started", flush=True)
    time.sleep(30)
finally:
    print("servers stopped", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_benchmark_through_its_finally_blocks(signum):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "devkit")])}
    # SIGINT ignored, as a script's background job inherits it: the benchmark must still stop on it
    child = subprocess.Popen(
        [sys.executable, "-c", STOPPED_BY],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    child.send_signal(signum)
    out, _ = child.communicate(timeout=20)
    assert "servers stopped" in out
    assert child.returncode == 128 + signum
