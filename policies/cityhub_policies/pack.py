"""The policies of the pack: each rule from rules.py with its name, default level and config schema.

Levels are set per stack in a policy config file (policies/config/<stack>.json), passed with
`--policy-pack-config`: `{"images-from-approved-registries": {"enforcementLevel": "advisory"}}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from cityhub_policies import rules
from cityhub_policies.model import Resource, Violation, plain

PACK_NAME = "cityhub-standards"
MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

StackRule = Callable[[Sequence[Resource], rules.Config], list[Violation]]
ResourceRule = Callable[[Resource, rules.Config], list[Violation]]

_STRINGS = {"type": "array", "items": {"type": "string"}}


@dataclass(frozen=True)
class Standard:
    name: str
    description: str
    level: EnforcementLevel
    check: StackRule | ResourceRule
    per_resource: bool
    config: dict[str, dict[str, Any]] | None = None


STANDARDS: tuple[Standard, ...] = (
    Standard(
        "department-namespace-guardrails",
        "Every department namespace has a ResourceQuota, a LimitRange and a default-deny NetworkPolicy.",
        MANDATORY,
        rules.namespace_guardrails,
        per_resource=False,
    ),
    Standard(
        "no-exposure-in-closed-zones",
        "NodePort and LoadBalancer Services only in zones that allow exposure outside the cluster.",
        MANDATORY,
        rules.no_exposure_in_closed_zones,
        per_resource=False,
        config={"exposableZones": {**_STRINGS, "default": list(rules.DEFAULT_EXPOSABLE_ZONES)}},
    ),
    Standard(
        "images-from-approved-registries",
        "Containers run images from the city's configured registries only.",
        MANDATORY,
        rules.approved_registries,
        per_resource=True,
        config={"registries": {**_STRINGS, "default": list(rules.DEFAULT_REGISTRIES)}},
    ),
    Standard(
        "graded-data-on-encrypted-storage",
        "Important and core data (重要/核心) only on encrypted storage classes.",
        MANDATORY,
        rules.graded_data_encrypted,
        per_resource=False,
        config={"encryptedStorageClasses": {**_STRINGS, "default": []}},
    ),
    Standard(
        "department-namespace-labels",
        "Department namespaces carry department, level, division, zone, data grade and credit code labels.",
        MANDATORY,
        rules.department_namespace_labels,
        per_resource=True,
        config={"labels": {**_STRINGS, "default": list(rules.DEFAULT_DEPARTMENT_LABELS)}},
    ),
    Standard(
        "cityhub-common-labels",
        "Every Kubernetes object of the stack carries app.kubernetes.io/part-of and managed-by.",
        ADVISORY,
        rules.common_labels,
        per_resource=True,
        config={"labels": {**_STRINGS, "default": list(rules.DEFAULT_COMMON_LABELS)}},
    ),
    Standard(
        "gpu-quota-within-pool",
        "No department's GPU quota exceeds the shared inference pool.",
        MANDATORY,
        rules.gpu_quota_within_pool,
        per_resource=False,
    ),
    Standard(
        "gpu-pool-overcommit",
        "All departments' GPU quotas together fit in the shared inference pool.",
        ADVISORY,
        rules.gpu_pool_overcommit,
        per_resource=False,
    ),
    Standard(
        "no-privileged-pods",
        "No privileged containers and no host network, PID or IPC namespaces.",
        MANDATORY,
        rules.no_privileged_pods,
        per_resource=True,
    ),
)


def to_resource(type_: str, name: str, urn: str, props: Any) -> Resource:
    return Resource(type=type_, name=name, props=plain(props), urn=urn)


def _report(violations: list[Violation], report: ReportViolation) -> None:
    for v in violations:
        report(v.message, v.urn or None)


def _resource_validator(check: ResourceRule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        resource = to_resource(args.resource_type, args.name, args.urn, args.props)
        # The resource's own URN is implied; reporting it again would only repeat it in the output.
        _report([Violation(v.message) for v in check(resource, args.get_config())], report)

    return validate


def _stack_validator(check: StackRule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [to_resource(r.resource_type, r.name, r.urn, r.props) for r in args.resources]
        _report(check(resources, args.get_config()), report)

    return validate


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    out: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for s in STANDARDS:
        schema = PolicyConfigSchema(properties=s.config) if s.config else None
        if s.per_resource:
            out.append(
                ResourceValidationPolicy(
                    name=s.name,
                    description=s.description,
                    enforcement_level=s.level,
                    validate=_resource_validator(s.check),  # type: ignore[arg-type]
                    config_schema=schema,
                )
            )
        else:
            out.append(
                StackValidationPolicy(
                    name=s.name,
                    description=s.description,
                    enforcement_level=s.level,
                    validate=_stack_validator(s.check),  # type: ignore[arg-type]
                    config_schema=schema,
                )
            )
    return out


def serve() -> None:
    """Start the pack's analyzer server (prints its port, then serves until the engine stops it)."""
    PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=MANDATORY)  # type: ignore[arg-type]
