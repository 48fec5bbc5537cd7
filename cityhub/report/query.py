"""The period's figures from Prometheus: instant queries over the HTTP API at the period's end, each over a
range as long as the period, on the operator's own metrics (operator/cityhub_operator/metrics.py).

Why raw metrics and not the recording rules: the rules hold rolling windows (5m … 30d) and a calendar month
needs its own range; counters over a range are taken with increase(), which copes with operator restarts,
plus what series born in the period already held at their first sample (counted()): components created
mid-period count from their creation, their first event included.

Component-hours (the cost showback, cost.py) are a gauge integrated over time, not a counter: see
component_hours_query() for the subquery, its step and why it is right for components created mid-period.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cityhub.report.cost import BILLED_STATES
from cityhub.report.model import Period

BY = "department, component_type"


def counted(metric: str) -> str:
    """How much a counter grew in the period, including a series born with a value already in it.

    increase() measures from a series' first sample, so a series whose first scrape already holds an event
    (the first request of a new department x offering is observed as its series is created) would lose that
    event; for series that did not exist at the period's start, their smallest value in the period (the first,
    short of a restart) is added. `+` keeps only those series, `or` brings back the others.
    """
    grew = f"increase({metric}[{{w}}])"
    born = f"(min_over_time({metric}[{{w}}]) unless {metric} offset {{w}})"
    return f"(({grew} + {born}) or {grew})"


QUERIES: Mapping[str, str] = {
    "components": f"sum by ({BY}, state) (last_over_time(cityhub_components[{{w}}]))",
    "probes": f"sum by ({BY}, result) {counted('cityhub_probe_total')}",
    "probe_latency": f"sum by ({BY}, le) {counted('cityhub_probe_duration_seconds_bucket')}",
    "provisioning": f"sum by ({BY}, le) {counted('cityhub_provisioning_seconds_bucket')}",
    "apdex": f"sum by ({BY}, offering, zone) {counted('cityhub_probe_apdex_total')}",
    "apdex_threshold": "max by (component_type, offering) "
    "(last_over_time(cityhub_probe_apdex_threshold_seconds[{w}]))",
    "incidents_opened": f"sum by ({BY}) {counted('cityhub_incidents_opened_total')}",
    "incidents_resolved": f"sum by ({BY}) {counted('cityhub_incidents_resolved_total')}",
    "resolution_seconds": f"sum by ({BY}) {counted('cityhub_incident_resolution_seconds_sum')}",
    "resolutions": f"sum by ({BY}) {counted('cityhub_incident_resolution_seconds_count')}",
    "feedback_count": f"sum by ({BY}) (last_over_time(cityhub_feedback_ratings[{{w}}]))",
    "feedback_sum": f"sum by ({BY}) (last_over_time(cityhub_feedback_rating_sum[{{w}}]))",
}
"""Name → PromQL with {w}, the period's range. Every one is a sum over the bounded label set of the operator's
metrics (department x component_type, plus offering for Apdex)."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float | None
    """None for NaN or ±Inf (Prometheus answers NaN for 0/0)."""


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: list[tuple[float, float | None]]
    """(Unix time, value) in time order."""


Results = Mapping[str, list[Sample]]
"""Query name (a key of QUERIES) → its samples: what build.py turns into a report."""


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query; the message names the URL and what to check."""


def number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def le_bound(text: str) -> float:
    """A histogram bucket's `le` label as a float (+Inf → math.inf)."""
    return float(text)


class Prometheus:
    """The HTTP API of one Prometheus (urllib: the CLI uses no HTTP client library)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def _data(self, request: urllib.request.Request) -> Any:
        """The `data` of a successful answer; PrometheusError naming the URL otherwise."""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise PrometheusError(f"Prometheus at {self.url} refused a query ({e.code}): {detail}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise PrometheusError(
                f"cannot reach Prometheus at {self.url} ({e}): check --prometheus or CITYHUB_PROMETHEUS_URL"
            ) from e
        if answer.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url}: {answer.get('error') or answer}")
        return answer["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts its rules hold now, pending and firing (GET /api/v1/alerts), as Prometheus answers."""
        data = self._data(urllib.request.Request(f"{self.url}/api/v1/alerts"))
        return list(data.get("alerts") or [])

    def query_range(self, expr: str, start: datetime, end: datetime, step: int) -> list[Series]:
        """Each series of `expr` at start, start + step, … up to end (POST /api/v1/query_range)."""
        form = {"query": expr, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
        body = urllib.parse.urlencode({**form, "step": str(step)}).encode()
        data = self._data(urllib.request.Request(f"{self.url}/api/v1/query_range", data=body, method="POST"))
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"Prometheus at {self.url}: expected a matrix for {expr}, got {data}")
        return [
            Series(dict(r["metric"]), [(float(at), number(v)) for at, v in r["values"]])
            for r in data["result"]
        ]

    def query(self, expr: str, at: datetime) -> list[Sample]:
        body = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"}).encode()
        data = self._data(urllib.request.Request(f"{self.url}/api/v1/query", data=body, method="POST"))
        if data.get("resultType") != "vector":
            raise PrometheusError(f"Prometheus at {self.url}: expected a vector for {expr}, got {data}")
        return [Sample(dict(r["metric"]), number(r["value"][1])) for r in data["result"]]


def fetch(prometheus: Prometheus, period: Period) -> dict[str, list[Sample]]:
    """Every query of QUERIES over the period, evaluated at its end (or now)."""
    window = f"{max(period.seconds, 1)}s"
    return {
        name: prometheus.query(expr.format(w=window), period.evaluated_at) for name, expr in QUERIES.items()
    }


# -- component-hours (the cost showback, cost.py) ------------------------------------------------------

BILLED = f'cityhub_components{{state=~"{"|".join(BILLED_STATES)}"}}'
HOUR = 3600
RESOLUTIONS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
"""Integration steps, seconds: each divides an hour, so the points fall on the period's grid (periods start
on the hour) and none straddles its start."""
MAX_POINTS = 44_640
"""Points per series at most: a 31-day month at one a minute (Prometheus holds them all while it sums)."""


@dataclass(frozen=True)
class Metered:
    """Component-hours as Prometheus integrated them."""

    samples: list[Sample]
    """Per department x component_type x offering: the sum of the subquery's points (cost.component_hours
    turns it into hours with the step)."""
    resolution_seconds: int | None
    """The subquery's step; None when no billed component existed in the period (nothing was integrated)."""
    measured_from: datetime | None
    """The start of the integrated range: the hour the first billed component of the period appeared."""


def resolution(seconds: float) -> int:
    """The finest step of RESOLUTIONS with at most MAX_POINTS points over `seconds`: a minute over a month,
    a second over the last hour or two (a component created late in the period, or a test's)."""
    return next((s for s in RESOLUTIONS if seconds / s <= MAX_POINTS), RESOLUTIONS[-1])


def component_hours_query(range_ms: int, step: int) -> str:
    """Billed components per department x type x offering, sampled every `step` seconds over the `range_ms`
    before the evaluation time and added up (x step / 3600 = component-hours).

    A component created mid-period has no series, or reads 0, before its creation, so it adds nothing then;
    deleted, its count is decremented (0); while nothing changes (zero traffic) the gauge is still scraped,
    so every point reads the count held. The subquery's points are aligned to multiples of the step; the
    range is 1 ms short so the point at its very start, which stands for the step before it (possibly the
    previous period, read through the lookback), is left out — Prometheus 2 includes a range's left edge.
    """
    billed = f"sum by ({BY}, offering) ({BILLED})"
    return f"sum by ({BY}, offering) (sum_over_time(({billed})[{range_ms - 1}ms:{step}s]))"


def first_billed_hour(prometheus: Prometheus, period: Period) -> datetime | None:
    """The start of the period's first hour in which a billed component existed (None: none did).

    One point an hour (query_range), each over the hour before it, so nothing is missed between points: the
    fine integration then covers only where there is something to integrate, which keeps its step small
    for a late start (and an integration test's few minutes) without a month of empty points.
    """
    hours = max(1, math.ceil((period.evaluated_at - period.start).total_seconds() / HOUR))
    expr = f"count(max_over_time({BILLED}[1h]) > 0)"
    first, last = period.start + timedelta(hours=1), period.start + timedelta(hours=hours)
    times = [at for series in prometheus.query_range(expr, first, last, HOUR) for at, v in series.points if v]
    if not times:
        return None
    return max(period.start, datetime.fromtimestamp(min(times) - HOUR, tz=period.start.tzinfo))


def fetch_usage(prometheus: Prometheus, period: Period) -> Metered:
    """Component-hours of the period per department x component_type x offering (two queries)."""
    since = first_billed_hour(prometheus, period)
    end_ms = round(period.evaluated_at.timestamp() * 1000)
    range_ms = end_ms - round(since.timestamp() * 1000) if since else 0
    if since is None or range_ms <= 1:
        return Metered([], None, None)
    step = resolution(range_ms / 1000)
    samples = prometheus.query(component_hours_query(range_ms, step), period.evaluated_at)
    return Metered(samples, step, since)
