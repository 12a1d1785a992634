"""Layout guard rails (issue 14): modules of a readable size, no import cycles, the product apart from the dev kit.

Sizes are counted with ``ast`` (a class from its first decorator or ``class`` line to its last line; a module by its
lines), so comments and docstrings count too: the limit is about what a reader has to hold, not about statements.
Every module of the product (``airflow_provider_aadsync``) and of the dev kit (``aadsync_devkit``) is held to it.

Imports are read with ``ast`` too, all of them: at module level, inside functions and under ``if TYPE_CHECKING:``,
since a deferred import that closes a loop is a cycle in the design even when Python tolerates it at load time.

The allow-lists below name today's offenders; each change that cuts one removes its entry. They only shrink:
an entry that no longer exceeds (or whose file moved) fails ``test_allow_lists_are_current``, so a stale entry is
removed, or re-keyed to the file's new path, in the change that made it stale.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import aadsync_devkit
import airflow_provider_aadsync

PACKAGE = Path(airflow_provider_aadsync.__file__).parent
DEVKIT = Path(aadsync_devkit.__file__).parent
MAX_CLASS_LINES = 500
MAX_MODULE_LINES = 600

# Keys are paths from the package's parent folder (``airflow_provider_aadsync/cli.py``,
# ``aadsync_devkit/graph_emulator/tenant.py``): a moved file is a one-line edit here.
#: Modules allowed over MAX_MODULE_LINES for now, with the cut that removes them.
LONG_MODULES: dict[str, str] = {}
#: Classes allowed over MAX_CLASS_LINES for now, keyed ``path::ClassName``.
LONG_CLASSES: dict[str, str] = {}
#: Import cycles allowed for now, keyed by the modules of the cycle (names below ``airflow_provider_aadsync.``).
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


def _modules(package: Path) -> list[Path]:
    return sorted(package.rglob("*.py"))


def _key(path: Path) -> str:
    root = PACKAGE if path.is_relative_to(PACKAGE) else DEVKIT
    return path.relative_to(root.parent).as_posix()


def _module_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _class_sizes(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ClassDef):
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            yield node.name, (node.end_lineno or node.lineno) - start + 1


ALL_MODULES = _modules(PACKAGE) + _modules(DEVKIT)


def test_both_packages_have_modules():
    assert len(_modules(PACKAGE)) > 50 and len(_modules(DEVKIT)) > 20


@pytest.mark.parametrize("path", ALL_MODULES, ids=_key)
def test_no_module_or_class_too_long(path: Path):
    key = _key(path)
    lines = _module_lines(path)
    if key not in LONG_MODULES:
        assert lines <= MAX_MODULE_LINES, f"{key} has {lines} lines (limit {MAX_MODULE_LINES}): cut it into modules"
    for name, size in _class_sizes(path):
        if f"{key}::{name}" not in LONG_CLASSES:
            assert size <= MAX_CLASS_LINES, (
                f"class {name} in {key} has {size} lines (limit {MAX_CLASS_LINES}): cut it into collaborators"
            )


# ------------------------------------------------------------------------------------------------ imports
def _module_names(package: Path) -> dict[str, Path]:
    """Dotted module name → file; a package is named by its ``__init__.py``."""
    names = {}
    for path in _modules(package):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(path: Path, module: str) -> Iterator[tuple[int, str, list[str]]]:
    """Every import in ``path`` (anywhere in the file): line, absolute module, names taken from it."""
    anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            yield node.lineno, base, [alias.name for alias in node.names]


def _import_graph() -> dict[str, set[str]]:
    """Module → the product modules it imports. ``from a.b import c`` counts as importing ``a.b.c`` when that is a
    module, else ``a.b``. Left out: the parent packages Python runs on the way to a submodule, and a package's
    ``__init__`` importing modules inside that package (it re-exports them: the package's face, not a dependency)."""
    names = _module_names(PACKAGE)

    def resolve(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        edges = set()
        for _, base, taken in _imported(path, module):
            for target in [f"{base}.{name}" if f"{base}.{name}" in names else base for name in taken] or [base]:
                found = resolve(target)
                if found is None or found == module:
                    continue
                if path.name == "__init__.py" and found.startswith(module + "."):
                    continue
                edges.add(found)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _short(cycle: frozenset[str]) -> frozenset[str]:
    return frozenset(module.removeprefix(f"{PACKAGE.name}.") for module in cycle)


def test_no_import_cycles():
    graph = _import_graph()
    unexpected = []
    for cycle in _cycles(graph):
        if _short(cycle) not in ALLOWED_CYCLES:
            unexpected.append(
                "; ".join(f"{module} -> {', '.join(sorted(graph[module] & cycle))}" for module in sorted(cycle))
            )
    assert not unexpected, "import cycles (move the shared names into a module both can import):\n" + "\n".join(
        unexpected
    )


def test_import_graph_sees_imports():
    """The guard reads real edges: a module-level, a deferred and a TYPE_CHECKING import of the tree as it is."""
    graph = _import_graph()
    expressions = f"{PACKAGE.name}.engine.expressions"
    assert f"{expressions}.registry" in graph[f"{expressions}.text"]  # module level
    assert f"{expressions}.columns" in graph[f"{expressions}.compiler"]  # deferred and TYPE_CHECKING
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_product_never_imports_the_dev_kit():
    names = _module_names(PACKAGE)
    found = [
        f"{_key(path)}:{line} imports {base}"
        for module, path in names.items()
        for line, base, _ in _imported(path, module)
        if base.split(".")[0] == DEVKIT.name
    ]
    assert not found, "the product must not import the dev kit:\n" + "\n".join(found)


# ------------------------------------------------------------------------------------------------ allow-lists
def test_allow_lists_are_current():
    """Every allow-listed entry still exceeds; when one is cut (or moved), its entry goes (or follows it)."""
    files = {_key(path): path for path in ALL_MODULES}
    stale = []
    for key in LONG_MODULES:
        if key not in files:
            stale.append(f"LONG_MODULES: {key} does not exist (moved? re-key it; cut? remove it)")
        elif _module_lines(files[key]) <= MAX_MODULE_LINES:
            stale.append(f"LONG_MODULES: {key} has {_module_lines(files[key])} lines now: remove its entry")
    for entry in LONG_CLASSES:
        key, _, name = entry.partition("::")
        sizes = dict(_class_sizes(files[key])) if key in files else {}
        if name not in sizes:
            stale.append(f"LONG_CLASSES: no class {name} in {key} (moved? re-key it; cut? remove it)")
        elif sizes[name] <= MAX_CLASS_LINES:
            stale.append(f"LONG_CLASSES: {entry} has {sizes[name]} lines now: remove its entry")
    cycles = {_short(cycle) for cycle in _cycles(_import_graph())}
    for cycle in ALLOWED_CYCLES:
        if cycle not in cycles:
            stale.append(f"ALLOWED_CYCLES: {sorted(cycle)} is no longer a cycle: remove its entry")
    assert not stale, "\n".join(stale)
