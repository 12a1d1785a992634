"""The Azure AD Connect (Entra Connect) declarative provisioning expression language.

>>> expr = compile_expression('IIF([employeeType]="Intern","t-" & [alias],[alias])')
>>> expr.evaluate({"employeeType": "Intern", "alias": "jdoe"})
't-jdoe'

Pure Python: compile once (``compile_expression``), evaluate per object (``CompiledExpression.evaluate``) or for
many objects at once (``CompiledExpression.evaluate_column``, numpy; see ``columns``, imported on first use). The
value-cell convention shared with the rules engine is described in ``values``; the functions, registered by name in
``registry`` by their implementation modules (``conversion``, ``directory``, ``flow``, ``text``, ``certificates``),
are all loaded by ``functions``; ``compiler`` builds a ``CompiledExpression`` from what ``row_compiler`` makes.

The language, as Microsoft documents it ("Understanding Declarative Provisioning Expressions", "Functions
Reference"), with these readings:

* All binary operators (``< <= <> = > >= + - * / & && ||``) have equal priority and evaluate left to right:
  ``3+2*5`` is 25. ``-`` also negates. ``&`` concatenates (NULL counts as ""), ``+`` of two strings too (VBA).
* Literals: ``"text"`` (``""`` is a quote inside), ``42``, ``1.5``, ``&HFF``, ``True``/``False``, ``NULL``,
  ``CRLF``, ``AuthoritativeNull``, ``IgnoreThisFlow``; the enum words ``vbTextCompare``, ``vbBinaryCompare``,
  ``CaseSensitive``, ``CaseInsensitive``, ``Unicode``, ``ASCII``, ``UTF8`` (and ``Binary``) stand for themselves.
  ``[attribute]``, ``%Parameter%`` (replaced at compile time), ``$variable`` (bound by Select, Where, With).
* Function and attribute names are case-insensitive here (the docs call the product's case-sensitive).
* Multi-valued input: functions on single strings work per value (``Trim([proxyAddresses])``), operators apply
  per value against a single operand, and IIF with a multi-valued condition chooses per value — which is what the
  docs' ``IIF(InStr([proxyAddresses],"SIP:")=1,NULL,[proxyAddresses])`` needs.
* Switch evaluates its conditions left to right up to the first True one, and only that value (the docs say it
  evaluates all, but their own example ends in ``True, Error("Unknown city")``, which would then always fail).
* Extension: ``ConvertFromBase64(x, Binary)`` returns the bytes (``StringFromGuid(ConvertFromBase64([id], Binary))``
  turns an ImmutableId back into the GUID string).

Errata in Microsoft's pages, handled here: Item's example calls ``Mid`` with two arguments (an omitted length
means "the rest", as in VBA); ReplaceChars' example pattern ends ``ö,o`` for ``ö:o`` (a missing ``:`` is an
error naming the entry); PCase leaves all-uppercase words as they are (its remark and ``PCase(LCase("TEST"))``);
RandomNum's example calls ``Random`` (unknown here; the error suggests RandomNum); EscapeDNComponent's example has
one ``)`` too many; the operator list reads ``+, -, *, -``; several Cert* and IsCert syntax lines carry another
function's name.
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
