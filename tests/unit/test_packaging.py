"""Two distributions in one repository: the product (airflow-provider-aadsync) never imports the dev kit
(aadsync-devkit, devkit/), its wheel carries no emulator, dev world or benchmark, and each distribution declares
every third-party package it imports."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "airflow_provider_aadsync"
DEVKIT = REPO / "devkit"

#: Import name -> distribution name, where they differ.
_DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "jwt": "pyjwt",
    "airflow": "apache-airflow",
    "psycopg2": "psycopg2-binary",
    "ldap": "python-ldap",
}


def _imports(package: Path) -> set[str]:
    """Top-level names of every absolute import in the package's modules (lazy ones inside functions too)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _declared(pyproject: Path) -> set[str]:
    """Distribution names (normalised) of the dependencies and optional dependencies of a pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project.get("optional-dependencies", {}).values() for r in extra),
    ]
    return {
        re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-") for requirement in requirements
    }


def _third_party(names: set[str], own: set[str]) -> set[str]:
    return {_DISTRIBUTION_OF.get(name, name.lower()) for name in names if name not in sys.stdlib_module_names} - own


def test_the_product_never_imports_the_dev_kit() -> None:
    importers = [
        str(path.relative_to(REPO)) for path in PRODUCT.rglob("*.py") if "aadsync_devkit" in path.read_text("utf-8")
    ]
    assert importers == []
    # and at run time: the CLI, the operators and the DAG modules load without pulling it in
    code = (
        "import sys, airflow_provider_aadsync.cli, airflow_provider_aadsync.operators, airflow_provider_aadsync.hooks;"
        "assert not [m for m in sys.modules if m.startswith('aadsync_devkit')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize(
    ("package", "pyproject", "own"),
    [
        (PRODUCT, REPO / "pyproject.toml", {"airflow_provider_aadsync"}),
        (DEVKIT / "aadsync_devkit", DEVKIT / "pyproject.toml", {"aadsync_devkit"}),
    ],
    ids=["product", "devkit"],
)
def test_every_imported_package_is_declared(package: Path, pyproject: Path, own: set[str]) -> None:
    declared = _declared(pyproject)
    if package != PRODUCT:
        assert "airflow-provider-aadsync" in declared  # the dev kit builds on the product
        own = own | {"airflow_provider_aadsync"}
    undeclared = _third_party(_imports(package), own) - declared
    assert not undeclared, f"{pyproject.relative_to(REPO)} does not declare {sorted(undeclared)}"


def _tracked_copy(tmp_path: Path) -> Path:
    """The repository's tracked files (and unstaged edits of them) in tmp_path: no stale build/ or egg-info."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "src"
    for name in filter(None, (file.decode() for file in files)):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _can_build_in_place() -> bool:
    """Whether this environment has the build tools the pyproject files need (run.sh installs them with the dev
    kit's test extra): setuptools 77+ (a license expression) and wheel."""
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


def _wheel_names(source: Path, out: Path) -> list[str]:
    # --no-build-isolation keeps the build offline; an older environment builds in pip's isolated one instead
    isolation = ["--no-build-isolation"] if _can_build_in_place() else []
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, str(source), "-w", str(out)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_product_wheel_has_no_dev_kit_and_the_dev_kit_wheel_no_product(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path)
    product = _wheel_names(source, tmp_path / "product")
    leaked = [
        name
        for name in product
        if name.startswith(("airflow_provider_aadsync/devenv/", "airflow_provider_aadsync/emulator/", "aadsync_devkit"))
        or "bench" in name
        or "graph_emulator" in name
    ]
    assert not leaked, leaked
    assert "airflow_provider_aadsync/engine/rules/default/out-to-entra.yaml" in product
    assert "airflow_provider_aadsync/engine/rules/optional/join-same-person.yaml" in product
    assert "airflow_provider_aadsync/engine/rules/optional/employee-hire-date.yaml" in product
    assert "airflow_provider_aadsync/cli.py" in product

    devkit = _wheel_names(source / "devkit", tmp_path / "devkit")
    packages = {name.split("/")[0] for name in devkit if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"aadsync_devkit"}
    assert "aadsync_devkit/graph_emulator/app.py" in devkit and "aadsync_devkit/bench/runner.py" in devkit
    entry_points = next(name for name in devkit if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(next((tmp_path / "devkit").glob("*.whl"))) as wheel:
        assert "aadsync-dev = aadsync_devkit.cli:main" in wheel.read(entry_points).decode()


def _metadata(tmp_path: Path) -> str:
    """The METADATA file of the product's wheel, built from the tracked files."""
    source = _tracked_copy(tmp_path)
    names = _wheel_names(source, tmp_path / "product")
    with zipfile.ZipFile(next((tmp_path / "product").glob("*.whl"))) as wheel:
        return wheel.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()


def test_the_product_metadata_has_classifiers_urls_and_allows_the_next_airflow_minor(tmp_path: Path) -> None:
    """What an index page and a resolver read: the provider classifier, project URLs, the license, and an Airflow
    requirement that lets the next minor release in (3.4) while keeping the tested floor and Airflow 4 out."""
    from packaging.requirements import Requirement

    metadata = _metadata(tmp_path)
    lines = metadata.splitlines()
    classifiers = {line.removeprefix("Classifier: ") for line in lines if line.startswith("Classifier: ")}
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert "License-Expression: Apache-2.0" in lines
    urls = {line.split(": ", 1)[1].split(",")[0].lower() for line in lines if line.startswith("Project-URL: ")}
    assert {"source", "documentation", "changelog", "issues"} <= urls

    requirements = [Requirement(line.split(": ", 1)[1]) for line in lines if line.startswith("Requires-Dist: ")]
    (airflow,) = [r for r in requirements if r.name == "apache-airflow" and r.marker is None]
    assert airflow.specifier.contains("3.3.2") and airflow.specifier.contains("3.4.0")
    assert not airflow.specifier.contains("3.2.0") and not airflow.specifier.contains("4.0.0")


def test_the_dev_kit_allows_the_same_airflow_as_the_product() -> None:
    def airflow(pyproject: Path) -> str:
        dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        return next(d.split("#")[0].strip() for d in dependencies if re.match(r"apache-airflow\W", d))

    assert airflow(DEVKIT / "pyproject.toml") == airflow(REPO / "pyproject.toml")


def test_the_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert "## [Unreleased]" in changelog
    assert f"first release, {version}" in changelog  # nothing released yet
