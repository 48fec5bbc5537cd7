"""The policy pack's rules: for every standard, a stack that breaks it and one that keeps it."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from cityhub import paths

sys.path.insert(0, str(paths.repo_root() / "policies"))

from cityhub_policies import pack, rules
from cityhub_policies.model import Resource

COMMON = {"app.kubernetes.io/part-of": "cityhub", "app.kubernetes.io/managed-by": "pulumi"}


def k8s(
    type_: str, name: str, namespace: str | None = None, labels: dict[str, str] | None = None, **props: Any
) -> Resource:
    meta: dict[str, Any] = {"name": name, "labels": {**COMMON, **(labels or {})}}
    if namespace:
        meta["namespace"] = namespace
    return Resource(
        type=f"kubernetes:{type_}",
        name=f"hub-{name}",
        urn=f"urn:{type_}:{namespace}:{name}",
        props={"metadata": meta, **props},
    )


def department(slug: str, zone: str = "egov", grade: str = "general") -> Resource:
    return k8s(
        "core/v1:Namespace",
        f"dept-{slug}",
        labels={
            "cityhub.io/tenant": "department",
            "cityhub.io/department": slug,
            "cityhub.io/level": "city",
            "cityhub.io/division-code": "330100",
            "cityhub.io/zone": zone,
            "cityhub.io/data-grade": grade,
            "cityhub.io/credit-code": "11330100024900011R",
        },
    )


DEFAULT_DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def guardrails(ns: str, gpu: int = 0) -> list[Resource]:
    return [
        k8s(
            "core/v1:ResourceQuota",
            "compute",
            ns,
            spec={"hard": {"requests.cpu": "4", "requests.nvidia.com/gpu": str(gpu)}},
        ),
        k8s("core/v1:LimitRange", "container-defaults", ns, spec={"limits": [{"type": "Container"}]}),
        k8s("networking.k8s.io/v1:NetworkPolicy", "default-deny", ns, spec=DEFAULT_DENY),
    ]


def storage_class(name: str, encrypted: bool, max_grade: str, default: bool = False) -> Resource:
    r = k8s(
        "storage.k8s.io/v1:StorageClass",
        name,
        labels={"cityhub.io/encrypted": str(encrypted).lower(), "cityhub.io/max-grade": max_grade},
    )
    if default:
        r.props["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return r


def gpu_pool(gpus: int) -> list[Resource]:
    return [
        k8s("core/v1:Namespace", "cityhub-inference", labels={"cityhub.io/pool": "gpu-inference"}),
        k8s(
            "core/v1:ResourceQuota",
            "gpu-pool",
            "cityhub-inference",
            spec={"hard": {"requests.nvidia.com/gpu": str(gpus)}},
        ),
    ]


def pod(
    name: str = "app",
    namespace: str = "dept-a",
    image: str = "registry.cityhub.local/a/app:1",
    kind: str = "apps/v1:Deployment",
    **pod_spec: Any,
) -> Resource:
    spec = {"containers": [{"name": "app", "image": image}], **pod_spec}
    if kind == "core/v1:Pod":
        return k8s(kind, name, namespace, spec=spec)
    if kind == "batch/v1:CronJob":
        return k8s(kind, name, namespace, spec={"jobTemplate": {"spec": {"template": {"spec": spec}}}})
    return k8s(kind, name, namespace, spec={"template": {"spec": spec}})


def good_stack() -> list[Resource]:
    return [
        department("a", zone="egov", grade="general"),
        *guardrails("dept-a"),
        department("b", zone="private", grade="core"),
        *guardrails("dept-b", gpu=2),
        department("c", zone="internet"),
        *guardrails("dept-c"),
        storage_class("std", encrypted=False, max_grade="general", default=True),
        storage_class("core", encrypted=True, max_grade="core"),
        *gpu_pool(4),
    ]


def messages(violations: list[rules.Violation]) -> str:
    return "\n".join(v.message for v in violations)


# ---- department-namespace-guardrails


def test_the_good_stack_keeps_every_stack_standard() -> None:
    stack = good_stack()
    for standard in pack.STANDARDS:
        if not standard.per_resource:
            assert standard.check(stack, {}) == [], standard.name  # type: ignore[call-arg,arg-type]


@pytest.mark.parametrize(
    ("drop", "missing"),
    [
        ("ResourceQuota", "lacks a ResourceQuota"),
        ("LimitRange", "lacks a LimitRange"),
        ("NetworkPolicy", "default-deny NetworkPolicy"),
    ],
)
def test_a_department_namespace_without_a_guardrail_is_named(drop: str, missing: str) -> None:
    stack = [r for r in good_stack() if not (r.namespace == "dept-a" and r.kind == drop)]
    found = rules.namespace_guardrails(stack, {})
    assert len(found) == 1
    assert "department namespace dept-a lacks" in found[0].message and missing in found[0].message
    assert found[0].urn == "urn:core/v1:Namespace:None:dept-a"


def test_a_network_policy_that_allows_something_is_not_default_deny() -> None:
    stack = good_stack()
    allowing = k8s(
        "networking.k8s.io/v1:NetworkPolicy",
        "default-deny",
        "dept-a",
        spec={**DEFAULT_DENY, "ingress": [{"from": [{"podSelector": {}}]}]},
    )
    stack = [r for r in stack if not (r.namespace == "dept-a" and r.kind == "NetworkPolicy")] + [allowing]
    assert "default-deny NetworkPolicy" in messages(rules.namespace_guardrails(stack, {}))
    ingress_only = k8s(
        "networking.k8s.io/v1:NetworkPolicy",
        "deny-in",
        "dept-a",
        spec={"podSelector": {}, "policyTypes": ["Ingress"]},
    )
    stack[-1] = ingress_only
    assert "default-deny NetworkPolicy" in messages(rules.namespace_guardrails(stack, {}))


# ---- no-exposure-in-closed-zones


@pytest.mark.parametrize("kind", ["NodePort", "LoadBalancer"])
def test_exposed_service_in_a_closed_zone_is_refused(kind: str) -> None:
    svc = k8s("core/v1:Service", "web", "dept-b", spec={"type": kind, "ports": [{"port": 80}]})
    found = rules.no_exposure_in_closed_zones([*good_stack(), svc], {"exposableZones": ["internet"]})
    assert messages(found) == (
        f"Service dept-b/web is type {kind} in zone 'private', which forbids exposure outside the cluster "
        "(exposable zones: internet): use type ClusterIP, or move the service to a department in an "
        "exposable zone"
    )


def test_exposed_service_in_an_exposable_zone_or_clusterip_passes() -> None:
    public = k8s("core/v1:Service", "web", "dept-c", spec={"type": "LoadBalancer"})
    internal = k8s("core/v1:Service", "api", "dept-b", spec={"type": "ClusterIP"})
    assert rules.no_exposure_in_closed_zones([*good_stack(), public, internal], {}) == []


def test_exposure_outside_department_namespaces_is_refused() -> None:
    svc = k8s("core/v1:Service", "nats", "cityhub-system", spec={"type": "NodePort"})
    assert "not a department namespace" in messages(rules.no_exposure_in_closed_zones([svc], {}))


# ---- images-from-approved-registries


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("registry.cityhub.local/cityhub/operator:0.1.0", True),
        ("registry.cityhub.local:443/x", False),
        ("nginx", False),
        ("docker.io/library/nginx:1.27", False),
        ("registry.cityhub.local.evil.example/x", False),
        ("ghcr.io/registry.cityhub.local/x", False),
    ],
)
def test_images_only_from_configured_registries(image: str, ok: bool) -> None:
    for kind in ("core/v1:Pod", "apps/v1:Deployment", "apps/v1:StatefulSet", "batch/v1:CronJob"):
        found = rules.approved_registries(pod(image=image, kind=kind), {})
        assert (found == []) is ok, (kind, image)
    if not ok:
        assert f"uses image {image}" in found[0].message and "registry.cityhub.local" in found[0].message


def test_registries_come_from_the_policy_config() -> None:
    config = {"registries": ["docker.io/library", "harbor.city.gov.cn/dept"]}
    assert rules.approved_registries(pod(image="nginx:1.27"), config) == []
    assert rules.approved_registries(pod(image="harbor.city.gov.cn/dept/app:2"), config) == []
    assert rules.approved_registries(pod(image="harbor.city.gov.cn/other/app:2"), config)
    init = pod(initContainers=[{"name": "init", "image": "busybox"}])
    assert "container 'init' uses image busybox (docker.io/library/busybox)" in messages(
        rules.approved_registries(init, {})
    )


# ---- graded-data-on-encrypted-storage


def pvc(namespace: str, cls: str | None) -> Resource:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if cls:
        spec["storageClassName"] = cls
    return k8s("core/v1:PersistentVolumeClaim", "data", namespace, spec=spec)


def test_core_data_on_an_unencrypted_class_is_refused() -> None:
    found = rules.graded_data_encrypted([*good_stack(), pvc("dept-b", "std")], {})
    assert messages(found) == (
        "PersistentVolumeClaim dept-b/data: claim 'data' holds core data (namespace dept-b) on class std, "
        "which is not encrypted: use one of core"
    )


def test_core_data_on_the_unencrypted_default_class_is_refused() -> None:
    assert "on class std" in messages(rules.graded_data_encrypted([*good_stack(), pvc("dept-b", None)], {}))


def test_statefulset_claim_templates_are_checked() -> None:
    sts = k8s(
        "apps/v1:StatefulSet",
        "db",
        "dept-b",
        spec={
            "template": {"spec": {"containers": []}},
            "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": {"storageClassName": "std"}}],
        },
    )
    assert "claim 'pgdata' holds core data" in messages(rules.graded_data_encrypted([*good_stack(), sts], {}))


def test_graded_data_on_encrypted_classes_and_general_data_anywhere_pass() -> None:
    stack = [*good_stack(), pvc("dept-b", "core"), pvc("dept-a", "std"), pvc("dept-a", None)]
    assert rules.graded_data_encrypted(stack, {}) == []
    assert (
        rules.graded_data_encrypted(
            [*good_stack(), pvc("dept-b", "ceph-enc")], {"encryptedStorageClasses": ["ceph-enc"]}
        )
        == []
    )


def test_a_class_for_core_data_must_be_encrypted() -> None:
    stack = [*good_stack(), storage_class("fast", encrypted=False, max_grade="important")]
    assert messages(rules.graded_data_encrypted(stack, {})).startswith(
        "StorageClass fast may hold important data but is not encrypted"
    )


# ---- department-namespace-labels / cityhub-common-labels


def test_department_namespace_missing_labels_is_refused() -> None:
    ns = department("a")
    del ns.props["metadata"]["labels"]["cityhub.io/data-grade"]
    del ns.props["metadata"]["labels"]["cityhub.io/zone"]
    assert messages(rules.department_namespace_labels(ns, {})).startswith(
        "Namespace dept-a is a department namespace without the labels cityhub.io/zone, cityhub.io/data-grade"
    )
    assert rules.department_namespace_labels(department("a"), {}) == []
    assert rules.department_namespace_labels(department("a"), {"labels": ["cityhub.io/owner"]})


def test_objects_without_the_common_labels_are_reported() -> None:
    cm = k8s("core/v1:ConfigMap", "x", "dept-a")
    assert rules.common_labels(cm, {}) == []
    cm.props["metadata"]["labels"] = {}
    assert "lacks the labels app.kubernetes.io/part-of, app.kubernetes.io/managed-by" in messages(
        rules.common_labels(cm, {})
    )
    component = Resource(type="cityhub:hub:ClusterHub", name="hub")
    assert rules.common_labels(component, {}) == []


# ---- gpu-quota-within-pool / gpu-pool-overcommit


def test_a_department_gpu_quota_larger_than_the_pool_is_refused() -> None:
    stack = [r for r in good_stack() if r.namespace != "dept-b" or r.kind != "ResourceQuota"]
    stack += guardrails("dept-b", gpu=6)[:1]
    assert messages(rules.gpu_quota_within_pool(stack, {})) == (
        "ResourceQuota dept-b/compute grants 6 GPUs but the pool has 4: lower the department's quota.gpu "
        "or enlarge cityhub:gpuPool.gpus"
    )


def test_gpu_quota_without_a_pool_is_refused() -> None:
    stack = [r for r in good_stack() if "inference" not in r.k8s_name + r.namespace]
    assert "the stack declares no GPU pool" in messages(rules.gpu_quota_within_pool(stack, {}))


def test_gpu_quotas_that_together_overcommit_the_pool_are_reported() -> None:
    stack = [*good_stack(), *guardrails("dept-a", gpu=3)[:1]]
    assert rules.gpu_quota_within_pool(stack, {}) == []
    assert messages(rules.gpu_pool_overcommit(stack, {})) == (
        "department GPU quotas add up to 5 (dept-a=3, dept-b=2) but the pool has 4: departments may wait "
        "for GPUs under load; shrink quotas or grow the pool"
    )


# ---- no-privileged-pods


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"hostNetwork": True}, "hostNetwork: true"),
        ({"hostPID": True}, "hostPID: true"),
        ({"hostIPC": True}, "hostIPC: true"),
        (
            {"containers": [{"name": "x", "image": "r/x", "securityContext": {"privileged": True}}]},
            "container 'x' privileged: true",
        ),
    ],
)
def test_privileged_or_host_namespace_pods_are_refused(spec: dict[str, Any], shown: str) -> None:
    for kind in ("core/v1:Pod", "apps/v1:DaemonSet", "batch/v1:CronJob"):
        found = rules.no_privileged_pods(pod(kind=kind, **spec), {})
        assert shown in messages(found), kind


def test_unprivileged_pods_pass() -> None:
    spec = {
        "hostNetwork": False,
        "containers": [{"name": "x", "image": "r/x", "securityContext": {"privileged": False}}],
    }
    assert rules.no_privileged_pods(pod(**spec), {}) == []
    assert rules.no_privileged_pods(department("a"), {}) == []


# ---- the pack, through pulumi-policy's own argument types


def _policy(name: str) -> Any:
    return next(p for p in pack.policies() if p.name == name)


def test_pack_levels_default_mandatory_except_the_advisory_ones() -> None:
    levels = {p.name: p.enforcement_level for p in pack.policies()}
    assert {n for n, lvl in levels.items() if lvl == EnforcementLevel.ADVISORY} == {
        "cityhub-common-labels",
        "gpu-pool-overcommit",
    }
    assert len(levels) == 9


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_resource_policy_reports_through_pulumi_policy() -> None:
    reported: list[tuple[str, str | None]] = []
    bad = pod(image="nginx")
    args = ResourceValidationArgs(
        bad.type,
        copy.deepcopy(bad.props),
        bad.urn,
        bad.name,
        _opts(),
        None,
        {"registries": ["registry.cityhub.local"]},
    )
    _policy("images-from-approved-registries").validate(args, lambda m, u=None: reported.append((m, u)))
    assert len(reported) == 1 and "nginx" in reported[0][0]


def test_stack_policy_reports_through_pulumi_policy() -> None:
    reported: list[tuple[str, str | None]] = []
    stack = [r for r in good_stack() if r.kind != "LimitRange"]
    resources = [PolicyResource(r.type, r.props, r.urn, r.name, _opts(), None, None, [], {}) for r in stack]
    _policy("department-namespace-guardrails").validate(
        StackValidationArgs(resources, {}), lambda m, u=None: reported.append((m, u))
    )
    assert [u for _, u in reported] == [f"urn:core/v1:Namespace:None:dept-{s}" for s in "abc"]
