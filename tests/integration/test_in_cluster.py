"""The in-cluster path on the embedded cluster's real node: `pulumi up` of a stack with operator.deploy and
every backend in backends.deploy (in_cluster_stack.py), placed on the real node by cityhub:systemPlacement,
runs the operator, nats-server, the MQTT gateway and its relay, Keycloak, PostGIS, martin, the inference
gateway and MLServer model servers as pods from the images hack/images.sh built offline (rebuilt first when a
source changed). A department's MessagingChannel, SensorFleet, IdentityClient, MapLayer and
InferenceEndpoint become Ready, and workload pods in the department's namespace (Pod Security `restricted`)
use them through their connection Secrets, reaching the backends through their Service names (CoreDNS and
kube-proxy of the node) as a department's apps do. The zones' NetworkPolicies hold on packets
(network_matrix.py); the operator pod deleted mid-provisioning and a backend outage are survived.

Needs root, the real-node toolchain and the images (`bash hack/real-node.sh`); skipped with the reason
otherwise. The stack is a private copy of the project with its own Pulumi backend (tests/integration/
test_hub_stack.py's Project); its configuration is the dev stack's with the keys in_cluster_stack.py changes.
Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from cityhub import paths
from cityhub import testkit as testing
from cityhub.embedded_cluster.real_node_config import NODE_NAME, image_name
from cityhub.testkit import channel, condition, wait_for
from cityhub_api import registry
from tests.integration.in_cluster_apps import (
    CHANNEL_CLIENT,
    CONNECTION,
    DEVICE_AND_APP,
    FEATURES_AND_TILES,
    INFER_CLIENT,
    TOKEN_CLIENT,
    app_pod,
    run_to_completion,
    started_seconds,
)
from tests.integration.in_cluster_stack import (
    DEPARTMENT,
    RESILIENCE_DEPARTMENTS,
    SYSTEM,
    images,
    ready_pod,
    stack,
    wait_request_ready,
)
from tests.integration.network_matrix import (
    ALLOWED,
    GATEWAY,
    INFERENCE,
    MAPS_DOOR,
    MODEL_SERVER,
    PORTS,
    POSTGIS,
    SERVERS,
    connect,
    server_pod,
)
from tests.integration.test_hub_stack import Project
from tests.integration.test_real_node import Cluster, cluster, run_pod

pytestmark = [pytest.mark.integration, pytest.mark.real_node]

# Fixtures of other modules, used here: the real node's cluster (shared with test_real_node), the images
# and the stack (in_cluster_stack.py).
__all__ = ["cluster", "images", "stack"]


def test_operator_and_nats_run_as_pods_on_the_real_node(stack: Project) -> None:
    operator = ready_pod(stack, SYSTEM, "app.kubernetes.io/component=operator")
    nats = ready_pod(stack, SYSTEM, "cityhub.io/service=messaging")
    for pod in (operator, nats):
        assert pod["spec"]["nodeName"] == NODE_NAME, pod["spec"].get("nodeName")
        print(f"\n[in cluster] {pod['metadata']['name']}: created -> Ready {started_seconds(pod):.0f}s")
    assert operator["spec"]["containers"][0]["image"] == image_name("operator")
    assert nats["spec"]["containers"][0]["image"] == image_name("nats")
    # The front door selects the backend's pod: the Service has it as its endpoint.
    slices = stack.get("endpointslices", "-n", SYSTEM, "-l", "kubernetes.io/service-name=messaging")
    addresses = [a for s in slices["items"] for e in s.get("endpoints") or [] for a in e["addresses"]]
    assert nats["status"]["podIP"] in addresses, slices


def test_department_channel_is_ready_and_a_workload_pod_uses_it(stack: Project) -> None:
    ready_pod(stack, SYSTEM, "app.kubernetes.io/component=operator")
    ready_pod(stack, SYSTEM, "cityhub.io/service=messaging")
    t0 = time.monotonic()
    stack.apply(channel(DEPARTMENT, "alerts"))

    wait_request_ready(stack, "messagingchannels", "alerts", DEPARTMENT)
    print(f"\n[in cluster] MessagingChannel created -> Ready: {time.monotonic() - t0:.1f}s")

    pod = app_pod("alerts-client", DEPARTMENT, ["python", "-c", CHANNEL_CLIENT], secret="alerts-connection")
    phase, logs, took = run_to_completion(stack, pod)
    print(f"[in cluster] workload pod created -> finished: {took:.1f}s")
    assert phase == "Succeeded", logs
    assert "got city.dept-yingji.alerts.typhoon 台风红色预警" in logs, logs


def test_pods_reach_the_api_server_and_services_by_name(stack: Project, cluster: Cluster) -> None:
    """`kubernetes.default.svc` from a pod, through CoreDNS and kube-proxy, with a service account token."""
    probe = (
        "import json, ssl, urllib.request;"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount';"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt');"
        "req = urllib.request.Request('https://kubernetes.default.svc/version',"
        " headers={'Authorization': 'Bearer ' + open(sa + '/token').read()});"
        "print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['gitVersion'])"
    )
    pod = app_pod("api-probe", DEPARTMENT, ["python", "-c", "import time; time.sleep(3600)"], once=False)
    took, _ = run_pod(cluster.kubeconfig, pod)
    print(f"\n[in cluster] operator-image pod created -> Ready: {took:.1f}s")
    result = stack.kubectl("-n", DEPARTMENT, "exec", "api-probe", "--", "python", "-c", probe, ok=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("v1.36"), result.stdout


def test_a_sensor_fleet_is_ready_and_a_device_publishes_what_the_app_reads(stack: Project) -> None:
    for selector in ("cityhub.io/service=sensing", "app.kubernetes.io/name=sensing-relay"):
        pod = ready_pod(stack, SYSTEM, selector)
        assert pod["spec"]["nodeName"] == NODE_NAME, (selector, pod["spec"].get("nodeName"))
    example = registry.DEFAULT_ROOT / "sensing" / "examples" / "sensor-fleet.yaml"
    t0 = time.monotonic()
    stack.kubectl("apply", "-f", str(example))

    wait_request_ready(stack, "sensorfleets", "river-levels", DEPARTMENT)
    print(f"\n[in cluster] SensorFleet created -> Ready: {time.monotonic() - t0:.1f}s")
    command = ["python", "-c", DEVICE_AND_APP, CONNECTION]
    pod = app_pod("river-levels-app", DEPARTMENT, command, secret="river-levels-connection")
    phase, logs, took = run_to_completion(stack, pod)
    print(f"[in cluster] device + app pod created -> finished: {took:.1f}s")
    assert phase == "Succeeded", logs
    assert 'got telemetry.river-levels.gauge-001.level {"米": 3.2}' in logs, logs


def test_an_identity_client_is_ready_and_a_workload_pod_gets_a_token(stack: Project) -> None:
    """The docs example (交通运输局's dispatch system) against Keycloak in a pod: the client made in the city
    realm, its Secret in the department's namespace, and a token by client credentials from a workload pod
    through the identity front door, carrying the department roles the request asked for."""
    keycloak = ready_pod(stack, SYSTEM, "cityhub.io/service=identity", timeout=300)
    assert keycloak["spec"]["nodeName"] == NODE_NAME and keycloak["spec"]["containers"][0]["image"] == (
        image_name("keycloak")
    )
    print(f"\n[in cluster] {keycloak['metadata']['name']}: created -> Ready {started_seconds(keycloak):.0f}s")
    example = registry.DEFAULT_ROOT / "identity" / "examples" / "identity-client.yaml"
    t0 = time.monotonic()
    stack.kubectl("apply", "-f", str(example))

    wait_request_ready(stack, "identityclients", "dispatch", "dept-jiaotong")
    print(f"[in cluster] IdentityClient created -> Ready: {time.monotonic() - t0:.1f}s")
    command = ["python", "-c", TOKEN_CLIENT]
    pod = app_pod("dispatch-app", "dept-jiaotong", command, secret="dispatch-connection")
    phase, logs, took = run_to_completion(stack, pod)
    print(f"[in cluster] token client pod created -> finished: {took:.1f}s")
    assert phase == "Succeeded", logs
    assert "azp jiaotong.dispatch" in logs or "azp dept-jiaotong.dispatch" in logs, logs
    assert "dept-jiaotong:viewer" in logs and "dept-jiaotong:editor" in logs, logs


def test_a_map_layer_is_ready_and_a_workload_pod_writes_features_and_reads_tiles(stack: Project) -> None:
    """The docs example (应急管理局's shelters) against PostGIS and martin in pods: the department's pod
    writes a shelter through its Secret's databaseUrl (maps' side door: PostGIS admits the zones maps
    serves) and reads it back as a vector tile through the front door with its token; a wrong token gets
    nothing."""
    for selector in ("app.kubernetes.io/name=maps-postgis", "app.kubernetes.io/name=maps-tiles"):
        pod = ready_pod(stack, SYSTEM, selector, timeout=300)
        assert pod["spec"]["nodeName"] == NODE_NAME, (selector, pod["spec"].get("nodeName"))
        print(f"\n[in cluster] {pod['metadata']['name']}: created -> Ready {started_seconds(pod):.0f}s")
    example = registry.DEFAULT_ROOT / "maps" / "examples" / "map-layer.yaml"
    t0 = time.monotonic()
    stack.kubectl("apply", "-f", str(example))

    wait_request_ready(stack, "maplayers", "shelters", DEPARTMENT)
    print(f"[in cluster] MapLayer created -> Ready: {time.monotonic() - t0:.1f}s")
    command = ["python", "-c", FEATURES_AND_TILES]
    pod = app_pod("shelters-app", DEPARTMENT, command, secret="shelters-connection")
    phase, logs, took = run_to_completion(stack, pod)
    said = " | ".join(logs.splitlines())
    print(f"[in cluster] features + tiles pod created -> finished: {took:.1f}s; it said: {said}")
    assert phase == "Succeeded", logs
    assert "wrote 1 shelter" in logs and "tile 14/" in logs and "has 西湖避难所 True" in logs, logs
    assert "wrong token: 200, cityhub_denied True has 西湖避难所 False" in logs, logs




def test_an_inference_endpoint_is_ready_and_a_workload_pod_calls_the_model(stack: Project) -> None:
    """The docs example (应急管理局's traffic-flow endpoint) in pods: the stack's Job copied the models
    image's store into the model store's volume, the operator read the catalog from that image, the driver's
    MLServer Deployment serves the model from the volume on the real node, and a workload pod of the
    department calls it through the gateway with its Secret's API key (another key: refused)."""
    gateway = ready_pod(stack, SYSTEM, "app.kubernetes.io/name=inference-gateway", timeout=120)
    assert gateway["spec"]["nodeName"] == NODE_NAME, gateway["spec"].get("nodeName")
    print(f"\n[in cluster] {gateway['metadata']['name']}: created -> Ready {started_seconds(gateway):.0f}s")
    jobs = stack.get("jobs", "-n", INFERENCE, "-l", "app.kubernetes.io/name=inference-models")
    assert jobs["items"], "no model store Job"

    def copied() -> bool:
        items = stack.get("jobs", "-n", INFERENCE, "-l", "app.kubernetes.io/name=inference-models")
        return all(j.get("status", {}).get("succeeded") for j in items["items"])

    wait_for(copied, 120, "the model store's Job")
    example = registry.DEFAULT_ROOT / "inference" / "examples" / "inference-endpoint.yaml"
    t0 = time.monotonic()
    stack.kubectl("apply", "-f", str(example))
    wait_request_ready(stack, "inferenceendpoints", "flow", DEPARTMENT, timeout=300)
    print(f"[in cluster] InferenceEndpoint created -> Ready: {time.monotonic() - t0:.1f}s")
    # The gateway read the route through its watch of the routes' ConfigMap (its account may: resourceNames
    # with a metadata.name field selector), not from the mounted files a minute later.
    for replica in stack.get("pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=inference-gateway")["items"]:
        logs = stack.kubectl("-n", SYSTEM, "logs", replica["metadata"]["name"], ok=False).stdout
        assert "routes: watching ConfigMap" in logs, logs[-2000:]
    server = ready_pod(stack, INFERENCE, "cityhub.io/department=dept-yingji")
    assert server["spec"]["nodeName"] == NODE_NAME and server["spec"]["containers"][0]["image"] == (
        image_name("mlserver")
    )
    name, took = server["metadata"]["name"], started_seconds(server)
    print(f"[in cluster] model server {name}: created -> Ready {took:.0f}s")

    pod = app_pod("flow-client", DEPARTMENT, ["python", "-c", INFER_CLIENT], secret="flow-connection")
    phase, logs, took = run_to_completion(stack, pod)
    print(f"[in cluster] inference client pod created -> finished: {took:.1f}s\n{logs.strip()}")
    assert phase == "Succeeded", logs
    assert "infer 200" in logs and "vehicles per hour" in logs, logs
    rush = int(logs.split("vehicles per hour ")[1].split()[0])
    assert 1000 < rush < 2500, f"the morning rush predicted {rush} vehicles per hour"
    assert "wrong key 401" in logs or "wrong key 403" in logs, logs


def test_network_isolation_is_enforced_on_packets(stack: Project) -> None:
    nats = ready_pod(stack, SYSTEM, "cityhub.io/service=messaging")
    maps_labels = {"cityhub.io/service": "maps"}
    t0 = time.monotonic()
    for name, namespace in SERVERS.items():
        ports = (MAPS_DOOR, 8080) if name == "maps-door" else PORTS
        stack.apply(server_pod(name, namespace, ports, maps_labels if name == "maps-door" else {}))
    postgis = ready_pod(stack, SYSTEM, "app.kubernetes.io/name=maps-postgis", timeout=300)
    gateway = ready_pod(stack, SYSTEM, "app.kubernetes.io/name=inference-gateway")
    # The inference test's model server: in the pool's namespace, the gateway's alone.
    model_server = ready_pod(stack, INFERENCE, "cityhub.io/department=dept-yingji")
    ips = {"nats": nats["status"]["podIP"], "postgis": postgis["status"]["podIP"]}
    ips |= {"gateway": gateway["status"]["podIP"], "model-server": model_server["status"]["podIP"]}
    for name, namespace in SERVERS.items():
        ips[name] = ready_pod(stack, namespace, f"cityhub.io/np-test={name}", timeout=120)["status"]["podIP"]
    spaces = len(set(SERVERS.values()))
    print(f"\n[network] {len(SERVERS)} pods in {spaces} namespaces Ready in {time.monotonic() - t0:.1f}s")
    targets = [(n, ips[n], p) for n in SERVERS if n != "maps-door" for p in PORTS]
    targets += [("nats", ips["nats"], 4222), ("nats", ips["nats"], 8222)]
    targets += [("maps-door", ips["maps-door"], MAPS_DOOR), ("maps-door", ips["maps-door"], 8080)]
    targets += [("postgis", ips["postgis"], POSTGIS)]
    targets += [("gateway", ips["gateway"], GATEWAY), ("model-server", ips["model-server"], MODEL_SERVER)]
    wrong, counts = [], {"allowed": 0, "dropped": 0}
    t0 = time.monotonic()
    for source, allowed in ALLOWED.items():
        # A pod reaching its own address never leaves it: not a flow between pods.
        tried = [t for t in targets if t[0] != source]
        outcomes = connect(stack, source, tried)
        for name, _, port in tried:
            want = "allowed" if (name, port) in allowed else "dropped"
            got = outcomes.get((name, port), "no answer")
            counts[want] += got == want
            if got != want:
                wrong.append(f"{source} → {name}:{port}: {got}, expected {want}")
    total = sum(len([t for t in targets if t[0] != s]) for s in ALLOWED)
    print(
        f"[network] {total} flows tried from {len(ALLOWED)} pods in {time.monotonic() - t0:.1f}s: "
        f"{counts['allowed']} allowed and {counts['dropped']} dropped as the zones say"
    )
    assert not wrong, "\n".join(wrong)


def test_a_new_policy_is_enforced_within_a_second(stack: Project) -> None:
    """A namespace without policies is open; its default-deny drops the next connection soon after."""
    namespace = "np-latency"
    stack.kubectl("create", "namespace", namespace, ok=False)
    stack.apply(server_pod("latency", namespace, (8080,), {}))
    ip = ready_pod(stack, namespace, "cityhub.io/np-test=latency", timeout=120)["status"]["podIP"]
    ready_pod(stack, SYSTEM, "cityhub.io/np-test=maps-door", timeout=120)
    assert connect(stack, "maps-door", [("latency", ip, 8080)]) == {("latency", 8080): "allowed"}
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    t0 = time.monotonic()
    stack.apply(deny)
    wait_for(
        lambda: (
            connect(stack, "maps-door", [("latency", ip, 8080)], timeout=1) == {("latency", 8080): "dropped"}
        ),
        20,
        "the new default-deny to drop the connection",
    )
    # The poll itself waits 1 s for a dropped connection: the figure is an upper bound.
    print(f"\n[network] NetworkPolicy applied → connections dropped within {time.monotonic() - t0:.1f}s")
    stack.kubectl("delete", "namespace", namespace, "--wait=false", ok=False)


# -- resilience on the real node --------------------------------------------------------------------------


def channels_ready(project: Project, prefix: str) -> list[dict[str, Any]]:
    items = project.get("messagingchannels", "-A")["items"]
    return [
        o
        for o in items
        if o["metadata"]["name"].startswith(prefix) and condition(o, "Ready").get("status") == "True"
    ]


def streams_named(nats_ip: str, prefix: str) -> list[str]:
    """Every JetStream stream whose name starts with `prefix`, in every account, from nats-server's monitoring
    port (the node reaches its pods; host traffic is not a pod-to-pod flow)."""
    import urllib.request

    url = f"http://{nats_ip}:8222/jsz?accounts=true&streams=true"
    with urllib.request.urlopen(url, timeout=10) as response:
        data = json.load(response)
    return [
        s["name"]
        for a in data.get("account_details") or []
        for s in a.get("stream_detail") or []
        if s["name"].startswith(prefix)
    ]


def test_the_operator_pod_deleted_mid_provisioning_is_replaced_and_finishes_the_100_requests(
    stack: Project,
) -> None:
    old = ready_pod(stack, SYSTEM, "app.kubernetes.io/component=operator")
    nats = ready_pod(stack, SYSTEM, "cityhub.io/service=messaging")
    names = [(f"dept-{d}", f"rs-{d}-{j:02d}") for d in RESILIENCE_DEPARTMENTS for j in range(25)]
    docs = [channel(ns, n, limits={"maxBytes": "2Mi"}) for ns, n in names]
    api = testing.api(stack.kubeconfig)

    def ready_now() -> int:
        items = testing.list_requests(api)
        return sum(
            o["metadata"]["name"].startswith("rs-") and condition(o, "Ready").get("status") == "True"
            for o in items
        )

    t0 = time.monotonic()
    # Applied in the background: the operator keeps up with one client, so the pod is deleted (no grace, as
    # when its node fails) while the requests are still arriving and being provisioned.
    kubectl = [str(paths.tool("kubectl")), "--kubeconfig", str(stack.kubeconfig), "apply", "-f", "-"]
    applying = subprocess.Popen(kubectl, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert applying.stdin is not None
    applying.stdin.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    applying.stdin.close()
    wait_for(lambda: ready_now() >= 1, 60, "the first request to be Ready", interval=0.02)
    stack.kubectl("-n", SYSTEM, "delete", "pod", old["metadata"]["name"], "--grace-period=0", "--force")
    killed = time.monotonic()
    in_flight = len(names) - ready_now()
    assert applying.wait(120) == 0, "kubectl apply of the 100 requests failed"
    assert in_flight > 0, "all 100 were Ready before the operator pod went; nothing was in flight"

    def replaced() -> dict[str, Any] | None:
        pods = stack.get("pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] != old["metadata"]["uid"]]
        return next((p for p in fresh if condition(p, "Ready").get("status") == "True"), None)

    new = wait_for(replaced, 120, "a new operator pod to be Ready")
    replaced_after = time.monotonic() - killed
    wait_for(lambda: len(channels_ready(stack, "rs-")) == len(names), 300, "all 100 requests to be Ready")
    print(
        f"\n[resilience] operator pod deleted with {in_flight} of 100 requests in flight; new pod Ready "
        f"after {replaced_after:.1f}s; all 100 Ready {time.monotonic() - killed:.1f}s after the deletion "
        f"({time.monotonic() - t0:.1f}s after they were applied)"
    )
    assert new["spec"]["nodeName"] == NODE_NAME
    # Nothing duplicated, nothing missing: one stream per request, one Secret per request owned by it.
    streams = streams_named(nats["status"]["podIP"], "rs-")
    assert sorted(streams) == sorted(n for _, n in names), sorted(streams)
    for ns, _ in names[::25]:
        secrets = stack.get("secrets", "-n", ns)["items"]
        owned = [s for s in secrets if s["metadata"]["name"].startswith("rs-")]
        assert len(owned) == 25, [s["metadata"]["name"] for s in owned]
        assert all(len(s["metadata"].get("ownerReferences") or []) == 1 for s in owned)


def test_a_backend_outage_shows_as_ready_false_and_the_requests_recover_when_it_returns(
    stack: Project,
) -> None:
    ready_pod(stack, SYSTEM, "cityhub.io/service=messaging")
    watched = "rs-yingji-00"
    wait_for(
        lambda: any(o["metadata"]["name"] == watched for o in channels_ready(stack, "rs-")), 300, watched
    )
    total = len(channels_ready(stack, "rs-"))
    stack.kubectl("-n", SYSTEM, "scale", "statefulset/nats", "--replicas=0")
    down_at = time.monotonic()

    def probe_failed() -> dict[str, Any] | None:
        got = stack.get("messagingchannel", watched, "-n", "dept-yingji")
        cond = condition(got, "Ready")
        return dict(cond) if cond.get("reason") == "ProbeFailed" else None

    try:
        cond = wait_for(probe_failed, 180, f"{watched} to report Ready=False ProbeFailed")
        seen_after = time.monotonic() - down_at
        assert cond["status"] == "False" and f"Secret {watched}-connection" in cond["message"], cond
    finally:
        stack.kubectl("-n", SYSTEM, "scale", "statefulset/nats", "--replicas=1")
    up_at = time.monotonic()
    ready_pod(stack, SYSTEM, "cityhub.io/service=messaging", timeout=120)
    backend_back = time.monotonic() - up_at
    wait_for(lambda: len(channels_ready(stack, "rs-")) == total, 180, "every request to be Ready again")
    print(
        f"\n[resilience] nats scaled to 0: {watched} Ready=False/ProbeFailed after {seen_after:.1f}s; "
        f"nats-0 back after {backend_back:.1f}s; all {total} Ready again {time.monotonic() - up_at:.1f}s "
        f"after the scale-up"
    )
