"""The component API's names: one place, so the CRDs, RBAC, the operator and the docs cannot disagree."""

from __future__ import annotations

GROUP = "hub.cityhub.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "cityhub"
"""`kubectl get cityhub -n <department>` lists every component a department requested."""

OFFERING_KIND = "ComponentOffering"
OFFERING_PLURAL = "componentofferings"
FEEDBACK_KIND = "ComponentFeedback"
FEEDBACK_PLURAL = "componentfeedbacks"

FINALIZER = f"{GROUP}/finalizer"
"""The operator's finalizer on every request: the backend objects go before the request does."""

PROVISIONING_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
"""Histogram buckets of cityhub_provisioning_seconds (request → Ready, seconds to minutes). Shared by the
operator's metric and the SLO rules: the provisioning SLO threshold must be one of these bounds."""

EMERGENCY_PRIORITY = "cityhub-emergency"
"""The PriorityClass emergency responders' workloads run at in emergency mode (急时)."""
NORMAL_PRIORITY = "cityhub-normal"
"""The PriorityClass of everyone's workloads in normal mode (平时)."""

PROBE_OBJECTIVE = 0.995
"""Default SLO: the share of black-box probes that must succeed over the SLO period."""
PROVISIONING_OBJECTIVE = 0.95
"""Default SLO: the share of requests that must be Ready within PROVISIONING_THRESHOLD_SECONDS."""
PROVISIONING_THRESHOLD_SECONDS = 60.0
"""Default SLO threshold, one of PROVISIONING_BUCKETS. A stack's cityhub:monitoring overrides all three."""
