"""Derived rows following the directories (tests/unit/engine/sync/test_derived_state.py) on PostgreSQL."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.unit.engine.sync.test_derived_state import (  # noqa: F401 - collected here again, with `store` on PostgreSQL
    test_a_group_disconnected_from_the_connector_of_its_members_loses_them,
    test_a_member_disconnected_leaves_its_groups_metaverse_members,
    test_a_member_joined_in_the_target_becomes_its_groups_member_there,
    test_a_member_provisioned_alone_is_added_to_its_groups,
    test_a_member_whose_creation_is_withdrawn_is_no_member_add_of_its_groups,
    test_a_pending_delete_is_withdrawn_when_its_object_is_back_in_scope,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def store(pg_store: Store) -> Store:
    """The unit tests' ``store``, on PostgreSQL."""
    return pg_store
