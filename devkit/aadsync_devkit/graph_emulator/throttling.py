"""Throttling (Graph's identity-and-access limits), injected faults, and the request counters: what the emulator does
to traffic rather than to directory data. All off by default; see the settings in
:mod:`~aadsync_devkit.graph_emulator.state`."""

from __future__ import annotations

import json
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aadsync_devkit.graph_emulator import exceptions as err

if TYPE_CHECKING:
    from aadsync_devkit.graph_emulator.tenant import Tenant


class SlidingWindow:
    """A sliding window of charged units: ``(time, units)`` entries and their running total."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.used = 0

    def wait(self, now: float, window: float, cap: int, cost: int) -> float:
        """0.0 if *cost* more units fit under *cap* now, else the seconds until enough entries leave the window."""
        while self.entries and self.entries[0][0] <= now - window:
            self.used -= self.entries.popleft()[1]
        excess = self.used + cost - cap
        if excess <= 0:
            return 0.0
        for stamp, spent in self.entries:
            excess -= spent
            if excess <= 0:
                return max(stamp + window - now, 0.001)
        return window  # more than the cap in one request: it never fits; answer a full window

    def charge(self, now: float, cost: int) -> None:
        self.entries.append((now, cost))
        self.used += cost


def request_cost(method: str, path: str, params: dict[str, str]) -> tuple[int, int]:
    """``(resource units, write units)`` of a Graph request, after the identity-and-access cost table."""
    method = method.upper()
    parts = [p for p in path.split("/") if p][1:]  # without the version segment
    base = 1
    if method == "GET" and parts in (["users"], ["applications"], ["oauth2PermissionGrants"]):
        base = 2
    elif method == "GET" and len(parts) == 3 and parts[0] == "groups" and parts[2] == "members":
        base = 3
    cost = base
    if "$select" in params:
        cost -= 1
    if "$expand" in params:
        cost += 1
    top = params.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1), 1 if method in ("POST", "PATCH", "PUT", "DELETE") else 0


class Throttling:
    """The traffic side of :class:`~aadsync_devkit.graph_emulator.state.EmulatorState`."""

    lock: threading.RLock
    clock: Callable[[], float]
    settings: dict[str, Any]
    random: random.Random
    counters: dict[str, Any]
    _windows: dict[tuple[str, ...], SlidingWindow]

    def throttle(self, tenant: Tenant, app_id: str, method: str, path: str, params: dict[str, str]) -> None:
        """Charge a request to the tenant's limits; raise ``TooManyRequests`` (429, Retry-After) when over one."""
        with self.lock:
            settings = self.settings
            if not settings["throttlingEnabled"]:
                return
            now = self.clock()
            units, writes = request_cost(method, path, params)
            limit = settings["throttleResourceUnits"]
            if limit is None:
                users = tenant.user_count()
                limit = 3500 if users < 50 else 5000 if users <= 500 else 8000
            checks = [(("ru", tenant.id, app_id), limit, settings["throttleResourceWindowSeconds"], units)]
            if writes:
                checks.append(
                    (
                        ("w", tenant.id, app_id),
                        settings["throttleAppWrites"],
                        settings["throttleAppWriteWindowSeconds"],
                        writes,
                    )
                )
                checks.append(
                    (
                        ("w", tenant.id),
                        settings["throttleTenantWrites"],
                        settings["throttleTenantWriteWindowSeconds"],
                        writes,
                    )
                )
            waits = [
                self._windows.setdefault(key, SlidingWindow()).wait(now, window, cap, cost)
                for key, cap, window, cost in checks
            ]
            if any(waits):
                raise err.TooManyRequests(max(1, math.ceil(max(waits))))
            for key, _, _, cost in checks:
                self._windows[key].charge(now, cost)

    def fault(self) -> tuple[float, err.GraphError | None]:
        """The injected latency (seconds) and, by ``faultNext429``, ``faultRatio429`` and ``faultRatio5xx``, a 429 or
        503 to answer instead (all with ``faultRetryAfterSeconds``); the ratios' dice are seeded when set."""
        with self.lock:
            latency = self.settings["latencyMs"] / 1000
            retry_after = int(self.settings["faultRetryAfterSeconds"])
            if self.settings["faultNext429"]:  # certain, for tests that must see a 429 however slow the machine
                self.settings["faultNext429"] -= 1
                return latency, err.TooManyRequests(retry_after)
            ratio = self.settings["faultRatio429"]
            if ratio and self.random.random() < ratio:
                return latency, err.TooManyRequests(retry_after)
            ratio = self.settings["faultRatio5xx"]
            if ratio and self.random.random() < ratio:
                return latency, err.ServiceUnavailable(retry_after)
            return latency, None

    def malformed(self, path: str) -> str | None:
        """How to break the answer to a Graph request on ``path`` (``faultMalformed``), or None."""
        with self.lock:
            kind, where = self.settings["faultMalformed"], self.settings["faultMalformedPath"]
            return kind if kind and (not where or where in path) else None

    def gateway_timeout(self) -> bool:
        """Whether to answer a write that was carried out with a 504, by ``faultWrite504Ratio``; seeded."""
        with self.lock:
            ratio = self.settings["faultWrite504Ratio"]
            return bool(ratio) and self.random.random() < ratio

    def drop_connection(self) -> bool:
        """Whether to cut this Graph request's connection after processing it, by ``faultDropRatio``; seeded."""
        with self.lock:
            ratio = self.settings["faultDropRatio"]
            return bool(ratio) and self.random.random() < ratio

    # ------------------------------------------------------------------------------------------- counters

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = {"total": 0, "requests": {}, "status": {}, "4xx": 0, "5xx": 0, "429": 0, "batchItems": 0}

    def count(self, method: str, route: str, status: int) -> None:
        with self.lock:
            key = f"{method} {route}"
            self.counters["total"] += 1
            self.counters["requests"][key] = self.counters["requests"].get(key, 0) + 1
            self.counters["status"][str(status)] = self.counters["status"].get(str(status), 0) + 1
            if status == 429:
                self.counters["429"] += 1
            if 400 <= status < 500:
                self.counters["4xx"] += 1
            elif status >= 500:
                self.counters["5xx"] += 1

    def count_batch_items(self, n: int) -> None:
        with self.lock:
            self.counters["batchItems"] += n

    def counters_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.counters))
