"""The operator's Prometheus metrics, named like controller-runtime's under a cityhub_ prefix."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RECONCILE_TOTAL = Counter(
    "cityhub_reconcile_total", "Reconciles by controller (request kind) and result.", ["controller", "result"]
)
RECONCILE_TIME = Histogram(
    "cityhub_reconcile_time_seconds",
    "Time of one reconcile, backend included.",
    ["controller"],
    buckets=_BUCKETS,
)
BACKEND_TIME = Histogram(
    "cityhub_backend_time_seconds",
    "Time spent in backend driver calls.",
    ["controller", "operation"],
    buckets=_BUCKETS,
)
KUBERNETES_TIME = Histogram(
    "cityhub_kubernetes_time_seconds",
    "Time spent in the operator's own Kubernetes writes (Secrets).",
    ["controller", "operation"],
    buckets=_BUCKETS,
)
RETRIES = Counter("cityhub_workqueue_retries_total", "Reconciles that asked to be retried.", ["controller"])
DRIFT_REPAIRS = Counter(
    "cityhub_drift_repairs_total", "Backend objects found changed or missing and repaired.", ["controller"]
)
IN_FLIGHT = Gauge("cityhub_workqueue_depth", "Reconciles running right now.", ["controller"])
