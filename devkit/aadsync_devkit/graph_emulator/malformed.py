"""Malformed answers for the ``faultMalformed`` setting: what a broken proxy, a half-deployed service or a gateway
error page hands a Graph client. The request itself is processed as usual (a write happens); only its answer breaks.
"""

from __future__ import annotations

import json
from typing import Any

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
    b"<p>The gateway could not reach the service. Reference #18.2f4b1d17.1733300000</p></body></html>"
)


def break_answer(kind: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, list, bytes]:
    """The broken (status, headers, body) of one answer, by ``kind`` (one of ``MALFORMED_KINDS``)."""
    if kind in ("html-200", "html-502"):
        return (200 if kind == "html-200" else 502), _with(headers, b"text/html; charset=utf-8", HTML_PAGE), HTML_PAGE
    if kind == "truncated-json":
        cut = body[: max(1, len(body) // 2)] if body else b'{"value": ['
        return status, _with(headers, None, cut), cut
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return status, headers, body
    if not isinstance(document, dict):
        return status, headers, body
    changed = _change(kind, document)
    out = json.dumps(changed).encode()
    return status, _with(headers, None, out), out


def _change(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    if kind == "batch-missing-items":
        items = document.get("responses")
        if isinstance(items, list):
            document["responses"] = items[: len(items) // 2]
        return document
    if kind == "no-value":
        document.pop("value", None)
        return document
    responses = document.get("responses")
    if isinstance(responses, list):  # a $batch answer: break each item and what it carries
        for item in responses:
            if kind == "wrong-types":
                item["status"] = f"HTTP {item.get('status')}"
            if isinstance(item.get("body"), dict):
                item["body"] = _change(kind, item["body"])
        return document
    values = document.get("value")
    targets = [v for v in values if isinstance(v, dict)] if isinstance(values, list) else [document]
    for target in targets:
        if kind == "missing-id":
            target.pop("id", None)
        elif kind == "wrong-types":
            for name, value in list(target.items()):
                if not name.startswith("@odata"):
                    target[name] = _wrong(value)
    return document


def _wrong(value: Any) -> Any:
    """A value of another JSON type than ``value``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return {"values": value}
    if isinstance(value, dict):
        return [value]
    return str(value)


def _with(headers: list[tuple[bytes, bytes]], content_type: bytes | None, body: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` with a content-length that fits ``body`` (and the given content-type)."""
    out = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type")]
    original = next((v for k, v in headers if k.lower() == b"content-type"), b"application/json")
    out.append((b"content-type", content_type or original))
    out.append((b"content-length", str(len(body)).encode()))
    return out
