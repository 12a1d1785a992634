"""A small client of Airflow's REST API (``/api/v2``) for ``aadsync airflow trigger|status``: trigger a DAG run of
a deployment (the Celery one of ``aadsync-dev up --airflow celery``, or any Airflow 3), follow its state and its
tasks' states.

Airflow 3's API takes a JWT: ``POST /auth/token`` with the user and password (the simple auth manager and the FAB
one both serve it) answers ``{"access_token": ...}``, sent as ``Authorization: Bearer``. The address and the user
come from the environment (:data:`API_URL_ENV`, :data:`USER_ENV`, :data:`PASSWORD_ENV`); the password is registered
with the secret scrubber and never appears in a message, a log line or the output.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from airflow_provider_aadsync.engine.secrets import register_secret

API_URL_ENV = "AADSYNC_AIRFLOW_API_URL"
USER_ENV = "AADSYNC_AIRFLOW_USER"
PASSWORD_ENV = "AADSYNC_AIRFLOW_PASSWORD"
#: The states a DAG run ends in (Airflow's DagRunState); every other state means it may still change.
FINISHED_STATES = frozenset({"success", "failed"})


class AirflowApiError(Exception):
    """The API could not be reached, refused the user, or refused the request; the message says which and names
    the environment variable to fix where one is to blame."""


@dataclass(frozen=True)
class AirflowApiSettings:
    """Where the API is and who calls it."""

    url: str
    user: str
    password: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AirflowApiSettings:
        """The settings from the environment; a missing variable is an error naming every missing one."""
        environ = os.environ if environ is None else environ
        values = {name: (environ.get(name) or "").strip() for name in (API_URL_ENV, USER_ENV, PASSWORD_ENV)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise AirflowApiError(
                f"{', '.join(missing)} not set: export {API_URL_ENV} (the api-server's base URL, e.g. "
                f"http://127.0.0.1:8080), {USER_ENV} and {PASSWORD_ENV} (`aadsync-dev env` prints them for the dev "
                "deployment)"
            )
        url = values[API_URL_ENV].rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise AirflowApiError(f"{API_URL_ENV}={url!r} is not an http(s) URL")
        register_secret(values[PASSWORD_ENV])
        return cls(url, values[USER_ENV], values[PASSWORD_ENV])


class AirflowApiClient:
    """One user's session with the API: a token fetched on first use (and once more when it expired)."""

    def __init__(self, settings: AirflowApiSettings, *, timeout: float = 30, verify: bool | str = True) -> None:
        self.settings = settings
        self._http = httpx.Client(base_url=settings.url, timeout=timeout, verify=verify)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------- transport
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise AirflowApiError(
                f"cannot reach the Airflow API at {self.settings.url} ({API_URL_ENV}): {type(error).__name__}: "
                f"{error or 'no answer'}"
            ) from None

    def token(self) -> str:
        """A JWT for the user (``POST /auth/token``)."""
        if self._token is None:
            body = {"username": self.settings.user, "password": self.settings.password}
            response = self._send("POST", "/auth/token", json=body)
            if response.status_code in (401, 403):
                raise AirflowApiError(
                    f"the Airflow API at {self.settings.url} refused the user {self.settings.user!r} "
                    f"(HTTP {response.status_code}): check {USER_ENV} and {PASSWORD_ENV}"
                )
            if response.status_code == 404:
                raise AirflowApiError(
                    f"no /auth/token at {self.settings.url} (HTTP 404): {API_URL_ENV} must be the api-server's base "
                    "URL (without /api/v2) of an Airflow 3"
                )
            if response.status_code not in (200, 201):
                raise AirflowApiError(f"POST /auth/token: HTTP {response.status_code} {_detail(response)}")
            try:
                self._token = str(response.json()["access_token"])
            except (ValueError, KeyError, TypeError):
                raise AirflowApiError(
                    f"POST /auth/token at {self.settings.url} answered no access_token: is {API_URL_ENV} Airflow's "
                    "api-server?"
                ) from None
        return self._token

    def api(self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """One call under ``/api/v2``; its JSON answer (None for a status in ``allow``). An expired token is
        fetched again once."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token()}"}
            response = self._send(method, f"/api/v2{path}", headers=headers, **kwargs)
            if response.status_code == 401 and attempt == 1:
                self._token = None
                continue
            break
        if response.status_code in allow:
            return None
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} /api/v2{path}: HTTP {response.status_code} {_detail(response)}")
        return response.json() if response.content else None

    # ---------------------------------------------------------------------------------------------- DAG runs
    def dag(self, dag_id: str) -> dict[str, Any]:
        found = self.api("GET", f"/dags/{_q(dag_id)}", allow=(404,))
        if found is None:
            raise AirflowApiError(f"no DAG {dag_id!r} in the Airflow at {self.settings.url}")
        return found

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{_q(dag_id)}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``POST /dags/{id}/dagRuns`` with a logical date of now; the new run."""
        body = {"logical_date": dt.datetime.now(dt.UTC).isoformat(), "conf": dict(conf or {})}
        return self.api("POST", f"/dags/{_q(dag_id)}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        found = self.api("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}", allow=(404,))
        if found is None:
            raise AirflowApiError(f"no run {run_id!r} of DAG {dag_id!r}")
        return found

    def latest_run(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG's newest run (by its run-after time), or None."""
        answer = self.api("GET", f"/dags/{_q(dag_id)}/dagRuns", params={"order_by": "-run_after", "limit": 1})
        runs = answer.get("dag_runs") or []
        return runs[0] if runs else None

    def latest_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs of every DAG (``~``: all DAGs)."""
        answer = self.api("GET", "/dags/~/dagRuns", params={"order_by": "-run_after", "limit": limit})
        return list(answer.get("dag_runs") or [])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", params={"limit": 1000})
        return list(answer.get("task_instances") or [])

    def wait(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float,
        poll_seconds: float = 2.0,
        on_poll: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the run until it is finished (:data:`FINISHED_STATES`); its last answer. ``on_poll`` sees the run
        and its task instances at each poll; past ``timeout`` seconds an error says the run's state."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run, self.task_instances(dag_id, run_id))
            if run.get("state") in FINISHED_STATES:
                return run
            if time.monotonic() >= deadline:
                raise AirflowApiError(
                    f"run {run_id!r} of DAG {dag_id!r} is still {run.get('state')} after {timeout:.0f} s (it goes on; "
                    f"`aadsync airflow status {dag_id} --run-id {run_id}` follows it)"
                )
            time.sleep(poll_seconds)


def _q(value: str) -> str:
    """A path segment: run ids carry ``:`` and ``+`` (``manual__2026-12-04T20:00:00+00:00``)."""
    return quote(value, safe="")


def _detail(response: httpx.Response) -> str:
    """Airflow's error detail (``{"detail": ...}``), or the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail if detail is not None else response.text[:500])
