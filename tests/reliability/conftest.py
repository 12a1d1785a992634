"""The reliability suite: kills, faults, guards, bad input, secrets and concurrency against the real servers.

It reuses the integration fixtures (Samba AD DC, Graph emulator, PostgreSQL). ``--soak`` selects the long profile:
more kill points and longer fault storms; without it each case runs its short profile, which the README's test
command (and so CI) runs.
"""

from __future__ import annotations

import pytest

from tests.support.servers import *  # noqa: F403  (the shared server fixtures)


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True when the long reliability profile was asked for (``pytest tests/reliability --soak``)."""
    return bool(request.config.getoption("--soak"))
