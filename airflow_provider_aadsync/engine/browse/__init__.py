"""Reading the store for the sync manager (the Airflow UI plugin) and scripts: run history, object search, an
object's lineage, the export plan and the loaded rules, as plain JSON-ready data.

What the CLI's ``report``, ``preview`` and ``export-plan`` show, from the same tables and helpers (the runs and
their errors, ``plan_counts``, the metaverse's contributions resolved as the preview resolves them), so the UI and
the CLI never disagree. Read only: nothing here writes to the store. No Airflow imports (engine layer).
"""

from airflow_provider_aadsync.engine.browse.common import MAX_PAGE, MAX_VALUES, NotFound
from airflow_provider_aadsync.engine.browse.objects import connectors, object_lineage, preview_object, search_objects
from airflow_provider_aadsync.engine.browse.plan import export_plan, rules_view
from airflow_provider_aadsync.engine.browse.runs import cycles, list_runs, recent_cycles, run_detail, run_summary

__all__ = [
    "MAX_PAGE",
    "MAX_VALUES",
    "NotFound",
    "connectors",
    "cycles",
    "export_plan",
    "list_runs",
    "object_lineage",
    "preview_object",
    "recent_cycles",
    "rules_view",
    "run_detail",
    "run_summary",
    "search_objects",
]
