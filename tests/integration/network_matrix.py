"""The packet matrix of tests/integration/test_in_cluster.py: busybox servers in department namespaces
across zones and in the hub's namespace, the backends' own pods (nats, PostGIS, the inference gateway and a
model server in the inference pool's namespace), and connections tried from inside the busybox servers
(the node's NetworkPolicy engine: cityhub/embedded_cluster/netpol.py)."""

from __future__ import annotations

from typing import Any

from cityhub.embedded_cluster.real_node_config import TAINT_KEY, image_name
from tests.integration.test_hub_stack import Project

SYSTEM = "cityhub-system"
INFERENCE = "cityhub-inference"
"""The GPU inference pool's namespace (components/gpu_pool.py): the model servers' home."""
PORTS = (443, 8080)
MAPS_DOOR = 3000
"""The maps front door's target port: a stand-in pod carries its selector (one with the busybox server)."""
POSTGIS = 5432
"""maps' side door: the real maps-postgis pod, reached by the zones maps serves (to write features)."""
GATEWAY = 8090
"""The inference gateway's port (the front door `inference` targets it): open to the zones it serves."""
MODEL_SERVER = 8080
"""A department's model server in the inference pool's namespace: the gateway's alone, so a department
cannot skip its API key check and rate limit."""
# Who is where in the dev stack: zones egov (yingji, chengguan), private (dashuju), internet (jiaotong,
# public); flows internet→egov:443 and egov→private:443; messaging open to all three zones, maps to egov
# and internet; inference to all three.
SERVERS = {
    "yingji-a": "dept-yingji",
    "yingji-b": "dept-yingji",
    "chengguan": "dept-chengguan",
    "dashuju": "dept-dashuju",
    "jiaotong": "dept-jiaotong",
    "maps-door": SYSTEM,
    "pool": INFERENCE,
}
ALLOWED = {
    # source: the (target, port) flows that must connect; every other flow in the matrix must be dropped
    "yingji-a": {
        ("yingji-b", 443),
        ("yingji-b", 8080),
        ("dashuju", 443),
        ("nats", 4222),
        ("maps-door", 3000),
        ("postgis", 5432),
        ("gateway", GATEWAY),
    },
    "chengguan": {
        ("dashuju", 443),
        ("nats", 4222),
        ("maps-door", 3000),
        ("postgis", 5432),
        ("gateway", GATEWAY),
    },
    "dashuju": {("nats", 4222), ("gateway", GATEWAY)},
    "jiaotong": {
        ("yingji-a", 443),
        ("yingji-b", 443),
        ("chengguan", 443),
        ("nats", 4222),
        ("maps-door", 3000),
        ("postgis", 5432),
        ("gateway", GATEWAY),
    },
    # The hub's own namespace has no egress policy, and its pods reach each other; departments let it in
    # nowhere (it is not a zone, and its addresses are private, so not "outside" for the public zone either).
    # The model servers' namespace admits only the gateway, not the hub's other pods.
    "maps-door": {("nats", 4222), ("nats", 8222), ("postgis", 5432), ("gateway", GATEWAY)},
    # A pod of the inference pool's namespace (a model server taken over) reaches nothing: no zone admits
    # it, the hub's namespace admits only its own pods and the zones, and its own namespace denies ingress.
    "pool": set(),
}


def server_pod(name: str, namespace: str, ports: tuple[int, ...], labels: dict[str, str]) -> dict[str, Any]:
    """A busybox pod answering HTTP on `ports` (443 too: the safe sysctl lets a non-root user bind it)."""
    listen = " && ".join(f"httpd -p {p} -h /w" for p in ports)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"np-{name}",
            "namespace": namespace,
            "labels": {"cityhub.io/np-test": name, **labels},
        },
        "spec": {
            "nodeSelector": {"cityhub.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
            },
            "containers": [
                {
                    "name": "server",
                    # Read when a pod is made, never at import: a machine without the real node's
                    # images must still collect the test suite (and skip these tests).
                    "image": image_name("busybox"),
                    "command": ["sh", "-c", f"echo ok > /w/index.html && {listen} && exec sleep 86400"],
                    "resources": {
                        "requests": {"cpu": "5m", "memory": "8Mi"},
                        "limits": {"cpu": "50m", "memory": "16Mi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                }
            ],
            "volumes": [{"name": "w", "emptyDir": {"sizeLimit": "1Mi"}}],
        },
    }


def connect(
    project: Project, source: str, targets: list[tuple[str, str, int]], timeout: int = 2
) -> dict[Any, str]:
    """From the source pod, one connection to each (name, ip, port) at once: "allowed" (the server
    answered), "dropped" (timed out: no reply at all, not even a refusal), or what nc said."""
    script = " ".join(
        f"(r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {timeout} {ip} {port} 2>&1 | head -1);"
        f' echo "{name} {port} $r") &'
        for name, ip, port in targets
    )
    result = project.kubectl(
        "-n", SERVERS[source], "exec", f"np-{source}", "--", "sh", "-c", f"{script} wait"
    )
    outcomes: dict[Any, str] = {}
    for line in result.stdout.splitlines():
        name, port, said = [*line.split(" ", 2), ""][:3]
        # An answer is the server's first line (HTTP's status, NATS's INFO) or nothing at all (PostgreSQL
        # closes on a request that is not its protocol): the connection was made. nc's own words are an error.
        answered = not said.startswith("nc:")
        outcomes[(name, int(port))] = (
            "allowed" if answered else "dropped" if "timed out" in said else said or "no answer"
        )
    return outcomes
