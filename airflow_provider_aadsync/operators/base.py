"""What the step operators share: templated store/instance (and mode), the store lock holder, the summary check.

The steps themselves are :mod:`airflow_provider_aadsync.steps` (shared with the CLI); here is only what Airflow
needs around them: templating, the XCom summary, and mapping a stop or an error to a task failure or a retry."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from airflow_provider_aadsync.engine.rules import RuleLoadError
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.secrets import scrub, scrub_value
from airflow_provider_aadsync.engine.store import Store, StoreInstanceError
from airflow_provider_aadsync.engine.sync.settings import WritebackSettingsError
from airflow_provider_aadsync.hooks.active_directory_settings import ActiveDirectoryConfigurationError
from airflow_provider_aadsync.hooks.store import store_url_from_connection
from airflow_provider_aadsync.operators.templated import templated_float, templated_int, templated_value
from airflow_provider_aadsync.steps import COMPLETED_RESULTS, TRANSIENT_RESULTS, import_guard, store_url_or_default

if TYPE_CHECKING:
    from airflow.sdk import Context

_S = TypeVar("_S")

#: Errors a retry would only repeat (bad rules, bad settings, a connection id that does not exist).
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (
    RuleLoadError,
    pydantic.ValidationError,
    AirflowNotFoundException,
    ActiveDirectoryConfigurationError,  # a bind in clear not allowed, a base DN outside the naming context or missing
    StoreInstanceError,  # an Entra step whose connection names another tenant than the store's (engine/store/owner.py)
    WritebackSettingsError,  # a group writeback OU outside the AD connection's base DN (engine/sync/settings.py)
)
#: XCom key of the summary of a step that stopped (the task fails, so it has no return value): the report reads it.
STOPPED_SUMMARY_KEY = "stopped_summary"


def lock_holder(context: Context) -> str:
    """Who holds the store lock for this task: its DAG run, so a retry of the same run takes the lock back and any
    other run (or process) is kept out."""
    return f"{context['dag'].dag_id}:{context['run_id']}"


def task_origin(context: Context) -> dict[str, Any]:
    """The task instance running a step, as the store records it on each run (the sync manager links to it)."""
    ti = context.get("ti")
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "task_id": getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
    }


def resolve_store_url(store_url: str | None, store_conn_id: str | None) -> str | None:
    """The store to open: from ``store_conn_id`` (recommended), else ``store_url``, else the embedded SQLite one."""
    conn_id = templated_value(store_conn_id)
    url = store_url_or_default(store_url)
    if conn_id and url:
        raise AirflowFailException(
            f"both a store connection ({conn_id!r}) and a store URL are set: keep one (the Variables "
            "aadsync_store_conn_id and aadsync_store_url)"
        )
    return store_url_from_connection(conn_id) if conn_id else url


def hide_store_password(operator: BaseOperator, url: str | None) -> None:
    """A store URL given with a password: masked in logs and rendered fields, and a warning to use a connection."""
    from airflow_provider_aadsync.engine.store.urls import url_secrets
    from airflow_provider_aadsync.hooks._settings import keep_secret

    try:
        secrets = url_secrets(url) if url else []
    except Exception:  # not a URL at all: Store.open will say so
        return
    for secret in secrets:
        keep_secret(secret)
    if secrets:
        operator.log.warning(
            "store_url carries a password: put the store in an Airflow connection and pass store_conn_id "
            "(Variable aadsync_store_conn_id) instead"
        )


class StoreLocation:
    """Mixin of the operators that open the store: ``store_conn_id`` (templated) next to ``store_url``.

    :param store_conn_id: an Airflow connection (postgres) holding the store, resolved when the task runs: the
        recommended form, as the password stays in the connection. Give it or ``store_url``, not both.
    """

    store_url: str | None

    def __init__(self, *, store_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        # before Airflow redacts and stores the rendered fields: a password in store_url is masked there too
        hide_store_password(self, getattr(self, "store_url", None))  # type: ignore[arg-type]

    def store_location(self) -> str | None:
        return resolve_store_url(getattr(self, "store_url", None), getattr(self, "store_conn_id", None))


def open_task_store(store_url: str | None, instance: str | None) -> Store:
    """:meth:`Store.open` for a task. A store owned by another sync instance fails the task without a retry (a retry
    would open the same store); the error names both instances and the fix (engine/store/owner.py)."""
    try:
        return Store.open(store_url_or_default(store_url), instance=instance or "default")
    except StoreInstanceError as error:
        raise AirflowFailException(str(error)) from None


def confirmed_removal(value: object) -> int | None:
    """The rendered ``confirm_mass_removal``: the number of deletes confirmed, None for none (empty, ``False``: the
    default of DAGs before it became a number). ``True`` is refused: it would confirm whatever is pending."""
    text = templated_value(value)
    if text is None or text.lower() in ("false", "no"):
        return None
    try:
        number = float(text)  # Airflow's Param validation lets 1200.0 through as an integer
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ValueError(
            f"confirm_mass_removal {text!r}: the whole number of deletes you confirm is expected (the stopped "
            "import's message names it); a yes would confirm whatever mass removal is pending when this run goes"
        )
    return int(number)


def refuse_settings(step_name: str, build: Callable[[], _S]) -> _S:
    """``build()`` (a step's settings from its rendered parameters), or a task failure without retries naming the
    refused setting: a bad Variable or param is refused again by every retry."""
    from airflow_provider_aadsync.hooks._settings import describe_validation_error

    try:
        return build()
    except pydantic.ValidationError as error:
        detail = describe_validation_error(error)
    except ValueError as error:
        detail = str(error)
    raise AirflowFailException(f"{step_name}: refused configuration, not retried: {scrub(detail)}")


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
    with open_task_store(store_url, instance) as store:
        store.origin = task_origin(context)  # each run this step records names its task instance
        before = last_run_id(store)
        try:
            summary = step(store, lock_holder(context))
        except CONFIGURATION_ERRORS as error:
            keep_failed_run(context, store, connector, before)
            raise AirflowFailException(
                f"{step_name}: refused configuration, not retried: {scrub(str(error))}"
            ) from error
        except Exception:
            keep_failed_run(context, store, connector, before)
            raise
    summary = scrub_value(summary)  # it goes to XCom and the log: no known secret in it
    operator.log.info("%s %s", step_name, summary)
    log_fallback(operator, step_name, summary)
    check_summary(context, summary, completed, step_name)
    return summary


class StoreStepOperator(StoreLocation, BaseOperator):
    """Base of the operators that run one recorded step against the store and return its small summary (imports,
    syncs, exports).

    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param store_conn_id: an Airflow connection holding the store (templated), instead of ``store_url``.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    """

    template_fields: Sequence[str] = ("store_url", "store_conn_id", "instance")
    #: Named in logs and errors ("AD import", "sync of ad").
    step_name = "step"
    #: Results after which the task succeeds.
    completed_results: Sequence[str] = ("success",)

    def __init__(
        self,
        *,
        store_url: str | None = None,
        instance: str = "default",
        connector: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        """Run the step against ``store``; return its summary."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        return run_recorded_step(
            self,
            context,
            store_url=self.store_location(),
            instance=self.instance,
            connector=self.connector,
            step_name=self.step_name,
            completed=self.completed_results,
            step=self.run_step,
        )


class ModeStepOperator(StoreStepOperator):
    """A store step that runs ``full`` or ``delta`` (imports and syncs).

    :param mode: ``full`` or ``delta`` (templated); a delta the engine cannot do becomes a full run and says why.
    """

    template_fields: Sequence[str] = ("mode", *StoreStepOperator.template_fields)

    def __init__(self, *, mode: str = "delta", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode not in ("full", "delta"):
            raise AirflowFailException(f"mode must be 'full' or 'delta', not {self.mode!r}")
        return super().execute(context)


class ImportOperator(ModeStepOperator):
    """Base of the import operators: opens the store, runs one import, returns its small summary for XCom.

    :param mode: ``full`` or ``delta`` (templated); a delta without a usable watermark becomes a full import.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    :param confirm_mass_removal: the number of deletes the operator confirmed (templated; default none): an import
        deleting exactly this many goes through the import guard (``stopped-deletion-threshold-exceeded`` names it).
    :param import_deletion_threshold: more deletes than this stop the import before any change (templated; empty:
        ``IMPORT_DELETION_THRESHOLD`` of engine/runs/defaults.py).
    :param import_deletion_share: more than this share of the connector space (above 10 deletes) stops the import
        (templated; empty: ``IMPORT_DELETION_SHARE``).
    """

    template_fields: Sequence[str] = (
        *ModeStepOperator.template_fields,
        "confirm_mass_removal",
        "import_deletion_threshold",
        "import_deletion_share",
    )
    step_name = "import"
    completed_results = COMPLETED_RESULTS

    def __init__(
        self,
        *,
        confirm_mass_removal: int | str | None = None,
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
        try:
            threshold = templated_int(self.import_deletion_threshold)
            share = templated_float(self.import_deletion_share)
        except ValueError:
            raise ValueError(
                f"import deletion threshold {self.import_deletion_threshold!r} / share {self.import_deletion_share!r}: "
                "a whole number and a share between 0 and 1 (0.1 is 10 %) are expected"
            ) from None
        return import_guard(
            deletion_threshold=threshold,
            deletion_share=share,
            confirm_mass_removal=confirmed_removal(self.confirm_mass_removal),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        refuse_settings(self.step_name, self.import_guard)  # a refused guard fails before the store is opened
        return super().execute(context)

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        """Run the import into ``store``; return its summary."""
        raise NotImplementedError

    def run_step(self, store: Store, lock_holder: str) -> dict[str, Any]:
        return self.run_import(store, lock_holder)
