"""What the step operators share: templated mode/store/instance, the store lock holder, the summary check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pydantic
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from airflow_provider_aadsync.engine.import_guard import ImportGuard
from airflow_provider_aadsync.engine.rules import RuleLoadError
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Step results after which an import task succeeds; anything else (stopped-*) fails it with the result in the message.
COMPLETED_RESULTS = ("success", "completed-import-errors")
#: Stops that a retry may get past (the server came back, the lock was taken over by a newer attempt): Airflow
#: retries them. Every other ``stopped-*`` result is deterministic (a threshold, the error limit, a refused
#: configuration): the task fails at once, without retries, and the message says how to confirm or fix it.
TRANSIENT_RESULTS = ("stopped-server-down", "stopped-lock-lost")
#: Errors a retry would only repeat (bad rules, bad settings, a connection id that does not exist).
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (
    RuleLoadError,
    pydantic.ValidationError,
    AirflowNotFoundException,
    ActiveDirectoryConfigurationError,  # a bind in clear not allowed, a base DN outside the naming context or missing
)
#: XCom key of the summary of a step that stopped (the task fails, so it has no return value): the report reads it.
STOPPED_SUMMARY_KEY = "stopped_summary"


def lock_holder(context: Context) -> str:
    """Who holds the store lock for this task: its DAG run, so a retry of the same run takes the lock back and any
    other run (or process) is kept out."""
    return f"{context['dag'].dag_id}:{context['run_id']}"


def store_url_or_default(url: str | None) -> str | None:
    """A templated store URL that rendered empty (the Variable is not set) means the embedded SQLite store."""
    return (url or "").strip() or None


def templated_value(value: object) -> str | None:
    """A templated parameter's text, or None when it rendered empty or as ``"None"`` (an unset param or Variable)."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "None") else text


def templated_flag(value: object) -> bool:
    """A templated yes/no parameter (``True``, ``"true"``, ``"1"``, ``"yes"``)."""
    return (templated_value(value) or "").lower() in ("true", "1", "yes")


def templated_int(value: object, default: int) -> int:
    """A templated number; ``default`` when it rendered empty or as ``"None"``."""
    text = templated_value(value)
    return default if text is None else int(text)


def check_summary(context: Context, summary: dict[str, Any], completed: Sequence[str], step_name: str) -> None:
    """Fail the task when the step stopped, with the result in the message; keep its summary for the report."""
    if summary["result"] in completed:
        return
    context["ti"].xcom_push(key=STOPPED_SUMMARY_KEY, value=summary)
    detail = f": {summary['detail']}" if summary.get("detail") else ""
    message = f"{step_name} stopped: {summary['result']} (run {summary['run_id']}){detail}"
    if str(summary["result"]).startswith("stopped-") and summary["result"] not in TRANSIENT_RESULTS:
        raise AirflowFailException(f"{message} [not retried: the same input stops the same way]")
    raise RuntimeError(message)


def last_run_id(store: Store) -> int:
    """The newest run id of the store (0 when none): runs after it belong to the step about to start."""
    newest = store.list_runs(limit=1)
    return newest[0]["id"] if newest else 0


def keep_failed_run(context: Context, store: Store, connector: str, after_run_id: int) -> None:
    """A step that raised may still have recorded its run (``stopped-server-down``, ``stopped-extension-error``):
    keep that run's summary for the report, as for a step that stopped."""
    try:
        runs = [run for run in store.list_runs(limit=10) if run["id"] > after_run_id and run["connector"] == connector]
        if runs:
            run = runs[0]
            summary = {"run_id": run["id"], "connector": connector, "result": run["result"], "detail": run["detail"]}
            context["ti"].xcom_push(key=STOPPED_SUMMARY_KEY, value=summary)
    except Exception:  # never hide the step's own error
        pass


def log_fallback(operator: BaseOperator, step_name: str, summary: dict[str, Any]) -> None:
    if summary.get("fallback_reason"):
        operator.log.warning("%s: the delta ran as a full one: %s", step_name, summary["fallback_reason"])


def run_recorded_step(
    operator: BaseOperator,
    context: Context,
    *,
    store_url: str | None,
    instance: str,
    connector: str,
    step_name: str,
    completed: Sequence[str],
    step: Callable[[Store, str], dict[str, Any]],
) -> dict[str, Any]:
    """Open the store, run ``step(store, lock holder)``, log its summary and fail the task if the step stopped.

    A step that raised keeps its recorded run's summary for the report (:func:`keep_failed_run`).
    """
    with Store.open(store_url_or_default(store_url), instance=instance or "default") as store:
        before = last_run_id(store)
        try:
            summary = step(store, lock_holder(context))
        except CONFIGURATION_ERRORS as error:
            keep_failed_run(context, store, connector, before)
            raise AirflowFailException(f"{step_name}: refused configuration, not retried: {error}") from error
        except Exception:
            keep_failed_run(context, store, connector, before)
            raise
    operator.log.info("%s %s", step_name, summary)
    log_fallback(operator, step_name, summary)
    check_summary(context, summary, completed, step_name)
    return summary


class StoreStepOperator(BaseOperator):
    """Base of the operators that run one recorded engine step against the store and return its small summary.

    :param mode: ``full`` or ``delta`` (templated); a delta the engine cannot do becomes a full run and says why.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    """

    template_fields: Sequence[str] = ("mode", "store_url", "instance")
    #: Named in logs and errors ("AD import", "sync of ad").
    step_name = "step"
    #: Results after which the task succeeds.
    completed_results: Sequence[str] = ("success",)

    def __init__(
        self,
        *,
        mode: str = "delta",
        store_url: str | None = None,
        instance: str = "default",
        connector: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        """Run the step against ``store``; return its summary."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode not in ("full", "delta"):
            raise AirflowFailException(f"mode must be 'full' or 'delta', not {self.mode!r}")
        return run_recorded_step(
            self,
            context,
            store_url=self.store_url,
            instance=self.instance,
            connector=self.connector,
            step_name=self.step_name,
            completed=self.completed_results,
            step=self.run_step,
        )


class ImportOperator(StoreStepOperator):
    """Base of the import operators: opens the store, runs one import, returns its small summary for XCom.

    :param mode: ``full`` or ``delta`` (templated); a delta without a usable watermark becomes a full import.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    :param confirm_mass_removal: apply an import's deletes whatever their number (templated; default false): the
        operator confirmed a mass removal the import guard stopped (``stopped-deletion-threshold-exceeded``).
    :param import_deletion_threshold: more deletes than this stop the import before any change (templated; empty:
        500).
    :param import_deletion_share: more than this share of the connector space (above 10 deletes) stops the import
        (templated; empty: 0.1).
    """

    template_fields: Sequence[str] = (
        *StoreStepOperator.template_fields,
        "confirm_mass_removal",
        "import_deletion_threshold",
        "import_deletion_share",
    )
    step_name = "import"
    completed_results = COMPLETED_RESULTS

    def __init__(
        self,
        *,
        confirm_mass_removal: bool | str = False,
        import_deletion_threshold: int | str | None = None,
        import_deletion_share: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.confirm_mass_removal = confirm_mass_removal
        self.import_deletion_threshold = import_deletion_threshold
        self.import_deletion_share = import_deletion_share

    def import_guard(self) -> ImportGuard:
        """The import guard from the rendered parameters (empty values: the defaults)."""
        return ImportGuard.from_params(
            deletion_threshold=self.import_deletion_threshold,
            deletion_share=self.import_deletion_share,
            confirm_mass_removal=self.confirm_mass_removal,
        )

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        """Run the import into ``store``; return its summary."""
        raise NotImplementedError

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        return self.run_import(store, lock_holder)
