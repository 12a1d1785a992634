"""The functions of "Azure AD Connect sync: Functions Reference" (plus ValueCount and ImportedValue), by name.

Importing this module imports every implementation module, each of which registers its functions in
``registry.FUNCTIONS`` through the ``registry.function`` decorator; so whoever reads ``FUNCTIONS`` from here sees
the complete table. To add a function, decorate its implementation with ``@function("Name", ...)`` in the module
of its kind (``text``, ``conversion``, ``directory``, ``flow``, ``certificates``).
"""

from __future__ import annotations

from airflow_provider_aadsync.engine.expressions import (  # noqa: F401 - imported to register their functions
    certificates,
    conversion,
    directory,
    flow,
    text,
)
from airflow_provider_aadsync.engine.expressions.registry import ENUM_WORDS, FUNCTIONS, FunctionSpec

__all__ = ["ENUM_WORDS", "FUNCTIONS", "FunctionSpec"]
