"""Label and annotation keys cityhub writes: the contract with the operator, policies and dashboards."""

from __future__ import annotations

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
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
"""Names the shared service a pod in cityhub-system backs."""
DISPLAY_NAME = "cityhub.io/display-name"
"""Chinese display names go in annotations: label values must be ASCII."""
SKIP_AWAIT = "pulumi.com/skipAwait"
PATCH_FORCE = "pulumi.com/patchForce"
"""Server-side apply with force: the stack owns these fields even when the object already exists (a CRD
kept by an earlier `pulumi destroy`, or applied by hand with kubectl)."""

SYSTEM_NAMESPACE = "cityhub-system"


def common() -> dict[str, str]:
    return {PART_OF: "cityhub", MANAGED_BY: "pulumi"}
