"""Layout guard rails: the sync engine and the Graph emulator stay cut into modules of a readable size (issue 14).

Counted with ``ast`` (a class from its ``class`` line, decorators included, to its last line; a module by its lines),
so comments and docstrings count too: the limit is about what a reader has to hold, not about statements. Other
packages join this list as their own cut lands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aadsync_devkit
import airflow_provider_aadsync

PACKAGE = Path(airflow_provider_aadsync.__file__).parent
DEVKIT = Path(aadsync_devkit.__file__).parent
#: Packages held to the limits below (relative to the provider package).
CHECKED = ["engine/sync"]
#: Dev-kit packages held to the same limits (relative to the dev kit package).
CHECKED_DEVKIT = ["graph_emulator"]
MAX_CLASS_LINES = 500
MAX_MODULE_LINES = 600


def _modules() -> list[Path]:
    return sorted(
        [path for folder in CHECKED for path in (PACKAGE / folder).rglob("*.py")]
        + [path for folder in CHECKED_DEVKIT for path in (DEVKIT / folder).rglob("*.py")]
    )


def _name(path: Path) -> str:
    root = PACKAGE if path.is_relative_to(PACKAGE) else DEVKIT.parent
    return str(path.relative_to(root))


def test_checked_packages_have_modules():
    assert len(_modules()) > 5


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_module_or_class_too_long(path: Path):
    source = path.read_text(encoding="utf-8")
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines (limit {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ClassDef):
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            size = (node.end_lineno or node.lineno) - start + 1
            assert size <= MAX_CLASS_LINES, (
                f"class {node.name} in {_name(path)} has {size} lines (limit {MAX_CLASS_LINES}): "
                "cut it into collaborators"
            )
