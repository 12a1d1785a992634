"""What the imports do with objects they read but could not apply, on PostgreSQL (the multi-worker store): the AD
list of objects to read again is a ``bytea`` watermark row there, and the full import's keep of what it could not
apply runs on its index. The unit tests of both, collected here again with ``store`` on a PostgreSQL database."""

from __future__ import annotations

import pytest

from tests.unit.engine.connectors.ad.test_delta_object_errors import (  # noqa: F401 - collected here again
    test_a_delta_reads_again_at_most_its_share_the_ones_waiting_longest_first,
    test_an_entry_a_full_import_cannot_decode_is_kept_as_it_was_never_deleted,
    test_an_object_read_again_is_replaced_whole_and_one_gone_leaves_the_list,
    test_changes_of_an_entry_that_failed_to_decode_are_read_again_once_it_is_fixed,
)
from tests.unit.engine.connectors.entra.test_delta_object_errors import (  # noqa: F401 - collected here again
    test_an_item_a_full_import_cannot_store_is_kept_as_it_was_never_deleted,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(pg_store):
    return pg_store
