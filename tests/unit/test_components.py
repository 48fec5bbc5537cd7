"""The hub's components under Pulumi's mocks: what `pulumi up` would create, and what a change touches."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from cityhub.config import load_config
from cityhub.config_model import HubConfig
from cityhub_api import registry

STACKS = Path(__file__).resolve().parents[2] / "stacks"


@dataclass(frozen=True)
class Created:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str

    @property
    def k8s_name(self) -> str:
        return self.inputs["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return self.inputs["metadata"].get("namespace")


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[Created] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.custom:
            self.created.append(Created(args.typ, args.name, args.inputs, args.provider or ""))
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def run(program: Callable[[], object]) -> list[Created]:
    """Run `program` under fresh mocks and return every custom resource it declared."""
    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, preview=False)

    @pulumi.runtime.test
    def wrapped() -> None:
        program()

    wrapped()
    return recorder.created


def stack_raw(stack: str = "dev") -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    return {key.removeprefix("cityhub:"): value for key, value in doc.items()}


def hub(raw: dict[str, Any]) -> list[Created]:
    from cityhub_api.catalog import load_offerings
    from components.hub import ClusterHub, ClusterHubArgs

    config = load_config(raw)
    offerings = tuple(load_offerings(config.operator.catalog, config.operator.components))
    return run(lambda: [ClusterHub(c.name, ClusterHubArgs(config, c, offerings)) for c in config.clusters])


def dev_config() -> HubConfig:
    return load_config(stack_raw())


def find(created: list[Created], kind: str, name: str, namespace: str | None = None) -> Created:
    matches = [
        r for r in created if r.type.endswith(f":{kind}") and r.k8s_name == name and r.namespace == namespace
    ]
    assert len(matches) == 1, f"{kind} {namespace}/{name}: {len(matches)} found"
    return matches[0]


def of_kind(created: list[Created], kind: str) -> list[Created]:
    return [r for r in created if r.type.endswith(f":{kind}")]


@pytest.fixture(scope="module")
def dev() -> list[Created]:
    return hub(stack_raw())


def changed(before: list[Created], after: list[Created]) -> dict[str, tuple[Created, Created]]:
    """Resources (by logical name) whose inputs differ; fails if any were added or removed."""
    old = {r.name: r for r in before}
    new = {r.name: r for r in after}
    assert old.keys() == new.keys(), f"added {new.keys() - old.keys()}, removed {old.keys() - new.keys()}"
    return {n: (old[n], new[n]) for n in old if old[n].inputs != new[n].inputs}


# --- the whole hub


def test_names_are_unique_and_stable(dev: list[Created]) -> None:
    names = [(r.type, r.name) for r in dev]
    assert len(names) == len(set(names))
    again = hub(stack_raw())
    assert changed(dev, again) == {}


def test_everything_is_labelled_as_part_of_cityhub(dev: list[Created]) -> None:
    for r in dev:
        assert r.inputs["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "cityhub", r.name


def test_foundation_keeps_the_system_namespace_and_city(dev: list[Created]) -> None:
    system = find(dev, "Namespace", "cityhub-system")
    assert system.inputs["metadata"]["labels"]["cityhub.io/division-code"] == "330100"
    city = find(dev, "ConfigMap", "cityhub-city", "cityhub-system")
    assert city.inputs["data"] == {"city": "示例市", "divisionCode": "330100"}


def test_shared_services_get_stable_endpoints() -> None:
    from components.hub import ClusterHub, ClusterHubArgs

    config = dev_config()
    endpoints: dict[str, str] = {}

    def program() -> None:
        endpoints.update(ClusterHub("hub", ClusterHubArgs(config, config.clusters[0])).endpoints)

    created = run(program)
    assert endpoints["identity"] == "identity.cityhub-system.svc.cluster.local:8080"
    assert endpoints["messaging"] == "messaging.cityhub-system.svc.cluster.local:4222"
    assert set(endpoints) == set(registry.component_types()), "every type has a front door"
    service = find(created, "Service", "maps", "cityhub-system")
    assert service.inputs["spec"]["selector"] == {"cityhub.io/service": "maps"}
    # No pods back the service until the operator runs, so Pulumi must not wait for endpoints.
    assert service.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


# --- department tenancy


def test_department_namespace_labels(dev: list[Created]) -> None:
    ns = find(dev, "Namespace", "dept-dongcheng-yingji")
    assert (
        ns.inputs["metadata"]["labels"].items()
        >= {
            "cityhub.io/department": "dongcheng-yingji",
            "cityhub.io/level": "district",
            "cityhub.io/division-code": "330102",
            "cityhub.io/zone": "egov",
            "cityhub.io/data-grade": "important",
            "cityhub.io/credit-code": "11330102025100016P",
            "cityhub.io/emergency-responder": "true",
            "cityhub.io/priority-class": "cityhub-normal",
        }.items()
    )
    assert ns.inputs["metadata"]["annotations"]["cityhub.io/display-name"] == "东城区应急管理局"
    for r in of_kind(dev, "Namespace"):
        assert all(v.isascii() for v in r.inputs["metadata"]["labels"].values()), "label values must be ASCII"


def test_department_namespaces_enforce_pod_security_restricted(dev: list[Created]) -> None:
    departments = [r for r in of_kind(dev, "Namespace") if r.k8s_name.startswith("dept-")]
    assert len(departments) == len(dev_config().departments)
    for ns in departments:
        assert (
            ns.inputs["metadata"]["labels"].items()
            >= {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }.items()
        ), ns.k8s_name


def test_department_roles_are_bound_to_the_departments_groups_and_declared_admins(
    dev: list[Created],
) -> None:
    rbac = "rbac.authorization.k8s.io"
    for dept in dev_config().departments:
        for role in ("admin", "developer", "viewer"):
            binding = find(dev, "RoleBinding", f"cityhub:department-{role}", dept.namespace)
            assert binding.inputs["roleRef"] == {
                "apiGroup": rbac,
                "kind": "ClusterRole",
                "name": f"cityhub:department-{role}",
            }
            group = {"kind": "Group", "name": f"oidc:cityhub-{dept.slug}-{role}s", "apiGroup": rbac}
            users = [{"kind": "User", "name": f"oidc:{u}", "apiGroup": rbac} for u in dept.admins]
            assert binding.inputs["subjects"] == [group, *(users if role == "admin" else [])]
    admins = find(dev, "RoleBinding", "cityhub:department-admin", "dept-jiaotong").inputs["subjects"]
    assert {"kind": "User", "name": "oidc:jt-admin", "apiGroup": rbac} in admins
    viewers = find(dev, "RoleBinding", "cityhub:department-viewer", "dept-jiaotong").inputs["subjects"]
    assert all(s["kind"] == "Group" for s in viewers), "declared admins are admins, nothing else"
    # The old read-only member Role and its group are gone.
    assert not [r for r in of_kind(dev, "Role") if r.k8s_name == "department-member"]
    every_subject = [s["name"] for b in of_kind(dev, "RoleBinding") for s in b.inputs["subjects"]]
    assert not [s for s in every_subject if s.startswith("cityhub:department:")]


def test_requester_account_manages_only_its_component_requests(dev: list[Created]) -> None:
    from components.tenancy import component_request_resources

    kinds = set(component_request_resources())
    assert "messagingchannels" in kinds, "every registered request kind is grantable"
    role = find(dev, "Role", "component-requester", "dept-yingji")
    granted = {(g, r) for rule in role.inputs["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("hub.cityhub.io", k) for k in kinds} | {
        ("hub.cityhub.io", f"{k}/status") for k in kinds
    }
    binding = find(dev, "RoleBinding", "component-requester", "dept-yingji")
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": "component-requester", "namespace": "dept-yingji"}
    ]
    # Cluster-wide roles: the operator's, and the department roles and catalog reader, each once.
    assert sorted(c.k8s_name for c in of_kind(dev, "ClusterRole")) == [
        "cityhub-operator",
        "cityhub-operator-secrets",
        "cityhub:catalog-reader",
        "cityhub:department-admin",
        "cityhub:department-developer",
        "cityhub:department-viewer",
    ]


def test_request_group_is_the_operators() -> None:
    from cityhub_api.api import GROUP
    from components.tenancy import COMPONENT_REQUEST_GROUP

    assert COMPONENT_REQUEST_GROUP == GROUP


# --- network


def policy(created: list[Created], slug: str, name: str = "allow-zone") -> dict[str, Any]:
    return find(created, "NetworkPolicy", name, f"dept-{slug}").inputs["spec"]


def peers(rules: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    return [peer | {"ports": rule.get("ports")} for rule in rules for peer in rule[side]]


def test_every_department_is_denied_by_default(dev: list[Created]) -> None:
    for dept in dev_config().departments:
        spec = policy(dev, dept.slug, "default-deny")
        assert spec == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_zone_flows_are_explicit(dev: list[Created]) -> None:
    ingress = peers(policy(dev, "chengguan")["ingress"], "from")
    assert {
        "namespaceSelector": {
            "matchLabels": {"cityhub.io/tenant": "department", "cityhub.io/zone": "internet"}
        },
        "ports": [{"protocol": "TCP", "port": 443}],
    } in ingress
    # Nothing else from other namespaces: no flow targets internet, so jiaotong accepts only its own pods
    # and the outside world.
    jiaotong = peers(policy(dev, "jiaotong")["ingress"], "from")
    assert [p for p in jiaotong if "namespaceSelector" in p] == []


def test_only_public_zones_talk_to_the_outside(dev: list[Created]) -> None:
    def outside(spec: dict[str, Any]) -> bool:
        return any(
            "ipBlock" in p for side in ("ingress", "egress") for p in peers(spec[side], side_key(side))
        )

    assert outside(policy(dev, "jiaotong"))
    assert not any(outside(policy(dev, d.slug)) for d in dev_config().departments if d.zone != "internet")
    block = next(p for p in peers(policy(dev, "jiaotong")["ingress"], "from") if "ipBlock" in p)["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in block["except"]


def side_key(side: str) -> str:
    return "from" if side == "ingress" else "to"


def test_shared_services_open_only_to_their_zones(dev: list[Created]) -> None:
    def services(slug: str) -> set[str]:
        return {
            p["podSelector"]["matchLabels"]["cityhub.io/service"]
            for p in peers(policy(dev, slug)["egress"], "to")
            if "cityhub.io/service" in p.get("podSelector", {}).get("matchLabels", {})
        }

    def side_doors(slug: str) -> set[tuple[str, int]]:
        return {
            (p["podSelector"]["matchLabels"]["app.kubernetes.io/name"], rule["ports"][0]["port"])
            for rule in policy(dev, slug)["egress"]
            for p in rule.get("to") or []
            if "app.kubernetes.io/name" in p.get("podSelector", {}).get("matchLabels", {})
        }

    config = dev_config()
    zone = {d.slug: d.zone for d in config.departments}
    for slug in ("jiaotong", "dashuju"):
        opened = {s.name for s in config.shared_services if zone[slug] in s.zones}
        assert services(slug) == opened and opened, f"{slug} reaches the services its zone is opened to"
    assert "maps" not in services("dashuju"), "the private zone does not reach maps in the dev city"
    # maps' side door: the departments that reach its tiles write their features into PostGIS, and no other.
    assert side_doors("jiaotong") == {("maps-postgis", 5432)} and side_doors("dashuju") == set()
    postgis = find(dev, "NetworkPolicy", "allow-maps-maps-postgis", "cityhub-system").inputs["spec"]
    assert postgis["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "maps-postgis"}}
    assert postgis["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert postgis["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "egov",
        "internet",
    ]
    allow = find(dev, "NetworkPolicy", "allow-messaging", "cityhub-system").inputs["spec"]
    selector = allow["ingress"][0]["from"][0]["namespaceSelector"]
    assert selector["matchExpressions"] == [
        {"key": "cityhub.io/zone", "operator": "In", "values": ["egov", "internet", "private"]}
    ]
    assert find(dev, "NetworkPolicy", "default-deny-ingress", "cityhub-system").inputs["spec"][
        "policyTypes"
    ] == ["Ingress"]


def test_dns_is_always_reachable(dev: list[Created]) -> None:
    egress = policy(dev, "xihu-hubin")["egress"]
    dns = [r for r in egress if any(p.get("port") == 53 for p in r.get("ports") or [])]
    assert dns and dns[0]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }


# --- compute


def test_department_quota_and_defaults(dev: list[Created]) -> None:
    quota = find(dev, "ResourceQuota", "compute", "dept-dashuju").inputs["spec"]["hard"]
    assert quota == {
        "requests.cpu": "16",
        "limits.cpu": "16",
        "requests.memory": "32Gi",
        "limits.memory": "32Gi",
        "pods": "100",
        "requests.nvidia.com/gpu": "2",
    }
    no_pod_limit = find(dev, "ResourceQuota", "compute", "dept-xihu-hubin").inputs["spec"]["hard"]
    assert no_pod_limit["pods"] == "10" and no_pod_limit["requests.nvidia.com/gpu"] == "0"
    limits = find(dev, "LimitRange", "container-defaults", "dept-yingji").inputs["spec"]["limits"][0]
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_component_requests_count_against_a_quota_of_every_type(dev: list[Created]) -> None:
    """The API server counts each type's requests (object-count quota) and refuses one over the quota."""
    every_type = {f"count/{t.plural}.hub.cityhub.io" for t in registry.component_types().values()}
    default = find(dev, "ResourceQuota", "component-requests", "dept-dashuju").inputs["spec"]["hard"]
    assert default == dict.fromkeys(every_type, "10")
    street = find(dev, "ResourceQuota", "component-requests", "dept-xihu-hubin").inputs["spec"]["hard"]
    assert street["count/messagingchannels.hub.cityhub.io"] == "5" and set(street) == every_type


def test_priority_classes(dev: list[Created]) -> None:
    emergency = find(dev, "PriorityClass", "cityhub-emergency").inputs
    normal = find(dev, "PriorityClass", "cityhub-normal").inputs
    assert emergency["value"] > normal["value"]
    assert not emergency["globalDefault"] and not normal["globalDefault"]


def test_emergency_priority_is_closed_in_normal_mode(dev: list[Created]) -> None:
    for dept in dev_config().departments:
        gate = find(dev, "ResourceQuota", "emergency-priority", dept.namespace).inputs["spec"]
        assert gate["hard"] == {"pods": "0"}
        assert gate["scopeSelector"]["matchExpressions"] == [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["cityhub-emergency"]}
        ]


def test_emergency_mode_changes_only_quotas_and_priority(dev: list[Created]) -> None:
    raw = stack_raw()
    raw["mode"] = "emergency"
    diff = changed(dev, hub(raw))
    config = dev_config()
    responders = {d.slug for d in config.departments if d.emergency_responder}
    reshaped = {d.slug for d in config.departments if d.quota != d.emergency_quota}
    assert reshaped == {"yingji", "chengguan", "dashuju", "dongcheng-yingji"}
    expected = (
        {f"hub-{s}-compute" for s in reshaped}
        | {f"hub-{s}-emergency-priority" for s in responders}
        | {f"hub-{s}" for s in responders}  # the namespace's priority-class label
        | {"hub-yingji-component-requests"}  # 应急管理局 may hold 30 requests of a type in an emergency
    )
    assert set(diff) == expected
    for name, (old, new) in diff.items():
        assert old.type in {"kubernetes:core/v1:ResourceQuota", "kubernetes:core/v1:Namespace"}, name
        if old.type.endswith("Namespace"):
            before, after = old.inputs["metadata"]["labels"], new.inputs["metadata"]["labels"]
            assert {k for k in before if before[k] != after[k]} == {"cityhub.io/priority-class"}
            assert after["cityhub.io/priority-class"] == "cityhub-emergency"
    yingji = diff["hub-yingji-compute"][1].inputs["spec"]["hard"]
    assert (yingji["requests.cpu"], yingji["pods"], yingji["requests.nvidia.com/gpu"]) == ("32", "200", "2")
    assert diff["hub-yingji-emergency-priority"][1].inputs["spec"]["hard"] == {"pods": "200"}
    requests = diff["hub-yingji-component-requests"][1].inputs["spec"]["hard"]
    assert set(requests.values()) == {"30"}
    shrunk = diff["hub-chengguan-compute"][1].inputs["spec"]["hard"]
    assert shrunk["requests.cpu"] == "4"
    # And back: normal mode declares exactly what it declared before.
    raw["mode"] = "normal"
    assert changed(dev, hub(raw)) == {}


def test_changing_one_quota_changes_only_that(dev: list[Created]) -> None:
    raw = copy.deepcopy(stack_raw())
    raw["departments"][1]["quota"]["cpu"] = 12
    diff = changed(dev, hub(raw))
    assert set(diff) == {"hub-chengguan-compute"}
    assert diff["hub-chengguan-compute"][1].inputs["spec"]["hard"]["requests.cpu"] == "12"


# --- GPU pool


def test_gpu_pool_quota_and_scheduling(dev: list[Created]) -> None:
    import json

    quota = find(dev, "ResourceQuota", "gpu-pool", "cityhub-inference").inputs["spec"]["hard"]
    assert quota == {"requests.nvidia.com/gpu": "4"}
    scheduling = json.loads(
        find(dev, "ConfigMap", "gpu-scheduling", "cityhub-inference").inputs["data"]["scheduling.json"]
    )
    assert scheduling == {
        "nodeSelector": {"cityhub.io/pool": "gpu-inference"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    # The namespace holds CPU pods too (gateway, CPU model servers, the model store's Job): a namespace-wide
    # node selector would pin them to GPU nodes where the PodNodeSelector admission plugin runs.
    ns = find(dev, "Namespace", "cityhub-inference").inputs["metadata"]
    annotations = set(ns.get("annotations") or {})
    assert "scheduler.alpha.kubernetes.io/node-selector" not in annotations
    assert "scheduler.alpha.kubernetes.io/defaultTolerations" not in annotations


def test_no_gpu_pool_without_gpus() -> None:
    raw = stack_raw()
    raw.pop("gpuPool")
    assert not [
        r for r in hub(raw) if r.namespace == "cityhub-inference" or r.k8s_name == "cityhub-inference"
    ]


# --- storage


def test_preprovisioned_classes_bind_immediately_to_stack_volumes(dev: list[Created]) -> None:
    for name in ("cityhub-standard", "cityhub-encrypted", "cityhub-core"):
        sc = find(dev, "StorageClass", name).inputs
        assert sc["provisioner"] == "kubernetes.io/no-provisioner"
        assert sc["volumeBindingMode"] == "Immediate"
        volumes = [
            v for v in of_kind(dev, "PersistentVolume") if v.inputs["spec"]["storageClassName"] == name
        ]
        assert [v.k8s_name for v in volumes] == [f"{name}-000", f"{name}-001", f"{name}-002"]
        assert volumes[0].inputs["spec"]["capacity"] == {"storage": "10Gi"}
    default = find(dev, "StorageClass", "cityhub-standard").inputs["metadata"]["annotations"]
    assert default == {"storageclass.kubernetes.io/is-default-class": "true"}
    encrypted = find(dev, "StorageClass", "cityhub-core").inputs["metadata"]["labels"]
    assert encrypted["cityhub.io/encrypted"] == "true" and encrypted["cityhub.io/max-grade"] == "core"


def test_dynamic_classes_use_the_provisioner_and_create_no_volumes() -> None:
    created = hub(stack_raw("example-city"))
    assert not of_kind(created, "PersistentVolume")
    sc = find(created, "StorageClass", "cityhub-core").inputs
    assert sc["provisioner"] == "rbd.csi.ceph.com"
    assert sc["parameters"]["encrypted"] == "true"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"


def test_data_grade_decides_the_storage_classes(dev: list[Created]) -> None:
    def closed(slug: str) -> set[str]:
        hard = find(dev, "ResourceQuota", "storage", f"dept-{slug}").inputs["spec"]["hard"]
        return {k.split(".storageclass")[0] for k, v in hard.items() if ".storageclass" in k and v == "0"}

    assert closed("chengguan") == set()  # 一般
    assert closed("yingji") == {"cityhub-standard"}  # 重要
    assert closed("dashuju") == {"cityhub-standard", "cityhub-encrypted"}  # 核心
    hard = find(dev, "ResourceQuota", "storage", "dept-dashuju").inputs["spec"]["hard"]
    assert hard["requests.storage"] == "100Gi"
    assert (
        find(dev, "ResourceQuota", "storage", "dept-xihu-hubin").inputs["spec"]["hard"]["requests.storage"]
        == "0"
    )
