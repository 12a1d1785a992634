"""The rules package's public surface."""

from __future__ import annotations

import subprocess
import sys

import airflow_provider_aadsync.engine.rules as rules


def test_all_is_sorted_and_complete():
    # isort style (as ruff formats it): CONSTANTS, then Classes, then functions
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(rules.__all__) == sorted(rules.__all__, key=key)
    public = {name for name in vars(rules) if not name.startswith("_")}
    modules = {"annotations", "compiled", "errors", "flows", "frames", "loader", "model", "scoping"}
    assert set(rules.__all__) == public - modules


def test_importing_rules_pulls_in_no_airflow():
    code = (
        "import sys, airflow_provider_aadsync.engine.rules; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'ldap3', 'httpx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
