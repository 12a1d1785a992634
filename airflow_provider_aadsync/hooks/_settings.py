"""Shared by the hooks' connection settings: validation errors worded for people, never echoing values."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(error: ValidationError) -> str:
    """``field: problem; field: problem`` — names each field and what is wrong; the input values stay out."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors()
    )
