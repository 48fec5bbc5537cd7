"""The simulated nodes: kwok plays their kubelets (3 CPU nodes, 2 GPU inference nodes across zones), created
through the API and waited for until pods can be scheduled and admitted."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityhub import supervisor
from cityhub.embedded_cluster.errors import ClusterError

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pool: str
    zone: str
    cpu: str
    memory: str
    pods: str = "110"
    gpus: int = 0


NODES = (
    NodeSpec("cityhub-cpu-0", "cpu", "zone-a", "16", "64Gi"),
    NodeSpec("cityhub-cpu-1", "cpu", "zone-b", "16", "64Gi"),
    NodeSpec("cityhub-cpu-2", "cpu", "zone-c", "16", "64Gi"),
    NodeSpec("cityhub-gpu-0", "gpu-inference", "zone-a", "32", "256Gi", gpus=4),
    NodeSpec("cityhub-gpu-1", "gpu-inference", "zone-b", "32", "256Gi", gpus=4),
)


def node_manifest(spec: NodeSpec) -> dict[str, Any]:
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "cityhub.io/pool": spec.pool,
        "topology.kubernetes.io/region": "cityhub-local",
        "topology.kubernetes.io/zone": spec.zone,
    }
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods, "ephemeral-storage": "500Gi"}
    taints: list[dict[str, str]] = []
    if spec.gpus:
        labels["nvidia.com/gpu.present"] = "true"
        resources["nvidia.com/gpu"] = str(spec.gpus)
        taints.append(dict(GPU_TAINT))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def api_client(kubeconfig: Path) -> Any:
    # Imported here: the kubernetes package takes about a second to import and status/down don't need it.
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=str(kubeconfig))


def apply_nodes(kubeconfig: Path, specs: tuple[NodeSpec, ...] = NODES) -> None:
    """Create the simulated nodes, or bring existing ones back to their declared labels, taints (the
    whole list is replaced) and resources."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for spec in specs:
            body = node_manifest(spec)
            try:
                core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    message = f"creating node {spec.name}: {e.status} {e.reason}: {e.body}"
                    raise ClusterError("create nodes", message) from e
                core.patch_node(spec.name, {"metadata": body["metadata"], "spec": body["spec"]})
                core.patch_node_status(spec.name, {"status": body["status"]})


def node_ready(node: Any) -> bool:
    ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    # The not-ready taint is added at creation and lifted by the node lifecycle controller; until then
    # nothing schedules, so "Ready" alone is not yet usable.
    tainted = any(t.key.startswith("node.kubernetes.io/") for t in (node.spec.taints or []))
    return ready and not tainted


def wait_nodes_ready(kubeconfig: Path, timeout: float, specs: tuple[NodeSpec, ...] = NODES) -> float:
    from kubernetes import client

    t0 = time.monotonic()
    pending: list[str] = [s.name for s in specs]
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        while time.monotonic() - t0 < timeout:
            nodes = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
            pending = [s.name for s in specs if s.name not in nodes or not node_ready(nodes[s.name])]
            if not pending:
                return time.monotonic() - t0
            time.sleep(0.5)
    raise ClusterError(
        "wait for nodes",
        f"nodes not Ready and schedulable within {timeout:.0f}s: {', '.join(pending)} (see logs/kwok.log)",
    )


def wait_default_service_account(kubeconfig: Path, timeout: float) -> None:
    """Pods are rejected until the controller-manager created the namespace's `default` ServiceAccount."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)

        def exists() -> bool:
            try:
                core.read_namespaced_service_account("default", "default")
            except ApiException:
                return False
            return True

        if not supervisor.wait_until(exists, timeout, 0.5):
            raise ClusterError(
                "wait for default service account",
                f"default/default ServiceAccount missing after {timeout:.0f}s "
                "(see logs/kube-controller-manager.log)",
            )
