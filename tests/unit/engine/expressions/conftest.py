from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.expressions import compile_expression


@pytest.fixture
def ev():
    """Compile and evaluate in one call: ``ev('Left("abc",1)', {"attr": ...}, parameters={...})``."""

    def evaluate(text, context=None, **kwargs):
        return compile_expression(text, **kwargs).evaluate(context or {})

    return evaluate
