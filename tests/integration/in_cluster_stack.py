"""The in-cluster stack of tests/integration/test_in_cluster.py: the images (rebuilt when a source changed),
the dev stack's configuration with operator.deploy and every backend in backends.deploy placed on the real
node, `pulumi up` of a private copy of the project, and waits that explain what did not come."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityhub import paths
from cityhub.embedded_cluster.real_node_config import COMPONENT_IMAGES, TAINT_KEY, archive, image_name
from cityhub.testkit import condition, wait_for
from components.backends import IMAGE_USER
from tests.integration.in_cluster_apps import delete_requests
from tests.integration.test_hub_stack import Project, new_project
from tests.integration.test_real_node import Cluster, skip_unless_buildable

SYSTEM = "cityhub-system"
DEPARTMENT = "dept-yingji"
STORAGE_CLASSES = ("cityhub-standard", "cityhub-encrypted", "cityhub-core")
VOLUMES_PER_CLASS = 6
RESILIENCE_DEPARTMENTS = ("yingji", "chengguan", "dashuju", "jiaotong")
REAL_NODE_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"cityhub.io/node": "real"},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}
REQUEST_PLURALS = ("messagingchannels", "sensorfleets", "identityclients", "maplayers", "inferenceendpoints")


def skip_unless_images() -> None:
    missing = [f"real-node/images/{n}.oci.tar" for n in COMPONENT_IMAGES if not archive(n).is_file()]
    if missing:
        pytest.skip(f"component images not built ({', '.join(missing)}): run bash hack/images.sh")


@pytest.fixture(scope="module")
def images() -> None:
    """The pods must run the code under test: hack/images.sh rebuilds the layers whose inputs changed (the
    app layer after any source change; nothing when nothing changed; an image new to the list) before the
    node imports them."""
    skip_unless_buildable()
    t0 = time.monotonic()
    built = subprocess.run(
        ["bash", str(paths.repo_root() / "hack" / "images.sh")], capture_output=True, text=True
    )
    if built.returncode != 0:
        pytest.fail(f"hack/images.sh failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    skip_unless_images()
    print(f"\n[in cluster] images up to date (hack/images.sh) in {time.monotonic() - t0:.1f}s")


def in_cluster_config(project: Project, volumes: Path) -> None:
    """The dev stack's configuration, changed in the private copy only: the operator and every backend
    deployed from the offline-built images, on the real node, with small hostPath volumes."""
    path = project.root / "stacks" / "Pulumi.dev.yaml"
    stack = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = stack["config"]
    config["cityhub:operator"] = {
        "deploy": True,
        "replicas": 1,
        "image": image_name("operator"),
        # Probes every 3 s (2 s timeout), so the backend outage below shows in the requests' status soon.
        "env": {"CITYHUB_PROBE_INTERVAL": "3", "CITYHUB_PROBE_TIMEOUT": "2"},
    }
    # The resilience test's 100 requests: 25 in each of four departments (the default quota is 10 a type).
    for dept in config["cityhub:departments"]:
        if dept["slug"] in RESILIENCE_DEPARTMENTS:
            dept.setdefault("quota", {})["components"] = 30
    config["cityhub:backends"] = {
        "deploy": ["messaging", "sensing", "identity", "maps", "inference"],
        "messaging": {"image": image_name("nats"), "storageSize": "1Gi", "maxFileStore": "512M"},
        # The MQTT gateway is a nats-server too (same image); its relay runs from the operator's image.
        # 900M: a fleet of the standard plan reserves twice its default 256Mi (+ a message) on the gateway.
        "sensing": {"image": image_name("nats"), "storageSize": "1Gi", "maxFileStore": "900M"},
        # Keycloak pre-built for its H2 database on a volume (component_types/identity/image.sh).
        "identity": {"image": image_name("keycloak"), "storageSize": "1Gi"},
        "maps": {
            "postgisImage": image_name("postgis"),
            "martinImage": image_name("martin"),
            "storageSize": "1Gi",
        },
        # The model servers and the store's Job on the real node; the store from the models image, into a
        # volume of the node (ReadWriteOnce: one node); one gateway replica.
        "inference": {
            "mlserverImage": image_name("mlserver"),
            "modelsImage": image_name("models"),
            "modelsSize": "1Gi",
            "modelsAccessMode": "ReadWriteOnce",
            "gatewayReplicas": 1,
            "serverPlacement": REAL_NODE_PLACEMENT,
        },
    }
    config["cityhub:systemPlacement"] = REAL_NODE_PLACEMENT
    config["cityhub:storage"]["preprovisioned"] = {
        "volumesPerClass": VOLUMES_PER_CLASS,
        "size": "1Gi",
        "hostPathRoot": str(volumes),
    }
    path.write_text(yaml.safe_dump(stack, allow_unicode=True, sort_keys=False), encoding="utf-8")
    for cls in STORAGE_CLASSES:
        for i in range(VOLUMES_PER_CLASS):
            directory = volumes / f"{cls}-{i:03d}"
            directory.mkdir(parents=True, exist_ok=True)
            # hostPath volumes ignore fsGroup; a provisioner would hand each pod's group the volume. The
            # backends run as two users (the images' 65532, Keycloak's and the model store's 1000): open
            # to both here.
            os.chown(directory, IMAGE_USER, IMAGE_USER)
            directory.chmod(0o777)


@pytest.fixture(scope="module")
def stack(images: None, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """`images` first: the cluster imports the images when it comes up."""
    root = tmp_path_factory.mktemp("in-cluster")
    (root / "project").mkdir()
    project = new_project(root / "project", cluster.kubeconfig)
    in_cluster_config(project, root / "volumes")
    project.pulumi("config", "set", "--secret", "cityhub:backendsMasterKey", os.urandom(24).hex())
    t0 = time.monotonic()
    up = project.pulumi("up", "--yes", "--skip-preview", ok=False)
    print(f"\n[in cluster] pulumi up: {time.monotonic() - t0:.1f}s")
    if up.returncode != 0:
        pods = project.kubectl("get", "pods", "-A", "-o", "wide", ok=False).stdout
        pytest.fail(f"pulumi up failed:\n{up.stdout[-4000:]}\n{up.stderr[-2000:]}\n{pods}")
    try:
        yield project
    finally:
        # Requests first, while the operator still runs to release their finalizers; then the stack.
        delete_requests(project, REQUEST_PLURALS)
        project.kubectl("delete", "pods", "--all", "-n", DEPARTMENT, "--timeout=60s", ok=False)
        # The backends' data is a person's decision, not the stack's: a StatefulSet's claim outlives it, and
        # the pre-provisioned volume it holds cannot go while it does (destroy waited 10 min for it). The test
        # decides for its own throwaway data: the claim goes as soon as nats-0 does.
        project.kubectl("delete", "pvc", "--all", "-n", "cityhub-system", "--wait=false", ok=False)
        project.pulumi("destroy", "--yes", "--skip-preview", ok=False)


def ready_pod(project: Project, namespace: str, selector: str, timeout: float = 180) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        for pod in project.get("pods", "-n", namespace, "-l", selector)["items"]:
            if condition(pod, "Ready").get("status") == "True":
                return pod
        return None

    try:
        return wait_for(ready, timeout, f"a Ready pod {selector} in {namespace}")
    except AssertionError:
        described = project.kubectl("-n", namespace, "describe", "pods", "-l", selector, ok=False).stdout
        raise AssertionError(f"no Ready pod {selector} in {namespace}:\n{described[-4000:]}") from None


def wait_request_ready(
    project: Project, plural: str, name: str, namespace: str, timeout: float = 180.0
) -> None:
    """Wait for a component request's Ready; when it does not come, fail with its status, the operator's log
    and the hub's pods."""

    def ready() -> bool:
        return condition(project.get(plural, name, "-n", namespace), "Ready").get("status") == "True"

    try:
        wait_for(ready, timeout, f"{plural} {namespace}/{name} Ready")
    except TimeoutError:
        got = project.get(plural, name, "-n", namespace)
        logs = project.kubectl("-n", SYSTEM, "logs", "deploy/cityhub-operator", "--tail=40", ok=False).stdout
        pods = project.kubectl("-n", SYSTEM, "get", "pods", "-o", "wide", ok=False).stdout
        raise AssertionError(f"not Ready: {json.dumps(got.get('status'))}\n{logs}\n{pods}") from None
