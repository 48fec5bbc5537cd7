"""The period's figures from Prometheus: instant queries over the HTTP API at the period's end, each over a
range as long as the period, on the operator's own metrics (operator/cityhub_operator/metrics.py).

Why raw metrics and not the recording rules: the rules hold rolling windows (5m … 30d) and a calendar month
needs its own range; counters over a range are taken with increase(), which copes with operator restarts,
plus what series born in the period already held at their first sample (counted()): components created
mid-period count from their creation, their first event included.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
