"""A connector space renamed and dropped on PostgreSQL (the multi-worker store): the rename's LIKE over the metaverse
contributions and its row moves, and the drop, as the unit tests check them on SQLite, collected here again."""

from __future__ import annotations

import pytest

from tests.support.forests import synced_forests
from tests.unit.engine.runs.test_rename_connector import (  # noqa: F401 - collected here again
    test_a_rename_that_would_change_more_than_the_name_is_refused_and_changes_nothing,
    test_a_renamed_connector_goes_on_where_it_was_and_writes_nothing_again,
)
from tests.unit.engine.runs.test_unconfigured import (  # noqa: F401 - collected here again
    test_a_confirmed_drop_deprovisions_what_only_it_fed_and_leaves_the_other_forest_alone,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pg_store):
    return pg_store, synced_forests(pg_store)
