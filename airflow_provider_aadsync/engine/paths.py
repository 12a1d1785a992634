"""Where AADSync keeps local state: ``$AADSYNC_HOME`` (or ``~/.aadsync``), resolved here only.

The embedded store (``<home>/store/<instance>.sqlite``) and the dev kit's world (``<home>/dev``, fixtures) both
live under it, so one variable moves everything.
"""

from __future__ import annotations

import os
from pathlib import Path


def aadsync_home() -> Path:
    """Root of all local state: ``$AADSYNC_HOME`` or ``~/.aadsync``."""
    env = os.environ.get("AADSYNC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aadsync"
