"""Known secret values, scrubbed from anything the engine stores or prints.

The hooks register the credentials they read (bind password, client secret, private key, store password, access
tokens) here; the store scrubs run details, counters and per-object errors before writing them, and the CLI and the
operators scrub exception text before showing it. A library message that quotes a credential (an OS error naming a
"path" that was really a key, a driver error echoing a URL) then shows ``***`` instead.

Each secret is registered with the forms it could take on the way out: as is, base64 (standard and URL-safe),
URL-encoded (also as SQLAlchemy writes a URL's password), escaped as inside a JSON string or a ``repr()`` (a quote or
backslash escaped, non-ASCII as ``\\uXXXX``), and for multi-line values (PEM keys) each long line and the body without
line breaks. Airflow-free on purpose: the engine must not import Airflow; the hooks also hand the values to Airflow's
own masker.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

#: What a scrubbed secret becomes (Airflow's masker writes the same).
MASK = "***"
#: Shorter values are not registered: scrubbing "abc" out of every message would garble text, not protect anything.
MIN_SECRET_LENGTH = 6
#: Lines of a multi-line secret shorter than this (PEM headers are dropped anyway) are not registered on their own.
MIN_LINE_LENGTH = 16

#: Words too common to scrub even when someone uses one as a password (as Airflow's masker skips "airflow"):
#: every "postgres" or "aadsync" in a report turned into *** would hide more than it protects.
COMMON_WORDS = frozenset({"airflow", "aadsync", "postgres", "postgresql", "password", "secret", "admin", "default"})

_lock = threading.Lock()
_variants: set[str] = set()
#: Longest first, so a secret's base64 form is replaced whole before a shorter overlapping form is.
_ordered: tuple[str, ...] = ()


def secret_forms(value: str) -> set[str]:
    """The forms a secret can take in text: itself, base64, URL-encoded, JSON- and repr-escaped, and its lines /
    unwrapped PEM body."""
    forms = {value}
    raw = value.encode("utf-8")
    forms.add(base64.b64encode(raw).decode("ascii"))
    forms.add(base64.urlsafe_b64encode(raw).decode("ascii"))
    forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
    forms.add(quote(value, safe=""))
    forms.add(quote_plus(value, safe=""))
    forms.add(quote(value))
    forms.add(quote(value, safe=" +"))  # a URL's password as SQLAlchemy renders it (the store connection's URL)
    # inside a JSON document (an error body, a logged dict) or a repr(): quotes, backslashes, non-ASCII escaped
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(repr(value)[1:-1])
    forms.add(repr(raw)[2:-1])  # a bytes repr(): b'p\\xc3\\xa4ss'
    lines = [line.strip() for line in value.splitlines()]
    if len(lines) > 1:
        body = [line for line in lines if line and not line.startswith("-----")]
        forms.add("".join(body))
        forms.update(line for line in body if len(line) >= MIN_LINE_LENGTH)
        forms.add(value.replace("\n", "\\n"))  # as it appears inside JSON or a repr()
        forms.add(value.replace("\r\n", "\n").replace("\n", "\\n"))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def register_secret(value: str | bytes | None) -> None:
    """Remember ``value`` (and its encoded forms) as a secret to scrub; short or empty values are ignored."""
    global _ordered
    if value is None:
        return
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return
    if value.strip().lower() in COMMON_WORDS:
        return
    forms = set()
    for candidate in {value, value.strip()}:  # a PEM read from a file ends with a line break; quoted, it may not
        if len(candidate) >= MIN_SECRET_LENGTH:
            forms |= secret_forms(candidate)
    if not forms:
        return
    with _lock:
        if forms <= _variants:
            return
        _variants.update(forms)
        _ordered = tuple(sorted(_variants, key=len, reverse=True))


def register_secrets(values: Iterable[str | bytes | None]) -> None:
    for value in values:
        register_secret(value)


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    global _ordered
    with _lock:
        _variants.clear()
        _ordered = ()


def scrub(text: str) -> str:
    """``text`` with every registered secret form replaced by ``***``."""
    if not text or not _ordered:
        return text
    for form in _ordered:
        if form in text:
            text = text.replace(form, MASK)
    return text


def scrub_value(value: Any) -> Any:
    """Scrub the strings inside JSON-like data (dicts, lists, tuples); other values pass through unchanged."""
    if not _ordered:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(key): scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(item) for item in value)
    return value


def describe_error(error: BaseException) -> str:
    """``Type: message`` of an exception, scrubbed, for one-line error output."""
    message = scrub(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class ScrubbingFilter(logging.Filter):
    """A log handler's filter: each record's message, and its traceback, with every registered secret scrubbed. For
    the CLI's log lines (in a task, Airflow's masker does this for the task log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:  # the formatter keeps exc_text instead of formatting again
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def scrub_log_handlers(logger: logging.Logger | None = None) -> None:
    """Scrub what every handler of ``logger`` (the root logger) writes, from now on."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, ScrubbingFilter) for existing in handler.filters):
            handler.addFilter(ScrubbingFilter())
