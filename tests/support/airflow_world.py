"""A local Airflow over the repository's DAGs, wired to the test DC and the Graph emulator, and what the DAG
tests read from it: the store of an instance, a run that must have succeeded, Graph writes so far.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aadsync_devkit.world.airflow_runs import DagRunOutcome, LocalAirflow
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.engine.store import Store
from tests.support.servers import GRAPH_SECRET, drop_tenant, entra_connection, post_tenant
from tests.support.states import graph_writes

REPO = Path(__file__).resolve().parents[2]


def new_tenant(graph_server, name: str) -> dict:
    """An emulator tenant with the test app and the seed's mail domain verified (the DAG tests' users' UPNs)."""
    return post_tenant(graph_server, name, [MAIL_DOMAIN])


def module_tenant(name: str) -> Callable[..., Iterator[dict]]:
    """A module-scoped ``tenant`` fixture (``tenant = module_tenant("corp")``): a tenant of the module's own,
    removed when the module ends."""

    @pytest.fixture(scope="module")
    def tenant(graph_server) -> Iterator[dict]:
        created = new_tenant(graph_server, name)
        yield created
        drop_tenant(graph_server, created)

    return tenant


def airflow_world(
    root: Path,
    dc: SambaDC,
    graph_server,
    tenant: dict,
    *,
    variables: dict[str, str],
    tenants: dict[str, dict] | None = None,
) -> LocalAirflow:
    """An AIRFLOW_HOME under ``root`` with the repository's DAGs and connections to the test DC and emulator; with
    ``tenants`` (``{conn_id: tenant}``) also a connection to each of those emulator tenants."""
    entra = {
        conn_id: json.loads(entra_connection(graph_server, other).as_json())
        for conn_id, other in (tenants or {}).items()
    }
    return LocalAirflow(
        root / "airflow",
        dags_folder=REPO / "dags",
        connections={
            "aadsync_ad": {"conn_type": "aadsync_ad", **dc.connection_info()},
            "aadsync_entra": json.loads(entra_connection(graph_server, tenant).as_json()),
            **entra,
        },
        variables=variables,
        env={"AADSYNC_HOME": str(root / "aadsync"), **repository_on_path()},
    )


def repository_on_path() -> dict[str, str]:
    """PYTHONPATH for Airflow's processes: the repository, unless it is the checkout installed in the venv.

    A git worktree run needs its own code first on the path. The installed checkout must not be put there: its
    in-tree ``airflow_provider_aadsync.egg-info`` (which ``pip install -e`` leaves) would make a second copy of the
    distribution visible, and Airflow would then refuse the sync manager's entry-point plugin as "already registered".
    """
    if (REPO / "airflow_provider_aadsync.egg-info").is_dir():
        return {}
    return {"PYTHONPATH": str(REPO)}


def main_store(airflow: LocalAirflow, instance: str = "main") -> Store:
    path = Path(airflow.extra_env["AADSYNC_HOME"]) / "store" / f"{instance}.sqlite"
    return Store.open(f"sqlite:///{path}", instance=instance)  # the store's owner: any other instance is refused


def succeeded(run: DagRunOutcome, dc: SambaDC) -> DagRunOutcome:
    assert run.succeeded, run.tail()
    assert dc.admin_password not in run.output and GRAPH_SECRET not in run.output
    print(f"{run.dag_id}: {run.seconds:.1f} s")  # the measured cost of one DAG run (pytest -s shows it)
    return run


def write_requests(graph_server) -> int:
    """Graph requests of a write method so far (token requests are POSTs too, but write nothing), the registration
    of the sync app's directory extension definitions included: a staging or preview run sends none."""
    return sum(graph_writes(graph_server).values())
