"""A stand-in for the Airflow task instance the cycle report reads: the step summaries the earlier tasks returned
(their XCom return values) and no other task states."""

from __future__ import annotations


class SummariesTaskInstance:
    """Answers ``xcom_pull(task_ids=…)`` with the given summaries by task id (None for a named key)."""

    def __init__(self, summaries: dict[str, dict]) -> None:
        self.summaries = summaries

    def xcom_pull(self, *, task_ids: str, key: str | None = None) -> dict | None:
        return None if key else self.summaries.get(task_ids)

    def get_task_states(self, **_kwargs: object) -> dict:
        return {}
