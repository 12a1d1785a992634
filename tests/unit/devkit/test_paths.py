"""Environment overrides for the devenv locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from aadsync_devkit import paths


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AADSYNC_HOME", raising=False)
    monkeypatch.delenv("AADSYNC_FIXTURE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.aadsync_home() == tmp_path / ".aadsync"
    assert paths.dev_dc_home() == tmp_path / ".aadsync" / "dev" / "samba"
    assert paths.fixture_cache_dir() == tmp_path / ".aadsync" / "fixtures"


def test_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(tmp_path / "c"))
    assert paths.dev_dc_home() == tmp_path / "h" / "dev" / "samba"
    assert paths.fixture_cache_dir() == tmp_path / "c"
