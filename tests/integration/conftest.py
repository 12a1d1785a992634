"""The integration suite's fixtures: a real Samba AD DC, PostgreSQL and the Graph emulator, and hooks pointed at
them. They live in tests/support/servers.py, which the reliability suite loads the same way."""

from __future__ import annotations

from tests.support.servers import *  # noqa: F403  (the shared server fixtures)
