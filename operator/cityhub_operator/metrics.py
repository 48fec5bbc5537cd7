"""The operator's Prometheus metrics, named like controller-runtime's under a cityhub_ prefix.

Label cardinality is bounded by design: at most department x component_type x offering (plus small
fixed enums such as result or state). Never a request name, URL, user or error text: those go to logs
and events. `docs/monitoring.md` lists every metric; components/monitoring_rules.py builds SLIs on them.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from cityhub_api.api import PROVISIONING_BUCKETS

# *_created series would add one series per counter and histogram label set; no rule or dashboard uses them.
prometheus_client.disable_created_metrics()

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Probe round trips: milliseconds to seconds; Apdex thresholds are counted exactly, not from buckets.
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Incidents: minutes to days.
RESOLUTION_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200)

COMPONENT_LABELS = ("department", "component_type", "offering")

# -- the controller (per request kind) ------------------------------------------------------------

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

# -- components: readiness, provisioning, probes ---------------------------------------------------

COMPONENTS = Gauge(
    "cityhub_components",
    "Component requests by state: ready (Ready and its last probe passed), down (was ready, now failing "
    "its probe or not Ready: an open incident), pending (not ready yet, or refused as written).",
    [*COMPONENT_LABELS, "state"],
)
PROVISIONING_TIME = Histogram(
    "cityhub_provisioning_seconds",
    "Request to Ready: seconds from a request's creation to its first Ready=True.",
    list(COMPONENT_LABELS),
    buckets=PROVISIONING_BUCKETS,
)
PROBES = Counter(
    "cityhub_probe_total",
    "Black-box probes of Ready components through the department's own credentials, by result "
    "(success, failure).",
    [*COMPONENT_LABELS, "result"],
)
PROBE_TIME = Histogram(
    "cityhub_probe_duration_seconds",
    "Duration of successful black-box probes.",
    list(COMPONENT_LABELS),
    buckets=PROBE_BUCKETS,
)
APDEX = Counter(
    "cityhub_probe_apdex_total",
    "Probes by Apdex zone against the offering's thresholds: satisfied (<= T), tolerating (<= 4T or the "
    "offering's tolerating bound), frustrated (slower, or failed).",
    [*COMPONENT_LABELS, "zone"],
)
APDEX_THRESHOLD = Gauge(
    "cityhub_probe_apdex_threshold_seconds",
    "The offering's Apdex threshold T in seconds (the catalog's spec.slo.apdexThresholdSeconds).",
    ["component_type", "offering"],
)

# -- problem resolution ----------------------------------------------------------------------------

INCIDENTS_OPENED = Counter(
    "cityhub_incidents_opened_total",
    "Incidents opened: a Ready component became down.",
    list(COMPONENT_LABELS),
)
INCIDENTS_RESOLVED = Counter(
    "cityhub_incidents_resolved_total",
    "Incidents resolved: a down component is ready again.",
    list(COMPONENT_LABELS),
)
INCIDENT_RESOLUTION_TIME = Histogram(
    "cityhub_incident_resolution_seconds",
    "Time to resolve: seconds from a component going down to it being ready again.",
    list(COMPONENT_LABELS),
    buckets=RESOLUTION_BUCKETS,
)

# -- user satisfaction -----------------------------------------------------------------------------

FEEDBACK_COUNT = Gauge(
    "cityhub_feedback_ratings",
    "ComponentFeedback objects departments have recorded, by department and component type.",
    ["department", "component_type"],
)
FEEDBACK_SUM = Gauge(
    "cityhub_feedback_rating_sum",
    "Sum of the ratings (1-5) of those ComponentFeedback objects: divide by cityhub_feedback_ratings.",
    ["department", "component_type"],
)

# -- edge clusters (多级贯通) --------------------------------------------------------------------------

EDGE_UPLINK = Gauge(
    "cityhub_edge_uplink_up",
    "1 when the edge cluster's uplink to the hub carries its components' traffic, 0 when it does not "
    "(reported by the operator serving that edge; one series per edge cluster of the city).",
    ["edge"],
)
