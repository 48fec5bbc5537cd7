"""Under Pulumi's mocks: a city with an edge cluster, its operator and its backends deployed by the stack
(cityhub:operator.deploy, cityhub:backends.deploy) — what a city with real clusters gets from `pulumi up`.
The edge's operator runs on the hub beside the backends; the edge runs only its own parts (messaging's leaf
node); no backend credential reaches the edge."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from cityhub.config import ConfigError, load_config
from cityhub.config_edges import api_server
from cityhub_api.catalog import load_offerings
from components.backends import derive
from tests.unit.test_components import Created, Recorder, find, of_kind, stack_raw

EDGE = "dongcheng-edge"
MASTER = "m" * 48
LEAFNODES = "nats-leaf://hub-leaf.city.example:7422"
TOKEN = "edge-operator-token"


class EdgeRecorder(Recorder):
    """The edge's token controller, as pulumi-kubernetes waits for it: a service-account-token Secret gets
    its token and CA."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, outputs = super().new_resource(args)
        if args.typ.endswith(":Secret") and args.inputs.get("type") == "kubernetes.io/service-account-token":
            encode = lambda v: base64.b64encode(v.encode()).decode()  # noqa: E731
            outputs = {**outputs, "data": {"token": encode(TOKEN), "ca.crt": encode("EDGE-CA")}}
        return rid, outputs


def raw_city(**messaging: Any) -> dict[str, Any]:
    raw = stack_raw()
    raw["clusters"] = [
        {"name": "hub"},
        {
            "name": EDGE,
            "role": "edge",
            "divisionCode": "330102",
            "context": "dongcheng",
            "apiServer": "https://dongcheng-api.city.example:6443",
        },
    ]
    raw["operator"] = {"deploy": True}
    volume = {"storageSize": raw["storage"]["preprovisioned"]["size"]}
    raw["backends"] = {
        "deploy": ["messaging", "identity", "maps"],
        "maps": volume,
        "messaging": {
            **volume,
            "leafnodes": {"url": LEAFNODES, "serviceType": "NodePort"},
            "edge": {
                "operatorUrl": "nats://nats.{edge}.city.example:4222",
                "storageSize": "1Gi",
                **messaging,
            },
        },
    }
    raw["backendsMasterKey"] = MASTER
    return raw


def city(raw: dict[str, Any]) -> list[Created]:
    from components.hub import city_hubs

    config = load_config(raw)
    offerings = tuple(load_offerings(config.operator.catalog, config.operator.components))
    servers = {c.name: c.api_server or "" for c in config.clusters if c.role == "edge"}
    recorder = EdgeRecorder()
    pulumi.runtime.set_mocks(recorder, preview=False)

    @pulumi.runtime.test
    def program() -> None:
        city_hubs(config, offerings, servers)

    program()
    return recorder.created


@pytest.fixture(scope="module")
def created() -> list[Created]:
    return city(raw_city())


def on(created: list[Created], cluster: str) -> list[Created]:
    return on_edge(created, cluster, EDGE)


def on_edge(created: list[Created], cluster: str, edge_name: str) -> list[Created]:
    """The resources on `cluster`: the edge `edge_name`'s (through its provider), or the hub's (the rest)."""
    edge = [r for r in created if f"{edge_name}-cluster" in r.provider]
    return edge if cluster == edge_name else [r for r in created if r not in edge]


def plain(value: Any) -> Any:
    """A Pulumi secret as the mocks record it (a signature key and `value`) → the value."""
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def env_of(deployment: Created) -> dict[str, str]:
    container = deployment.inputs["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_the_edge_runs_only_its_own_parts_and_the_hub_runs_its_operator(created: list[Created]) -> None:
    edge, hub = on(created, EDGE), on(created, "hub")
    edge_workloads = {w.k8s_name for w in of_kind(edge, "StatefulSet") + of_kind(edge, "Deployment")}
    assert edge_workloads == {"nats"}, (
        "one identity realm and one map database: Keycloak and PostGIS on the hub"
    )
    hub_workloads = {w.k8s_name for w in of_kind(hub, "StatefulSet") + of_kind(hub, "Deployment")}
    assert {
        "nats",
        "keycloak",
        "maps-postgis",
        "cityhub-operator",
        f"cityhub-operator-{EDGE}",
    } <= hub_workloads
    operator = find(hub, "Deployment", f"cityhub-operator-{EDGE}", "cityhub-system")
    env = env_of(operator)
    assert env["KUBECONFIG"] == "/var/run/cityhub/edge/kubeconfig"
    assert env["CITYHUB_NATS_EDGE"] == EDGE
    assert env["CITYHUB_NATS_EDGE_URL"] == "nats://messaging.cityhub-system.svc.cluster.local:4222"
    assert env["CITYHUB_NATS_EDGE_OPERATOR_URL"] == f"nats://nats.{EDGE}.city.example:4222"
    hub_env = env_of(find(hub, "Deployment", "cityhub-operator", "cityhub-system"))
    assert {k: v for k, v in env.items() if not k.startswith(("CITYHUB_NATS_EDGE", "KUBECONFIG"))} == hub_env
    pod = operator.inputs["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False, "no right on the hub's API"
    assert (
        "automountServiceAccountToken"
        not in (
            find(hub, "Deployment", "cityhub-operator", "cityhub-system").inputs["spec"]["template"]["spec"]
        )
    )
    labels = operator.inputs["spec"]["selector"]["matchLabels"]
    assert labels["app.kubernetes.io/name"] == f"cityhub-operator-{EDGE}", "never selects the hub's pods"
    metrics = find(hub, "Service", f"cityhub-operator-{EDGE}-metrics", "cityhub-system").inputs["metadata"]
    assert metrics["labels"]["app.kubernetes.io/name"] == "cityhub-operator", "scraped like the hub's"
    assert metrics["labels"]["cityhub.io/edge"] == EDGE


def test_the_edges_operator_reaches_the_edge_with_the_edges_own_account(created: list[Created]) -> None:
    token = find(on(created, EDGE), "Secret", "cityhub-operator-token", "cityhub-system").inputs
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "cityhub-operator"
    secret = find(on(created, "hub"), "Secret", f"cityhub-operator-{EDGE}-kubeconfig", "cityhub-system")
    config = yaml.safe_load(plain(secret.inputs["stringData"])["kubeconfig"])
    assert config["clusters"][0]["cluster"]["server"] == "https://dongcheng-api.city.example:6443"
    assert config["users"][0]["user"]["token"] == TOKEN
    assert not of_kind(on(created, EDGE), "PodDisruptionBudget")


def test_messaging_at_the_edge_is_a_leaf_node_and_no_master_secret_leaves_the_hub(
    created: list[Created],
) -> None:
    edge, hub = on(created, EDGE), on(created, "hub")
    conf = plain(find(edge, "Secret", "nats-edge", "cityhub-system").inputs["stringData"])
    assert f'urls: ["{LEAFNODES}"]' in conf["nats-server.conf"]
    assert 'domain: "dongcheng-edge"' in conf["nats-server.conf"]
    assert set(conf) == {"nats-server.conf", "dept-dongcheng-yingji.leaf.creds"}, "its departments only"
    secrets = [derive(MASTER, purpose) for purpose in ("nats", "identity", "maps", "keycloak", "postgis")]
    for resource in edge:
        text = repr(resource.inputs)
        assert MASTER not in text and not any(s in text for s in secrets), resource.name
    hub_conf = find(hub, "ConfigMap", "nats-config", "cityhub-system").inputs["data"]["nats-server.conf"]
    assert "leafnodes" in hub_conf and 'domain: "hub"' in hub_conf
    leaf = find(hub, "Service", "messaging-leafnodes", "cityhub-system").inputs["spec"]
    assert leaf["type"] == "NodePort" and leaf["ports"][0]["port"] == 7422
    allow = find(hub, "NetworkPolicy", "allow-messaging-leafnodes", "cityhub-system").inputs["spec"]
    assert allow["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 7422}]
    uplink = find(edge, "Service", "messaging-uplink", "cityhub-system").inputs["spec"]
    assert uplink["type"] == "LoadBalancer"


def test_an_edge_needs_where_the_leaf_nodes_dial_before_anything_changes() -> None:
    raw = raw_city()
    del raw["backends"]["messaging"]["leafnodes"]
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert f"cityhub:backends.messaging.leafnodes: required with edge clusters ({EDGE})" in str(error.value)


def test_an_edge_api_server_the_hubs_pods_cannot_reach_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "edge.kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "e", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "contexts": [{"name": "e", "context": {"cluster": "e", "user": "u"}}],
                "current-context": "e",
            }
        )
    )
    with pytest.raises(
        ValueError, match="loopback address, which the hub's pods cannot reach; set apiServer"
    ):
        api_server(config, None, None)
    assert api_server(config, None, "https://edge.example:6443") == "https://edge.example:6443"
    config.write_text(config.read_text().replace("127.0.0.1", "10.1.2.3"))
    assert api_server(config, None, None) == "https://10.1.2.3:6443"


def test_the_readmes_real_cluster_example_builds_an_edge_operator_on_the_hub() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("On a city's real clusters", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    example = {k.removeprefix("cityhub:"): v for k, v in yaml.safe_load(block).items()}
    raw = stack_raw()
    size = {"storageSize": raw["storage"]["preprovisioned"]["size"]}
    raw |= example
    raw["operator"] = {"deploy": True}
    raw["backends"]["messaging"] |= size
    raw["backends"]["maps"] = size
    raw["backendsMasterKey"] = MASTER
    created = city(raw)
    operator = find(
        on_edge(created, "hub", "xihu-edge"), "Deployment", "cityhub-operator-xihu-edge", "cityhub-system"
    )
    assert env_of(operator)["CITYHUB_NATS_EDGE_OPERATOR_URL"] == "nats://nats.xihu-edge.city.example:4222"


def test_a_department_moved_onto_the_edge_restarts_its_nats_server_with_its_leaf_credentials(
    created: list[Created],
) -> None:
    raw = raw_city()
    street = next(d for d in raw["departments"] if d["slug"] == "xihu-hubin")
    street["cluster"] = EDGE
    after = city(raw)

    def server(resources: list[Created]) -> tuple[str, dict[str, str]]:
        sts = find(on(resources, EDGE), "StatefulSet", "nats", "cityhub-system").inputs
        files = plain(find(on(resources, EDGE), "Secret", "nats-edge", "cityhub-system").inputs["stringData"])
        return sts["spec"]["template"]["metadata"]["annotations"]["cityhub.io/config-digest"], files

    (digest, files), (new_digest, new_files) = server(created), server(after)
    assert "dept-xihu-hubin.leaf.creds" in new_files and "dept-xihu-hubin.leaf.creds" not in files
    assert new_digest != digest, "a mounted file changing alone would go unread: the pod restarts"
