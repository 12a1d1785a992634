"""The CLI's progress: a rich bar on a terminal, plain log lines otherwise (piped, under Airflow)."""

from __future__ import annotations

import io
import logging

import pytest
from click.testing import CliRunner
from rich.console import Console

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.cli_progress import RichRenderer, cli_progress
from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.store import Store
from tests.support.world import ad_group, ad_user, import_full


def some_work() -> None:
    with progress.track("export to entra") as report, report.phase("object writes", 40):
        report.advance(20)
        report.wait("throttling", 7, "Graph throttling (Retry-After)")
        report.advance(20)


def test_a_terminal_gets_a_progress_bar_with_the_wait_lines_above_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CTX_TASK_ID", raising=False)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with cli_progress(console) as renderer:
        assert isinstance(renderer, RichRenderer)
        some_work()
    shown = out.getvalue()
    assert "export to entra: waiting 7.0 s for Graph throttling (Retry-After), 1 wait so far" in shown
    assert "export to entra: object writes" in shown and "━" in shown  # the bar
    assert "40/40" in shown and "waited 7.0 s for throttling (1 wait)" in shown


def test_log_lines_on_a_terminal_are_scrubbed(monkeypatch):
    """The bar's log handler replaces basicConfig's, whose filter scrubbed the known secrets: it scrubs them too."""
    from airflow_provider_aadsync.engine import secrets

    monkeypatch.delenv("AIRFLOW_CTX_TASK_ID", raising=False)
    secret = "Cl1ent-Secret-On-The-Terminal"
    secrets.register_secret(secret)
    out = io.StringIO()
    try:
        with cli_progress(Console(file=out, force_terminal=True, width=200, color_system=None)):
            logging.getLogger("airflow_provider_aadsync.test").warning("token request failed: secret=%s", secret)
    finally:
        secrets.forget_secrets()
    shown = out.getvalue()
    assert "token request failed: secret=***" in shown
    assert secret not in shown


@pytest.mark.parametrize("airflow", [False, True])
def test_elsewhere_the_progress_is_plain_log_lines(monkeypatch, caplog, airflow):
    """Not a terminal (a pipe, a file), or a terminal inside an Airflow task: the task log's lines."""
    if airflow:
        monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "export_entra")
    out = io.StringIO()
    caplog.set_level(logging.INFO)
    with cli_progress(Console(file=out, force_terminal=airflow)) as renderer:
        assert renderer is None
        some_work()
    assert out.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records if r.name == progress.log.name]
    assert lines == [
        "export to entra: object writes started (40 objects)",
        "export to entra: waiting 7.0 s for Graph throttling (Retry-After), 1 wait so far",
        "export to entra: object writes done, 40/40 objects, " + lines[-1].split("objects, ", 1)[1],
    ]


def test_a_cli_sync_not_on_a_terminal_logs_its_phases(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        import_full(store, "ad", [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])])
    caplog.set_level(logging.INFO)
    result = CliRunner().invoke(main, ["sync", "--connector", "ad", "--mode", "full", "--store", url])
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == progress.log.name]
    assert "full sync of ad: inbound started (3 objects)" in lines
    assert any(line.startswith("full sync of ad: inbound done, 3/3 objects") for line in lines)
    assert any(line.startswith("full sync of ad: outbound done, 3/3 metaverse objects") for line in lines)
