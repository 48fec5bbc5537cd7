"""Compute: priority classes, each department's quota (compute, and the count of component requests) and
container defaults, and 平急切换.

Normal/emergency mode (平急切换) changes exactly two things per department, both here:
- its ResourceQuotas (`quota` in normal mode, `emergencyQuota` in emergency mode), and
- its right to the emergency priority: a quota scoped to the `cityhub-emergency` PriorityClass allows
  no pods except for emergency responders in emergency mode (and the namespace's priority-class label,
  set by DepartmentTenancy from `priority_class_for`, tells the operator which class to use).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import ContainerLimits, Department, Mode, Quota
from cityhub_api import labels
from cityhub_api.api import EMERGENCY_PRIORITY, GROUP, NORMAL_PRIORITY
from cityhub_api.registry import component_types

PRIORITY_VALUES = {EMERGENCY_PRIORITY: 1_000_000, NORMAL_PRIORITY: 100_000}
"""Well below system-cluster-critical (2e9), so the cluster's own pods always win."""
PRIORITY_DESCRIPTIONS = {
    EMERGENCY_PRIORITY: "cityhub: emergency response (急时), preempts normal work",
    NORMAL_PRIORITY: "cityhub: normal work (平时)",
}

COMPONENT_REQUESTS_QUOTA = "component-requests"
"""The ResourceQuota counting a department's component requests; its name is in the API server's refusal."""

UNLIMITED_PODS = 10_000
"""Stands for "no pod limit" in the emergency-priority quota: cpu and memory quotas bind long before."""


def priority_class_for(dept: Department, mode: Mode) -> str:
    """The PriorityClass a department's workloads run at: emergency responders move up in emergency mode."""
    return EMERGENCY_PRIORITY if mode == "emergency" and dept.emergency_responder else NORMAL_PRIORITY


def quota_hard(quota: Quota) -> dict[str, str]:
    """The ResourceQuota `hard` map for a department's compute quota."""
    hard = {
        "requests.cpu": quota.cpu,
        "limits.cpu": quota.cpu,
        "requests.memory": quota.memory,
        "limits.memory": quota.memory,
        "requests.nvidia.com/gpu": str(quota.gpu),
    }
    if quota.pods is not None:
        hard["pods"] = str(quota.pods)
    return hard


def component_requests_hard(quota: Quota) -> dict[str, str]:
    """The ResourceQuota `hard` map counting the department's component requests: `quota.components` of each
    type (object-count quota, `count/<plural>.<group>`), for every type the registry knows, so a new type is
    limited from the start. The API server refuses the next one with "exceeded quota: component-requests"."""
    return {
        f"count/{t.plural}.{GROUP}": str(quota.components)
        for t in sorted(component_types().values(), key=lambda t: t.plural)
    }


def counted_by_quota_controller(hard: dict[str, str]) -> str:
    """The `pulumi.com/waitFor` value that holds `pulumi up` until the quota controller counts every resource.

    The API server refuses a create with "status unknown for quota" while a quota's `status.used` lacks the
    resource, and the quota controller learns a new CRD's resource only at its next discovery sync (up to
    30 s). Without this wait, a department applying its first request right after `pulumi up` is refused."""
    # RFC 9535 bracket notation (pulumi-kubernetes parses waitFor paths with it): the keys hold '/' and '.'.
    return json.dumps([f"jsonpath={{.status.used['{key}']}}" for key in sorted(hard)])


def emergency_priority_hard(dept: Department, mode: Mode) -> dict[str, str]:
    """The pods a department may run at the emergency priority in this mode."""
    if priority_class_for(dept, mode) != EMERGENCY_PRIORITY:
        return {"pods": "0"}
    pods = dept.quota_for(mode).pods
    return {"pods": str(pods if pods is not None else UNLIMITED_PODS)}


@dataclass(frozen=True)
class ComputeArgs:
    departments: tuple[Department, ...]
    namespaces: dict[str, pulumi.Input[str]]
    """Department slug -> its namespace (from DepartmentTenancy, so quotas wait for the namespace)."""
    mode: Mode = "normal"
    limits: ContainerLimits = field(default_factory=ContainerLimits)


class Compute(pulumi.ComponentResource):
    """PriorityClasses for normal and emergency work, and per department a compute ResourceQuota
    (cpu, memory, pods, nvidia.com/gpu), a quota on its component requests (so no department can flood the
    operator and the backends), a quota gating the emergency priority, and a LimitRange giving containers
    default requests and limits (so every pod counts against the quota)."""

    quotas: dict[str, dict[str, str]]
    """Department slug -> the compute quota in force."""

    def __init__(self, name: str, args: ComputeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:compute:Compute", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        for priority, value in PRIORITY_VALUES.items():
            k8s.scheduling.v1.PriorityClass(
                f"{name}-{priority}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=priority, labels=labels.common()),
                value=value,
                global_default=False,
                preemption_policy="PreemptLowerPriority",
                description=PRIORITY_DESCRIPTIONS[priority],
                opts=child,
            )
        self.quotas = {}
        for dept in args.departments:
            ns = args.namespaces[dept.slug]
            hard = quota_hard(dept.quota_for(args.mode))
            self.quotas[dept.slug] = hard
            k8s.core.v1.ResourceQuota(
                f"{name}-{dept.slug}-compute",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="compute", namespace=ns, labels=labels.common()),
                spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=hard),
                opts=child,
            )
            requests_hard = component_requests_hard(dept.quota_for(args.mode))
            k8s.core.v1.ResourceQuota(
                f"{name}-{dept.slug}-component-requests",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=COMPONENT_REQUESTS_QUOTA,
                    namespace=ns,
                    labels=labels.common(),
                    annotations={labels.WAIT_FOR: counted_by_quota_controller(requests_hard)},
                ),
                spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=requests_hard),
                opts=child,
            )
            k8s.core.v1.ResourceQuota(
                f"{name}-{dept.slug}-emergency-priority",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="emergency-priority", namespace=ns, labels=labels.common()
                ),
                spec=k8s.core.v1.ResourceQuotaSpecArgs(
                    hard=emergency_priority_hard(dept, args.mode),
                    scope_selector=k8s.core.v1.ScopeSelectorArgs(
                        match_expressions=[
                            k8s.core.v1.ScopedResourceSelectorRequirementArgs(
                                scope_name="PriorityClass", operator="In", values=[EMERGENCY_PRIORITY]
                            )
                        ]
                    ),
                ),
                opts=child,
            )
            k8s.core.v1.LimitRange(
                f"{name}-{dept.slug}-defaults",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="container-defaults", namespace=ns, labels=labels.common()
                ),
                spec=k8s.core.v1.LimitRangeSpecArgs(
                    limits=[
                        k8s.core.v1.LimitRangeItemArgs(
                            type="Container",
                            default_request={
                                "cpu": args.limits.default_request_cpu,
                                "memory": args.limits.default_request_memory,
                            },
                            default={"cpu": args.limits.default_cpu, "memory": args.limits.default_memory},
                        )
                    ]
                ),
                opts=child,
            )
        self.register_outputs({"quotas": self.quotas})
