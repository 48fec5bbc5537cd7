"""A department's application pods for tests/integration/test_in_cluster.py: Pod Security `restricted`, on
the real node, from the operator's image (it has Python with the NATS and MQTT clients; any image with
them would do), with a request's connection Secret mounted at /var/run/connection."""

from __future__ import annotations

import time
from typing import Any

from cityhub.embedded_cluster.real_node_config import TAINT_KEY, image_name
from cityhub.testkit import wait_for
from tests.integration.test_hub_stack import Project

CONNECTION = "/var/run/connection"


def app_pod(
    name: str, namespace: str, command: list[str], secret: str | None = None, once: bool = True
) -> dict[str, Any]:
    """`once`: the pod runs `command` to completion (restartPolicy Never); otherwise it keeps running."""
    container: dict[str, Any] = {
        "name": "app",
        "image": image_name("operator"),
        "command": command,
        "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    spec: dict[str, Any] = {
        "nodeSelector": {"cityhub.io/node": "real"},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if once:
        spec |= {"restartPolicy": "Never", "automountServiceAccountToken": False}
    if secret:
        container["volumeMounts"] = [{"name": "connection", "mountPath": CONNECTION}]
        spec["volumes"] = [{"name": "connection", "secret": {"secretName": secret}}]
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def run_to_completion(project: Project, pod: dict[str, Any], timeout: float = 120) -> tuple[str, str, float]:
    """Apply the pod and wait until it has finished: (phase, its logs, seconds from create to finished)."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    t0 = time.monotonic()
    project.apply(pod)

    def finished() -> str | None:
        phase = project.get("pod", name, "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout, f"pod {namespace}/{name} to finish")
    logs = project.kubectl("-n", namespace, "logs", name, ok=False).stdout
    return phase, logs, time.monotonic() - t0
