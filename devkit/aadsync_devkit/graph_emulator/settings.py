"""The emulator's own settings (``GET``/``PUT /_emulator/settings``): token lifetimes, delta paging, throttling and
fault injection. Every setting has a default, so a fresh emulator behaves like Graph on a quiet day."""

from __future__ import annotations

from typing import Any

DEFAULT_TOKEN_LIFETIME = 3599
#: Settings of ``PUT /_emulator/settings``: name -> (default, minimum, maximum or None, type).
SETTINGS: dict[str, tuple[Any, float, float | None, type]] = {
    "tokenLifetimeSeconds": (DEFAULT_TOKEN_LIFETIME, 0, None, int),
    "deltaTokenLifetimeSeconds": (7 * 24 * 3600, 0, None, int),
    "deltaPageSize": (200, 1, None, int),
    "deltaMembersPerItem": (100, 1, None, int),
    "throttlingEnabled": (False, 0, None, bool),
    "throttleResourceUnits": (None, 1, None, int),  # None: 3,500 / 5,000 / 8,000 by tenant size
    "throttleResourceWindowSeconds": (10, 0.001, None, float),
    "throttleAppWrites": (3000, 1, None, int),
    "throttleAppWriteWindowSeconds": (150, 0.001, None, float),
    "throttleTenantWrites": (18000, 1, None, int),
    "throttleTenantWriteWindowSeconds": (300, 0.001, None, float),
    "faultRatio5xx": (0.0, 0, 1, float),
    "faultRetryAfterSeconds": (1, 0, None, int),
    "faultDropRatio": (0.0, 0, 1, float),  # share of Graph requests whose connection drops after processing
    "faultWrite504Ratio": (0.0, 0, 1, float),  # share of writes carried out, then answered 504 (gateway timeout)
    "faultRatio429": (0.0, 0, 1, float),  # share of Graph requests answered 429 with faultRetryAfterSeconds
    "faultNext429": (0, 0, None, int),  # the next N Graph requests are answered 429, whatever the dice or the clock
    "faultMalformed": (None, 0, None, str),  # one of MALFORMED_KINDS: every matching Graph answer is broken so
    "faultMalformedPath": (None, 0, None, str),  # only requests whose path contains this (null: every Graph request)
    "latencyMs": (0, 0, 60000, int),
    "randomSeed": (None, 0, None, int),
}

#: What ``faultMalformed`` does to an answer: JSON cut in half, properties of the wrong JSON type, objects without
#: ``id``, a collection page without ``value``, an HTML error page with status 200 or 502, a ``$batch`` answer that
#: leaves out half of its items.
MALFORMED_KINDS = (
    "truncated-json", "wrong-types", "missing-id", "no-value", "html-200", "html-502", "batch-missing-items",
)  # fmt: skip
