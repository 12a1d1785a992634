"""The Azure AD Connect (Entra Connect) declarative provisioning expression language.

>>> expr = compile_expression('IIF([employeeType]="Intern","t-" & [alias],[alias])')
>>> expr.evaluate({"employeeType": "Intern", "alias": "jdoe"})
't-jdoe'

Pure Python: compile once (``compile_expression``), evaluate per object (``CompiledExpression.evaluate``). The
value-cell convention shared with the rules engine is described in ``values``; the functions in ``functions``.
All binary operators have equal priority and evaluate left to right: ``3+2*5`` is 25.
"""

from __future__ import annotations

from airflow_provider_aadsync.engine.expressions.compiler import CompiledExpression, compile_expression
from airflow_provider_aadsync.engine.expressions.errors import (
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    FlowError,
)
from airflow_provider_aadsync.engine.expressions.values import (
    AuthoritativeNull,
    EvaluationContext,
    IgnoreThisFlow,
    ReferenceValues,
)

__all__ = [
    "AuthoritativeNull",
    "CompiledExpression",
    "EvaluationContext",
    "ExpressionError",
    "ExpressionEvaluationError",
    "ExpressionSyntaxError",
    "FlowError",
    "IgnoreThisFlow",
    "ReferenceValues",
    "compile_expression",
]
