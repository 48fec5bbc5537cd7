"""The embedded cluster's real worker node: `cityhub cluster up --real-node` adds a kubelet on containerd +
runc + CNI beside the kwok nodes; a pod in a namespace enforcing Pod Security `restricted` runs in a real
container (its logs through `kubectl logs`), two pods talk over the node's bridge, `down` leaves nothing
behind on the host (processes, mounts, bridge, iptables chains, cgroups, kernel settings) and a second `up`
works.

Needs root and the real-node toolchain (`bash hack/real-node.sh`); skipped with the reason otherwise. The
cluster is private to this module (its own CITYHUB_STATE). Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityhub import embedded_cluster, paths, supervisor
from cityhub.embedded_cluster import real_node, real_node_host
from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.real_node_config import (
    NODE_NAME,
    TAINT_KEY,
    NodePaths,
    archive,
    image_name,
    missing_parts,
)
from cityhub.testkit import kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.real_node]

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")


def skip_unless_buildable() -> None:
    missing = paths.missing_tools(CONTROL_PLANE) + missing_parts()
    if missing:
        pytest.skip(
            f"real-node toolchain not built ({', '.join(missing)}): run hack/toolchain.sh, then "
            "bash hack/real-node.sh"
        )
    if os.geteuid() != 0:
        pytest.skip("the real node needs root (network namespaces, mounts, cgroups)")


@dataclass
class Cluster:
    lay: Layout
    kubeconfig: Path
    host_before: dict[str, Any]
    up_seconds: float

    @property
    def node(self) -> NodePaths:
        return NodePaths.of(self.lay)


def host_snapshot() -> dict[str, Any]:
    return {"sysctls": real_node_host.read_sysctls(), "iptables": real_node_host.iptables_chains()}


def cluster_up() -> float:
    t0 = time.monotonic()
    assert embedded_cluster.main(["up", "--real-node"]) == 0, "cluster up --real-node failed; see above"
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    skip_unless_buildable()
    state = tmp_path_factory.mktemp("real-node-state")
    old = os.environ.get("CITYHUB_STATE")
    os.environ["CITYHUB_STATE"] = str(state)
    lay = Layout(state / "cluster")
    try:
        before = host_snapshot()
        took = cluster_up()
        print(f"\n[real node] cluster up with the real node: {took:.1f}s")
        yield Cluster(lay, lay.kubeconfig, before, took)
    finally:
        embedded_cluster.main(["down"])
        if old is None:
            os.environ.pop("CITYHUB_STATE", None)
        else:
            os.environ["CITYHUB_STATE"] = old


def restricted_pod(name: str, namespace: str, command: str) -> dict[str, Any]:
    """A pod that passes Pod Security `restricted`, pinned to the real node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"cityhub.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image_name("busybox"),
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", command],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }


def fresh_namespace(kubeconfig: Path) -> str:
    name = f"real-node-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(namespace))
    # Pods are refused until the controller-manager made the namespace's default ServiceAccount.
    wait_for(
        lambda: kubectl(kubeconfig, "-n", name, "get", "sa", "default", check=False).returncode == 0,
        60,
        f"default ServiceAccount in {name}",
    )
    return name


def run_pod(kubeconfig: Path, pod: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Create the pod and wait until it is Ready; (seconds from create to Ready, the pod)."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    t0 = time.monotonic()
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(pod))
    result = kubectl(
        kubeconfig, "-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", check=False
    )
    took = time.monotonic() - t0
    if result.returncode != 0:
        described = kubectl(kubeconfig, "-n", ns, "describe", "pod", name, check=False).stdout
        pytest.fail(f"pod {ns}/{name} not Ready: {result.stderr.strip()}\n{described[-3000:]}")
    got = json.loads(kubectl(kubeconfig, "-n", ns, "get", "pod", name, "-o", "json").stdout)
    return took, got


def test_real_node_is_ready_beside_the_kwok_nodes(cluster: Cluster) -> None:
    nodes = json.loads(kubectl(cluster.kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert {f"cityhub-cpu-{i}" for i in range(3)} <= set(by_name), "the kwok nodes are still there"
    node = by_name[NODE_NAME]
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.36"), info
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
    # Nothing lands there by accident: the stack's pods keep going to kwok nodes.
    assert {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == cluster.node.node_ip


def test_restricted_pod_runs_in_a_container_and_its_logs_are_readable(cluster: Cluster) -> None:
    ns = fresh_namespace(cluster.kubeconfig)
    pod = restricted_pod(
        "hello", ns, "echo hello from $(hostname) as uid $(id -u); cat /proc/1/cgroup; sleep 3600"
    )
    took, got = run_pod(cluster.kubeconfig, pod)
    print(f"\n[real node] restricted pod created -> Ready: {took:.1f}s")
    assert got["spec"]["nodeName"] == NODE_NAME
    pod_ip = got["status"]["podIP"]
    assert pod_ip.startswith(str(cluster.node.subnet.network_address).rsplit(".", 1)[0] + "."), pod_ip

    logs = wait_for(
        lambda: (
            (out := kubectl(cluster.kubeconfig, "-n", ns, "logs", "hello", check=False).stdout)
            and "hello from" in out
            and out
        ),
        30,
        "the pod's log line",
    )
    assert "hello from hello as uid 65534" in logs
    # It is a container of the node's own cgroup tree, not a simulated pod.
    assert f"/{cluster.node.cgroup}/kubepods/" in logs, logs


def test_pods_talk_over_the_bridge(cluster: Cluster) -> None:
    ns = fresh_namespace(cluster.kubeconfig)
    serve = "mkdir -p /tmp/www && echo pong > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
    server = restricted_pod("server", ns, serve)
    # httpd writes nothing to the root filesystem, but it needs a writable /tmp for its page.
    server["spec"]["containers"][0]["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    server["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    _, got = run_pod(cluster.kubeconfig, server)
    server_ip = got["status"]["podIP"]
    run_pod(cluster.kubeconfig, restricted_pod("client", ns, "sleep 3600"))

    request = f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {server_ip} 8080'
    result = kubectl(cluster.kubeconfig, "-n", ns, "exec", "client", "--", "sh", "-c", request, check=False)
    assert result.returncode == 0, result.stderr
    assert "200 OK" in result.stdout and "pong" in result.stdout, result.stdout


REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


def test_an_image_pushed_to_a_registry_is_pulled_by_the_node(cluster: Cluster, tmp_path: Path) -> None:
    """The README's way to a city's cluster, on this node: the offline-built archive pushed to a registry
    with skopeo, as the README says, and a pod naming the registry's reference: the node pulls it (nothing
    is imported under that name; imagePullPolicy Always). The registry is Debian's docker-registry (CNCF
    distribution) on a loopback port, which containerd reaches over plain HTTP as it does any localhost
    registry; a city's registry has TLS."""
    skopeo = shutil.which("skopeo")
    try:
        registry = paths.tool("docker-registry")
    except paths.ToolMissingError as e:
        pytest.skip(f"{e} (hack/real-node.sh)")
    if skopeo is None:
        pytest.skip("skopeo is not installed: run bash hack/real-node.sh (apt-get install skopeo)")
    port = supervisor.free_port()
    config = tmp_path / "registry.yml"
    config.write_text(REGISTRY_CONFIG.format(root=tmp_path / "blobs", port=port))
    rec = supervisor.spawn("registry", [str(registry), "serve", str(config)], log=tmp_path / "registry.log")
    try:
        supervisor.wait_ready(rec, lambda: supervisor.http_ok(f"http://127.0.0.1:{port}/v2/"), timeout=20)
        reference = f"127.0.0.1:{port}/cityhub/busybox:pushed"
        t0 = time.monotonic()
        source, target = f"oci-archive:{archive('busybox')}", f"docker://{reference}"
        pushed = subprocess.run(
            [skopeo, "copy", "--dest-tls-verify=false", source, target], capture_output=True, text=True
        )
        assert pushed.returncode == 0, pushed.stderr
        print(f"\n[real node] skopeo copy {source} {target}: {time.monotonic() - t0:.1f}s")
        ns = fresh_namespace(cluster.kubeconfig)
        pod = restricted_pod("pulled", ns, "echo pulled from the registry; sleep 3600")
        pod["spec"]["containers"][0] |= {"image": reference, "imagePullPolicy": "Always"}
        took, got = run_pod(cluster.kubeconfig, pod)
        print(f"[real node] pod of the pushed image (pulled by the node) created -> Ready: {took:.1f}s")
        [status] = got["status"]["containerStatuses"]
        assert status["image"] == reference
        assert status["imageID"].startswith(f"127.0.0.1:{port}/cityhub/busybox@sha256:"), status
        events = kubectl(cluster.kubeconfig, "-n", ns, "get", "events", "-o", "json").stdout
        assert "Successfully pulled image" in events, events[-2000:]
    finally:
        supervisor.stop(rec)


def test_down_removes_everything_and_up_works_again(cluster: Cluster) -> None:
    np = cluster.node
    state = real_node.load(np)
    assert state is not None
    records = list(state.processes)
    assert embedded_cluster.main(["down"]) == 0

    assert not any(supervisor.is_running(r) for r in records), "kubelet or containerd still runs"
    assert not real_node_host.pids_with_arg(str(np.socket)), "a containerd shim survived"
    assert not real_node_host.cgroup_pids(np.cgroup), "a container process survived"
    assert not real_node_host.link_exists(np.bridge), f"bridge {np.bridge} left behind"
    assert not real_node_host.mounts_under(cluster.lay.root, np.run), "mounts left behind"
    assert not any(
        (real_node_host.CGROUP_V1 / c / np.cgroup).exists() for c in real_node_host.available_controllers()
    ), "cgroups left behind"
    assert host_snapshot() == cluster.host_before, "iptables chains or kernel settings not restored"
    assert not np.root.exists() and not np.run.exists()

    took = cluster_up()
    print(f"\n[real node] second cluster up with the real node: {took:.1f}s")
    ns = fresh_namespace(cluster.kubeconfig)
    start, _ = run_pod(cluster.kubeconfig, restricted_pod("again", ns, "echo again; sleep 3600"))
    print(f"[real node] pod on the second node -> Ready: {start:.1f}s")
