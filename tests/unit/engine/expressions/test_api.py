from __future__ import annotations

import subprocess
import sys

import airflow_provider_aadsync.engine.expressions as expressions


def test_all_is_sorted_and_complete():
    assert expressions.__all__ == sorted(expressions.__all__)
    public = {name for name in vars(expressions) if not name.startswith("_") and name[0].isupper()}
    public |= {"compile_expression"}
    assert set(expressions.__all__) == public - {"annotations"}


def test_error_hierarchy():
    assert issubclass(expressions.ExpressionSyntaxError, expressions.ExpressionError)
    assert issubclass(expressions.ExpressionEvaluationError, expressions.ExpressionError)
    assert issubclass(expressions.FlowError, expressions.ExpressionEvaluationError)
    assert expressions.FlowError("boom").message == "boom"


def test_importing_the_language_pulls_in_no_airflow():
    code = (
        "import sys, airflow_provider_aadsync.engine.expressions as e; "
        "e.compile_expression('Trim([a])').evaluate({'a': ' x '}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'ldap3', 'httpx', 'pandas')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
