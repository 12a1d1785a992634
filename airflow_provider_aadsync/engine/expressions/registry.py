"""The registry of expression functions: ``FunctionSpec``, the ``FUNCTIONS`` table and the ``function`` decorator.

The implementation modules (``conversion``, ``directory``, ``flow``, ``text``, ``certificates``) import
``function`` (and ``scalar``) from here and register their functions when they are imported; ``functions`` imports
all of them, so the compiler reads a complete table from there. Keeping the registry apart means no module imports
one that imports it back.

Every function is registered in ``FUNCTIONS`` (keyed by the case-folded name) with its argument counts and how the
compiler calls it:

* ``eager``   — ``impl(*values)``: the arguments are evaluated first (most functions);
* ``lazy``    — ``impl(env, *thunks)``: the function evaluates its arguments itself (IIF, Switch);
* ``context`` — ``impl(env, *values)``: reads the evaluation context (ValueCount, ImportedValue);
* ``binder``  — ``impl(env, variable, *thunks)``: the first argument is a ``$variable`` the function binds
  (Select, Where, With).

Functions on single strings (Trim, Left, Word, ...) applied to a multi-valued argument work on every value and
return the results as a multi-valued cell (``values.mv_result``), as the language's docs describe
(``Trim([proxyAddresses])``). Implementations raise ``errors.ArgumentError``; the compiler adds the function name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_aadsync.engine.expressions.errors import ArgumentError
from airflow_provider_aadsync.engine.expressions.values import mv_result


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function: documented name, implementation, argument counts and calling convention."""

    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    kind: str = "eager"
    pure: bool = True  # same arguments, same result (so constant arguments may be folded at compile time)
    raw_attribute: bool = False  # a direct [attribute] argument may be unloaded ReferenceValues
    name_argument: bool = False  # the first argument is an attribute name (ValueCount("member"))

    def arity(self) -> str:
        """ "2 arguments", "2 to 4 arguments", "at least 2 arguments"."""
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        return f"{self.min_args} to {self.max_args} arguments"


FUNCTIONS: dict[str, FunctionSpec] = {}

# bare words that are values, not functions: enum constants some functions take (InStr's vbTextCompare, ...)
ENUM_WORDS = {
    word.casefold(): word
    for word in ("vbTextCompare", "vbBinaryCompare", "CaseSensitive", "CaseInsensitive", "Unicode", "ASCII", "UTF8")
    + ("Binary",)
}


def function(
    name: str,
    min_args: int,
    max_args: int | None | str = "same",
    *,
    kind: str = "eager",
    pure: bool = True,
    per_value: bool = False,
    raw_attribute: bool = False,
    name_argument: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``impl`` as the function ``name``; ``per_value`` maps it over a multi-valued first argument."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        call = _per_value(impl) if per_value else impl
        upper = min_args if max_args == "same" else max_args
        FUNCTIONS[name.casefold()] = FunctionSpec(
            name,
            call,
            min_args,
            upper,
            kind,
            pure,
            raw_attribute,
            name_argument,  # type: ignore[arg-type]
        )
        return impl

    return register


def _per_value(impl: Callable[..., Any]) -> Callable[..., Any]:
    def mapped(first: Any, *rest: Any) -> Any:
        if isinstance(first, list):
            return mv_result(impl(value, *rest) for value in first)
        return impl(first, *rest)

    mapped.__name__ = impl.__name__
    mapped.__doc__ = impl.__doc__
    return mapped


def scalar(value: Any, what: str) -> Any:
    """``value``, which must not be multi-valued (an index, a delimiter, a condition, ...)."""
    if isinstance(value, list):
        raise ArgumentError(f"{what} must be single-valued, got {len(value)} values")
    return value
