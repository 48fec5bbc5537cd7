"""The city's standards as plain functions: resources (and a policy's config) in, violations out.

Stack rules see every resource of the stack, because most standards relate objects to each other (a
quota *in* a department's namespace, a claim *on* a class). Messages name the object, what is wrong and
how to fix it, since they are what a platform engineer reads when `pulumi preview` fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cityhub_api import labels
from cityhub_policies.model import (
    LIMIT_RANGE,
    NAMESPACE,
    NETWORK_POLICY,
    PVC,
    RESOURCE_QUOTA,
    SERVICE,
    STATEFUL_SET,
    STORAGE_CLASS,
    Resource,
    Violation,
    by_namespace,
    containers,
    pod_spec,
)

Config = Mapping[str, Any]

ENCRYPTED = "cityhub.io/encrypted"
MAX_GRADE = "cityhub.io/max-grade"
GPU_POOL_LABEL = "cityhub.io/pool"
GPU_KEYS = ("requests.nvidia.com/gpu", "limits.nvidia.com/gpu", "nvidia.com/gpu")
GRADED = ("important", "core")
"""Data grades (数据分类分级 重要/核心, as namespace labels) that must live on encrypted storage."""
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"

DEFAULT_REGISTRIES = ("registry.cityhub.local",)
DEFAULT_EXPOSABLE_ZONES = ("internet",)
DEFAULT_DEPARTMENT_LABELS = (
    labels.DEPARTMENT,
    labels.LEVEL,
    labels.DIVISION_CODE,
    labels.ZONE,
    labels.DATA_GRADE,
    labels.CREDIT_CODE,
)
DEFAULT_COMMON_LABELS = (labels.PART_OF, labels.MANAGED_BY)


def department_namespaces(resources: Sequence[Resource]) -> dict[str, Resource]:
    return {
        r.k8s_name: r
        for r in resources
        if r.type == NAMESPACE and r.labels.get(labels.TENANT) == "department"
    }


def is_default_deny(policy: Resource) -> bool:
    """Selects every pod, governs both directions and allows nothing."""
    spec = policy.spec
    selector = spec.get("podSelector") or {}
    return (
        not selector.get("matchLabels")
        and not selector.get("matchExpressions")
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def namespace_guardrails(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """Every department namespace has a ResourceQuota, a LimitRange and a default-deny NetworkPolicy."""
    quotas = by_namespace(resources, RESOURCE_QUOTA)
    limits = by_namespace(resources, LIMIT_RANGE)
    policies = by_namespace(resources, NETWORK_POLICY)
    out = []
    for name, ns in sorted(department_namespaces(resources).items()):
        missing = []
        if not quotas.get(name):
            missing.append("a ResourceQuota (cpu, memory, pods)")
        if not limits.get(name):
            missing.append("a LimitRange (container defaults)")
        if not any(is_default_deny(p) for p in policies.get(name, [])):
            missing.append(
                "a default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress, Egress], no rules)"
            )
        if missing:
            out.append(
                Violation(
                    f"department namespace {name} lacks {'; '.join(missing)}: "
                    "declare it with the namespace (components/compute.py, components/network.py)",
                    ns.urn,
                )
            )
    return out


def no_exposure_in_closed_zones(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """NodePort and LoadBalancer Services only in namespaces of zones that allow exposure."""
    exposable = set(config.get("exposableZones") or DEFAULT_EXPOSABLE_ZONES)
    zones = {name: ns.labels.get(labels.ZONE, "") for name, ns in department_namespaces(resources).items()}
    out = []
    for svc in resources:
        kind = svc.spec.get("type") if svc.type == SERVICE else None
        if kind not in ("NodePort", "LoadBalancer"):
            continue
        zone = zones.get(svc.namespace)
        if zone in exposable:
            continue
        where = f"zone '{zone}'" if zone else "a namespace that is not a department namespace of this stack"
        out.append(
            Violation(
                f"{svc.title} is type {kind} in {where}, which forbids exposure outside the cluster "
                f"(exposable zones: {', '.join(sorted(exposable)) or 'none'}): use type ClusterIP, "
                "or move the service to a department in an exposable zone",
                svc.urn,
            )
        )
    return out


def normalize_image(image: str) -> str:
    """An image reference with its registry spelled out, as the container runtime resolves it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def registry_allowed(image: str, registries: Sequence[str]) -> bool:
    ref = normalize_image(image)
    return any(ref.startswith(r.rstrip("/") + "/") for r in registries)


def approved_registries(resource: Resource, config: Config) -> list[Violation]:
    """Containers run images from the configured registries only."""
    spec = pod_spec(resource)
    if spec is None:
        return []
    registries = list(config.get("registries") or DEFAULT_REGISTRIES)
    out = []
    for c in containers(spec):
        image = str(c.get("image") or "")
        if image and not registry_allowed(image, registries):
            resolved = normalize_image(image)
            shown = image if resolved == image else f"{image} ({resolved})"
            out.append(
                Violation(
                    f"{resource.title}: container '{c.get('name')}' uses image {shown}, "
                    "not from an approved registry "
                    f"({', '.join(registries)}): mirror it there or add the registry to the "
                    "policy config `registries`",
                    resource.urn,
                )
            )
    return out


def _claims(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    """(claim name, claim spec) for a PVC or a StatefulSet's volume claim templates."""
    if resource.type == PVC:
        return [(resource.k8s_name, resource.spec)]
    if resource.type == STATEFUL_SET:
        return [
            (str((t.get("metadata") or {}).get("name", "")), t.get("spec") or {})
            for t in resource.spec.get("volumeClaimTemplates") or []
        ]
    return []


def graded_data_encrypted(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """Important and core data (重要/核心) only on encrypted storage classes, and no class that claims to
    hold such data without being encrypted."""
    classes = {r.k8s_name: r for r in resources if r.type == STORAGE_CLASS}
    encrypted = {n for n, c in classes.items() if c.labels.get(ENCRYPTED) == "true"}
    encrypted |= set(config.get("encryptedStorageClasses") or [])
    default = next((n for n, c in classes.items() if c.annotations.get(DEFAULT_CLASS) == "true"), None)
    out = []
    for name, sc in sorted(classes.items()):
        if sc.labels.get(MAX_GRADE) in GRADED and name not in encrypted:
            out.append(
                Violation(
                    f"{sc.title} may hold {sc.labels[MAX_GRADE]} data but is not encrypted: set "
                    f"encrypted: true on the class (label {ENCRYPTED}=true) or lower its maxGrade to 一般",
                    sc.urn,
                )
            )
    grades = {n: ns.labels.get(labels.DATA_GRADE) for n, ns in department_namespaces(resources).items()}
    for r in resources:
        grade = grades.get(r.namespace)
        if grade not in GRADED:
            continue
        for claim, spec in _claims(r):
            cls = spec.get("storageClassName") or default
            if cls not in encrypted:
                shown = f"class {cls}" if cls else "no storage class (and the stack has no default class)"
                out.append(
                    Violation(
                        f"{r.title}: claim '{claim}' holds {grade} data (namespace {r.namespace}) "
                        f"on {shown}, which is not encrypted: use one of "
                        f"{', '.join(sorted(encrypted)) or '(none declared)'}",
                        r.urn,
                    )
                )
    return out


def department_namespace_labels(resource: Resource, config: Config) -> list[Violation]:
    """Department namespaces carry every label the operator, policies and dashboards select on."""
    if resource.type != NAMESPACE or resource.labels.get(labels.TENANT) != "department":
        return []
    required = list(config.get("labels") or DEFAULT_DEPARTMENT_LABELS)
    missing = [k for k in required if not resource.labels.get(k)]
    if not missing:
        return []
    return [
        Violation(
            f"{resource.title} is a department namespace without the labels {', '.join(missing)}: "
            "create it with components/tenancy.py (namespace_labels), which sets them from the stack config",
            resource.urn,
        )
    ]


def common_labels(resource: Resource, config: Config) -> list[Violation]:
    """Every Kubernetes object the stack creates says it is part of cityhub and who manages it."""
    if not resource.is_kubernetes or resource.type.startswith(("kubernetes:yaml", "pulumi:providers")):
        return []
    required = list(config.get("labels") or DEFAULT_COMMON_LABELS)
    missing = [k for k in required if not resource.labels.get(k)]
    if not missing:
        return []
    return [
        Violation(
            f"{resource.title} lacks the labels {', '.join(missing)}: add components.labels.common() "
            "to its metadata so inventories and dashboards find it",
            resource.urn,
        )
    ]


def _gpus(quota: Resource) -> int:
    hard = quota.spec.get("hard") or {}
    values = []
    for key in GPU_KEYS:
        try:
            values.append(int(float(hard[key])))
        except (KeyError, TypeError, ValueError):
            continue
    return max(values, default=0)


def _pool(resources: Sequence[Resource]) -> tuple[int | None, dict[str, Resource]]:
    pool_ns = {r.k8s_name for r in resources if r.type == NAMESPACE and r.labels.get(GPU_POOL_LABEL)}
    quotas = by_namespace(resources, RESOURCE_QUOTA)
    sizes = [_gpus(q) for ns in pool_ns for q in quotas.get(ns, [])]
    dept = department_namespaces(resources)
    dept_quotas = {q.urn or q.name: q for ns in dept for q in quotas.get(ns, []) if _gpus(q) > 0}
    return (sum(sizes) if pool_ns else None), dept_quotas


def gpu_quota_within_pool(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """No department may be granted more GPUs than the shared inference pool has."""
    pool, quotas = _pool(resources)
    out = []
    for q in quotas.values():
        gpus = _gpus(q)
        if pool is None or gpus > pool:
            have = "the stack declares no GPU pool" if pool is None else f"the pool has {pool}"
            out.append(
                Violation(
                    f"{q.title} grants {gpus} GPUs but {have}: lower the department's quota.gpu "
                    "or enlarge cityhub:gpuPool.gpus",
                    q.urn,
                )
            )
    return out


def gpu_pool_overcommit(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """All departments' GPU quotas together fit in the pool (advisory: overcommit is a choice)."""
    pool, quotas = _pool(resources)
    total = sum(_gpus(q) for q in quotas.values())
    if pool is None or total <= pool:
        return []
    owners = ", ".join(sorted(f"{q.namespace}={_gpus(q)}" for q in quotas.values()))
    return [
        Violation(
            f"department GPU quotas add up to {total} ({owners}) but the pool has {pool}: "
            "departments may wait for GPUs under load; shrink quotas or grow the pool"
        )
    ]


def no_privileged_pods(resource: Resource, config: Config) -> list[Violation]:
    """No privileged containers, and no pods on the host's network, PID or IPC namespaces."""
    spec = pod_spec(resource)
    if spec is None:
        return []
    problems = [f"{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    for c in containers(spec):
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged") is True:
            problems.append(f"container '{c.get('name')}' privileged: true")
    if not problems:
        return []
    return [
        Violation(
            f"{resource.title} asks for {', '.join(problems)}: department workloads run unprivileged on "
            "the pod network; remove these settings",
            resource.urn,
        )
    ]
