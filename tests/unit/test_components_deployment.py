"""Under Pulumi's mocks: several clusters in one stack, the component operator and the shared backends
(helpers and the dev fixture: test_components.py)."""

from __future__ import annotations

import pytest

from cityhub.config import load_config
from cityhub_api import registry
from tests.unit.test_components import Created, dev, dev_config, find, hub, of_kind, run, stack_raw

__all__ = ["dev"]  # the module-scoped fixture, shared


# --- several clusters


def test_edge_clusters_get_their_own_departments_and_provider() -> None:
    raw = stack_raw()
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "dongcheng-edge", "role": "edge", "divisionCode": "330102", "context": "dongcheng"},
    ]
    raw["departments"][4]["cluster"] = "dongcheng-edge"
    created = hub(raw)
    names = [(r.type, r.name) for r in created]
    assert len(names) == len(set(names))
    providers = [r for r in created if r.type == "pulumi:providers:kubernetes"]
    assert [(p.name, p.inputs.get("context")) for p in providers] == [("dongcheng-edge-cluster", "dongcheng")]
    edge = [
        r
        for r in created
        if r.provider.startswith(providers[0].name) or "dongcheng-edge-cluster" in r.provider
    ]
    assert {r.namespace for r in edge if r.type.endswith("ResourceQuota")} == {
        "dept-dongcheng-yingji",
        "cityhub-inference",
    }
    assert len(of_kind(created, "Namespace")) == len(of_kind(hub(stack_raw()), "Namespace")) + 2


# --- the component operator


def test_operator_installs_crds_catalog_and_least_privilege_rbac(dev: list[Created]) -> None:
    crds = {c.inputs["metadata"]["name"] for c in of_kind(dev, "CustomResourceDefinition")}
    assert {
        "componentofferings.hub.cityhub.io",
        "messagingchannels.hub.cityhub.io",
        "componentfeedbacks.hub.cityhub.io",
    } <= crds
    offerings = {c.inputs["metadata"]["name"] for c in of_kind(dev, "ComponentOffering")}
    assert "messaging" in offerings
    role = next(c for c in of_kind(dev, "ClusterRole") if c.inputs["metadata"]["name"] == "cityhub-operator")
    resources = {r for rule in role.inputs["rules"] for r in rule["resources"]}
    assert "secrets" not in resources, "Secrets are granted per department namespace only"
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role.inputs["rules"])
    bindings = [
        c for c in of_kind(dev, "RoleBinding") if c.inputs["metadata"]["name"] == "cityhub-operator-secrets"
    ]
    assert {b.inputs["metadata"]["namespace"] for b in bindings} == {
        ns.inputs["metadata"]["name"]
        for ns in of_kind(dev, "Namespace")
        if ns.inputs["metadata"]["name"].startswith("dept-")
    }


def test_operator_deployment_follows_the_operator_settings() -> None:
    from dataclasses import replace

    from components.hub import ClusterHub, ClusterHubArgs

    config = dev_config()
    operator = replace(
        config.operator,
        deploy=True,
        image="registry.cityhub.local/cityhub/operator:1.2.3",
        env={"CITYHUB_NATS_URL": "nats://nats.cityhub-system:4222"},
        backend_secret="cityhub-backends",
    )
    created = run(
        lambda: ClusterHub(
            "hub", ClusterHubArgs(config=replace(config, operator=operator), cluster=config.clusters[0])
        )
    )
    (deployment,) = of_kind(created, "Deployment")
    pod = deployment.inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["image"] == "registry.cityhub.local/cityhub/operator:1.2.3"
    assert (
        env["CITYHUB_NATS_URL"] == "nats://nats.cityhub-system:4222" and env["CITYHUB_LOG_FORMAT"] == "json"
    )
    # Two replicas elect a leader (kopf peering), so a rollout may replace them one at a time, and a drain
    # never takes both.
    assert deployment.inputs["spec"]["replicas"] == 2
    assert env["CITYHUB_PEERING"] == "cityhub-operator"
    assert deployment.inputs["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    budget = find(created, "PodDisruptionBudget", "cityhub-operator", "cityhub-system").inputs["spec"]
    assert budget["maxUnavailable"] == 1
    crds = {c.k8s_name for c in of_kind(created, "CustomResourceDefinition")}
    assert "clusterkopfpeerings.kopf.dev" in crds
    assert find(created, "ClusterKopfPeering", "cityhub-operator").inputs["apiVersion"] == "kopf.dev/v1"
    role = find(created, "ClusterRole", "cityhub-operator").inputs["rules"]
    peering_rules = [r for r in role if r["apiGroups"] == ["kopf.dev"]]
    assert peering_rules == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["kopf.dev"],
            "resources": ["clusterkopfpeerings"],
            "resourceNames": ["cityhub-operator"],
            "verbs": ["get", "patch"],
        },
    ], "each replica writes its keep-alive into the operator's peering object only"
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["volumes"] == [{"name": "backend-extra", "secret": {"secretName": "cityhub-backends"}}]
    assert container["volumeMounts"][0]["mountPath"] == "/var/run/cityhub/backends/extra"
    assert any(
        s.inputs["metadata"]["name"] == "cityhub-operator-metrics" for s in of_kind(created, "Service")
    )


def test_monitoring_slot_creates_nothing_yet() -> None:
    from components.monitoring import Monitoring, MonitoringArgs

    created = run(lambda: Monitoring("hub", MonitoringArgs(departments=("yingji",))))
    assert created == []


def test_stack_deploys_the_backends_and_points_the_operator_at_them() -> None:
    raw = stack_raw()
    raw["operator"] = {"deploy": True}
    raw["backends"] = {"deploy": ["messaging", "identity", "maps", "inference"]}
    volume = {"storageSize": raw["storage"]["preprovisioned"]["size"]}
    raw["backends"] |= {"messaging": volume, "maps": volume}
    raw["backendsMasterKey"] = "k" * 48
    created = hub(raw)
    workloads = {
        c.inputs["metadata"]["name"] for c in of_kind(created, "StatefulSet") + of_kind(created, "Deployment")
    }
    assert {"nats", "keycloak", "maps-postgis", "inference-gateway", "cityhub-operator"} <= workloads
    (operator,) = [
        d for d in of_kind(created, "Deployment") if d.inputs["metadata"]["name"] == "cityhub-operator"
    ]
    pod = operator.inputs["spec"]["template"]["spec"]
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert {
        "CITYHUB_NATS_URL",
        "CITYHUB_IDENTITY_URL",
        "CITYHUB_MAPS_TILE_URL",
        "CITYHUB_INFERENCE_MODE",
    } <= env
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}
    assert {path: secrets[name] for path, name in mounts.items()} == {
        f"/var/run/cityhub/backends/{t}": f"cityhub-{t}-backend"
        for t in ("messaging", "identity", "maps", "inference")
    }, "each type's backend Secret in its own directory"
    nats_config = next(
        c for c in of_kind(created, "ConfigMap") if c.inputs["metadata"]["name"] == "nats-config"
    )
    assert "k" * 32 not in nats_config.inputs["data"]["nats-server.conf"], (
        "the ConfigMap holds public keys only"
    )


def test_a_models_image_gives_the_operator_pods_the_catalog() -> None:
    """A backend's operator_pod reaches the operator's Deployment: inference's init container fills the
    catalog directory its driver reads, mounted read-only in the operator's container."""
    raw = stack_raw()
    raw["operator"] = {"deploy": True}
    raw["backends"] = {
        "deploy": ["inference"],
        "inference": {"modelsImage": "registry.example.gov.cn/cityhub/models:abc", "modelsSize": "1Gi"},
    }
    raw["backendsMasterKey"] = "k" * 48
    created = hub(raw)
    (operator,) = [
        d for d in of_kind(created, "Deployment") if d.inputs["metadata"]["name"] == "cityhub-operator"
    ]
    pod = operator.inputs["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == "registry.example.gov.cn/cityhub/models:abc"
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    catalog = env["CITYHUB_INFERENCE_MODELS_DIR"]
    assert {"name": init["name"], "mountPath": catalog, "readOnly": True} in container["volumeMounts"]
    assert init["volumeMounts"][0]["mountPath"] == catalog
    assert {v["name"] for v in pod["volumes"]} >= {init["name"], "backend-inference"}


def test_every_front_door_selects_its_backends_pods_on_their_port() -> None:
    """Names are derived from the registry, not repeated: each type's front-door Service selects pods of its
    own backend (in the same namespace) that expose the Service's target port."""
    raw = stack_raw()
    # Volumes as large as the pre-provisioned ones (the defaults are a city's, larger).
    volume = {"storageSize": raw["storage"]["preprovisioned"]["size"]}
    raw["backends"] = {"deploy": list(registry.component_types())}
    raw["backends"] |= {"messaging": volume, "sensing": volume, "maps": volume}
    raw["backendsMasterKey"] = "k" * 48
    created = hub(raw)
    workloads = of_kind(created, "StatefulSet") + of_kind(created, "Deployment")
    for ctype in registry.component_types().values():
        service = find(created, "Service", ctype.front_door.name, "cityhub-system").inputs
        selector, port = service["spec"]["selector"], service["spec"]["ports"][0]["targetPort"]
        selected = [
            w
            for w in workloads
            if w.inputs["metadata"].get("namespace") == "cityhub-system"
            and selector.items() <= w.inputs["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"front door {ctype.name} selects no pod"
        ports = {
            p["containerPort"]
            for w in selected
            for c in w.inputs["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert port in ports, f"front door {ctype.name}: target port {port} not among {sorted(ports)}"


def test_a_backend_volume_larger_than_the_pre_provisioned_volumes_is_refused_naming_the_setting() -> None:
    """Such a claim never binds: the backend's pod stayed Pending and `pulumi up` waited for it (found when
    Keycloak's 2Gi default met the in-cluster test's 1Gi volumes)."""
    from cityhub.config import ConfigError

    raw = stack_raw()
    raw["storage"]["preprovisioned"]["size"] = "1Gi"
    raw["backends"] = {"deploy": ["identity", "messaging"], "messaging": {"storageSize": "1Gi"}}
    raw["backendsMasterKey"] = "k" * 48
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    message = str(error.value)
    assert "cityhub:backends.identity.storageSize: 2Gi does not fit the pre-provisioned volumes" in message
    assert "messaging" not in message
    raw["backends"]["identity"] = {"storageSize": "1Gi"}
    load_config(raw)


def test_deploying_backends_needs_the_master_key_and_never_echoes_it() -> None:
    from cityhub.config import ConfigError

    raw = stack_raw()
    raw["backends"] = {"deploy": ["messaging"]}
    with pytest.raises(ConfigError, match=r"backendsMasterKey.*config set --secret"):
        load_config(raw)
    raw["backendsMasterKey"] = "short-secret-value"
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert "at least 32 characters" in str(error.value) and "short-secret-value" not in str(error.value)
