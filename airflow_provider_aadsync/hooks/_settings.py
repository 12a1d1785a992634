"""Shared by the hooks' connection settings: validation errors worded for people, never echoing values, and the
registration of the credentials they read as secrets."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from airflow_provider_aadsync.engine.secrets import COMMON_WORDS, MIN_SECRET_LENGTH, register_secret, secret_forms


def describe_validation_error(error: ValidationError) -> str:
    """``field: problem; field: problem`` — names each field and what is wrong; the input values stay out."""
    return "; ".join(
        (f"{'.'.join(str(part) for part in item['loc'])}: " if item["loc"] else "")
        + item["msg"].removeprefix("Value error, ")
        for item in error.errors()
    )


def keep_secret(value: str | None, *, encoded_forms: bool = True) -> None:
    """Treat ``value`` as a secret: the engine scrubs it (and its base64 / URL-encoded forms) from what it stores and
    prints, and Airflow's masker hides the same forms in task logs, rendered fields and XCom when running in Airflow.

    ``encoded_forms=False`` gives Airflow's masker the value alone, for access tokens: a bearer token only ever
    travels raw in an Authorization header, and each mask Airflow adds recompiles one expression over all of them,
    so four forms of every renewed two-kilobyte token made a long export with short-lived tokens CPU-bound.
    """
    if not value or len(value) < MIN_SECRET_LENGTH or value.strip().lower() in COMMON_WORDS:
        return
    register_secret(value)
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is a hard dependency
        return
    for form in secret_forms(value) | secret_forms(value.strip()) if encoded_forms else {value}:
        mask_secret(form)


def keep_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        keep_secret(value)
