"""Options for the whole test tree (pytest reads ``pytest_addoption`` only from the root conftest)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the reliability suite's long profile (more kill points, longer fault storms)",
    )
