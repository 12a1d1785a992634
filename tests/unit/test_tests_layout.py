"""Layout guard rails for the tests themselves (issue 14): they mirror the source, and share code only through
tests/support.

A test module that imports another test module ties two files together that look independent; helpers that more
than one module uses live in ``tests.support``. The exception: the PostgreSQL reruns import whole unit test modules
so pytest collects those tests again with the ``store`` fixture on PostgreSQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aadsync_devkit
import airflow_provider_aadsync

TESTS = Path(__file__).resolve().parents[1]
ENGINE = Path(airflow_provider_aadsync.__file__).parent / "engine"
DEVKIT = Path(aadsync_devkit.__file__).parent
#: Modules that import unit test modules to collect their tests again on PostgreSQL.
RERUNS = {
    "integration/test_store_postgres.py",
    "integration/test_derived_state_postgres.py",
    "integration/test_sync_features_postgres.py",
    "integration/test_sync_postgres.py",
    "integration/test_import_failures_postgres.py",
    "integration/test_connector_spaces_postgres.py",
}


def _python_files() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement names (at any depth: imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "tests")
    return names


def test_every_folder_of_tests_is_a_package():
    """Test modules share basenames across folders (test_writer.py, test_reader.py): each folder needs its
    ``__init__.py`` so pytest imports them under distinct names."""
    folders = {path.parent for path in _python_files() if path.name.startswith(("test_", "conftest"))}
    assert sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").exists()) == []


def test_test_modules_import_only_tests_support():
    offenders = {}
    for path in _python_files():
        key = path.relative_to(TESTS).as_posix()
        if key in RERUNS:
            continue
        others = sorted(
            name
            for name in _imported_modules(path)
            if name.split(".")[0] == "tests" and name != "tests" and not name.startswith("tests.support")
        )
        if others:
            offenders[key] = others
    assert offenders == {}, "move what is shared to tests/support"


@pytest.mark.parametrize(("tests", "source"), [("unit/engine", ENGINE), ("unit/devkit", DEVKIT)])
def test_unit_tests_mirror_the_packages(tests, source):
    """tests/unit/engine/<path>/ exists only where airflow_provider_aadsync/engine/<path>/ is a package, and
    tests/unit/devkit/<path>/ only where aadsync_devkit/<path>/ is."""
    root = TESTS / tests
    folders = {path.parent.relative_to(root) for path in root.rglob("test_*.py")}
    missing = sorted(str(folder) for folder in folders if not (source / folder / "__init__.py").exists())
    assert missing == [], "a test folder with no package of that name"
