"""The gateway's limits: how many calls a minute (per endpoint) and how many at once (per endpoint, per
department, in all), and the settings that size them (`GatewayLimits`, the gateway's command-line flags).

Rates are per gateway replica: the front door spreads calls over the replicas, and replicas share no
state, so each admits `requestsPerMinute // replicas` (at least 1) of an endpoint's calls in any 60 s; the
endpoint as a whole then gets at most its plan's rate (`--replicas`: the count the stack runs, backend.py
passes it).
Neutral: standard library only.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

WINDOW = 60.0
MiB = 2**20


@dataclass(frozen=True)
class GatewayLimits:
    max_body: int = 4 * MiB
    """--max-body: bytes of one request body; larger: 413 (MLServer's V2 JSON for a few thousand rows)."""
    max_concurrent: int = 256
    """--max-concurrent: calls in flight in all; more: 503 with Retry-After (the gateway is saturated)."""
    max_concurrent_department: int = 32
    """--max-concurrent-department: calls in flight for one department (all its endpoints); more: 429."""
    max_concurrent_endpoint: int = 16
    """--max-concurrent-endpoint: calls in flight for one endpoint; more: 429."""
    timeout: float = 30.0
    """--timeout: seconds for one upstream call (connect, send, answer); over: 504."""
    connect_timeout: float = 5.0
    """--connect-timeout: seconds to connect to a model server; over: 504 (refused: 502)."""
    body_timeout: float = 30.0
    """--body-timeout: seconds a client may take to send its body; over: 408 (slow senders hold a slot)."""
    replicas: int = 1
    """--replicas: gateway replicas behind the front door; each admits requestsPerMinute // replicas."""

    def argv(self) -> list[str]:
        """The gateway's flags for the limits that differ from the defaults."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out += [
                    f"--{f.name.replace('_', '-')}",
                    f"{value:g}" if isinstance(value, float) else str(value),
                ]
        return out

    def per_replica(self, requests_per_minute: int) -> int:
        return max(1, requests_per_minute // max(1, self.replicas))


class RateLimiter:
    """At most `limit` admissions in any WINDOW seconds per key (a sliding log: exact, O(limit) memory)."""

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[float]] = {}

    def admit(self, key: str, limit: int, now: float | None = None) -> float:
        """0 when admitted, else the seconds until a call would be."""
        now = time.monotonic() if now is None else now
        calls = self._calls.setdefault(key, collections.deque())
        while calls and calls[0] <= now - WINDOW:
            calls.popleft()
        if len(calls) >= limit:
            return max(0.001, calls[0] + WINDOW - now)
        calls.append(now)
        return 0.0

    def forget(self, keep: set[str]) -> None:
        for key in set(self._calls) - keep:
            del self._calls[key]


class Full(Exception):
    """No slot: `scope` is endpoint, department or gateway."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(scope)
        self.scope, self.limit = scope, limit


class Concurrency:
    """Calls in flight per endpoint, per department and in all; `slot` takes one of each or raises Full."""

    def __init__(self, limits: GatewayLimits) -> None:
        self.limits = limits
        self.total = 0
        self.endpoints: collections.Counter[str] = collections.Counter()
        self.departments: collections.Counter[str] = collections.Counter()

    @contextmanager
    def slot(self, endpoint: str, department: str) -> Iterator[None]:
        # One event loop: checking and taking happen without an await in between, so no lock is needed.
        if self.endpoints[endpoint] >= self.limits.max_concurrent_endpoint:
            raise Full("endpoint", self.limits.max_concurrent_endpoint)
        if self.departments[department] >= self.limits.max_concurrent_department:
            raise Full("department", self.limits.max_concurrent_department)
        if self.total >= self.limits.max_concurrent:
            raise Full("gateway", self.limits.max_concurrent)
        self.total += 1
        self.endpoints[endpoint] += 1
        self.departments[department] += 1
        try:
            yield
        finally:
            self.total -= 1
            self.endpoints[endpoint] -= 1
            self.departments[department] -= 1
            if not self.endpoints[endpoint]:
                del self.endpoints[endpoint]
            if not self.departments[department]:
                del self.departments[department]
