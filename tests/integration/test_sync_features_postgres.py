"""The sync engine on PostgreSQL: the rule-feature scenarios, unchanged."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.unit.engine.sync.test_sync_features import (  # noqa: F401 - collected here again, with `store` on PostgreSQL
    rules,
    test_a_join_rule_added_on_another_attribute_finds_the_objects_unchanged_since,
    test_error_limit_stops_the_run_and_applies_nothing,
    test_members_imported_after_their_group_resolve_in_a_later_pass,
    test_preview_reports_decisions_and_writes_nothing,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def store(pg_store: Store) -> Store:
    """The unit tests' ``store``, on PostgreSQL."""
    return pg_store
