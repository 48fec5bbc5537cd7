"""Label and annotation keys cityhub writes: the contract between the stack, the operator, the policy pack,
the embedded cluster and the dashboards. Nothing else spells a key."""

from __future__ import annotations

from cityhub_api.api import GROUP

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
NAMESPACE_NAME = "kubernetes.io/metadata.name"
"""Kubernetes puts every namespace's name in this label; network policies select namespaces by it."""
TENANT = "cityhub.io/tenant"
"""`department` on every department namespace; network policies select tenants by it."""
DEPARTMENT = "cityhub.io/department"
LEVEL = "cityhub.io/level"
DIVISION_CODE = "cityhub.io/division-code"
ZONE = "cityhub.io/zone"
DATA_GRADE = "cityhub.io/data-grade"
CREDIT_CODE = "cityhub.io/credit-code"
EMERGENCY_RESPONDER = "cityhub.io/emergency-responder"
PRIORITY_CLASS = "cityhub.io/priority-class"
"""The PriorityClass the operator gives the department's workloads; it moves with 平急切换."""
SERVICE = "cityhub.io/service"
"""Names the component type a pod backs; the type's front-door Service selects it (registry.FrontDoor)."""
EDGE = "cityhub.io/edge"
"""On the hub's objects that serve one edge cluster (its operator's pods and metrics Service): its name."""
POOL = "cityhub.io/pool"
"""Node pool of a node: `cpu` or `gpu-inference`; workloads select pools by it."""
TIER = "cityhub.io/tier"
ENCRYPTED = "cityhub.io/encrypted"
MAX_GRADE = "cityhub.io/max-grade"
"""StorageClass labels: the storage tier, whether volumes are encrypted, the highest data grade allowed."""
ENDPOINT = "cityhub.io/endpoint"
DISPLAY_NAME = "cityhub.io/display-name"
"""Chinese display names go in annotations: label values must be ASCII."""

COMPONENT_TYPE = f"{GROUP}/component-type"
REQUEST = f"{GROUP}/request"
REQUEST_UID = f"{GROUP}/request-uid"
"""On backend objects a type creates in Kubernetes: the owning request's uid (checked before any patch or
delete, so one department's request never changes another's object)."""
"""On each connection Secret: the component type and the request that owns it."""

POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
POD_SECURITY_ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
POD_SECURITY_WARN = "pod-security.kubernetes.io/warn"
POD_SECURITY_AUDIT = "pod-security.kubernetes.io/audit"
"""Pod Security Admission's namespace labels (departments' namespaces enforce `restricted`)."""

SKIP_AWAIT = "pulumi.com/skipAwait"
WAIT_FOR = "pulumi.com/waitFor"
"""pulumi-kubernetes waits until these hold (a JSON list of `jsonpath=` / `condition=` expressions)."""
PATCH_FORCE = "pulumi.com/patchForce"
"""Server-side apply with force: the stack owns these fields even when the object already exists (a CRD
kept by an earlier `pulumi destroy`, or applied by hand with kubectl)."""

SYSTEM_NAMESPACE = "cityhub-system"
CPU_POOL = "cpu"
GPU_POOL = "gpu-inference"


def common() -> dict[str, str]:
    """What the stack puts on everything it creates."""
    return {PART_OF: "cityhub", MANAGED_BY: "pulumi"}
