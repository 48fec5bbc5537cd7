"""AI inference in kubernetes mode on the embedded cluster, driven by the real driver (no operator process):
a GPU plan's model servers land on the (kwok) GPU inference nodes and pass Pod Security `restricted`, a CPU
plan's on the CPU nodes, and the route goes into the gateway's ConfigMap in the system namespace.

An attack that needs the API server (the others are in tests/security/test_inference_attacks.py): names that
joined with '-' collided (dept-x/y-z, dept-x-y/z), and an object at A's name that records another owner is
neither patched nor deleted (NameConflict). The operator path is in test_inference_operator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from kubernetes import client

from cityhub import testkit as testing
from cityhub_api import labels
from cityhub_api.registry import component_type
from cityhub_api.settings import cache_dir
from component_types.inference import local, naming
from component_types.inference.driver import InferenceDriver, InferenceSettings
from component_types.inference.fixtures import JIAOTONG, MODEL_SERVERS, YINGJI, LocalInference
from component_types.inference.naming import object_name
from component_types.inference.routes import route_file

pytestmark = pytest.mark.integration
INFERENCE = component_type("inference")


@pytest.fixture(scope="module")
def k8s(inference_cluster: Path) -> client.ApiClient:
    return testing.api(inference_cluster)


async def until_ready(driver: InferenceDriver, request: Request) -> Any:
    for _ in range(120):
        try:
            return await driver.ensure(request)
        except TemporaryBackendError:
            await asyncio.sleep(0.5)
    return await driver.ensure(request)


def kubernetes_settings(backend: LocalInference) -> InferenceSettings:
    door = INFERENCE.front_door
    return InferenceSettings.from_env(
        {
            "CITYHUB_INFERENCE_MODE": "kubernetes",
            "CITYHUB_INFERENCE_SECRET_FILE": str(backend.secret_file),
            "CITYHUB_INFERENCE_GATEWAY_URL": f"http://{door.host()}:{door.port}",
            "CITYHUB_INFERENCE_NAMESPACE": MODEL_SERVERS,
            "CITYHUB_INFERENCE_ROUTES_NAMESPACE": labels.SYSTEM_NAMESPACE,
            "CITYHUB_INFERENCE_MODELS_PVC": "none",
            "CITYHUB_INFERENCE_MODELS_DIR": str(local.model_store(cache_dir())),
        }
    )


@pytest.fixture
def restricted(inference_cluster: Path) -> Iterator[None]:
    """The model servers' namespace enforcing Pod Security `restricted`, as backend.py labels it; taken off
    afterwards (the test modules share the cluster)."""
    level = {labels.POD_SECURITY_ENFORCE: "restricted", labels.POD_SECURITY_ENFORCE_VERSION: "latest"}
    testing.kubectl(
        inference_cluster,
        "label",
        "namespace",
        MODEL_SERVERS,
        *(f"{k}={v}" for k, v in level.items()),
        "--overwrite",
    )
    yield
    testing.kubectl(inference_cluster, "label", "namespace", MODEL_SERVERS, *(f"{k}-" for k in level))


def test_kubernetes_mode_puts_gpu_plans_on_gpu_nodes(
    inference_cluster: Path,
    k8s: client.ApiClient,
    inference_backend: LocalInference,
    monkeypatch: pytest.MonkeyPatch,
    restricted: None,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(inference_cluster))
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": MODEL_SERVERS}}
    bare["spec"] = {"containers": [{"name": "c", "image": "busybox"}]}
    refused = testing.apply(inference_cluster, [bare], check=False)
    assert refused.returncode != 0 and "PodSecurity" in refused.stderr  # the label is enforced here
    driver = InferenceDriver(kubernetes_settings(inference_backend))
    gpu = Request(
        YINGJI,
        "video",
        "uid-gpu-1",
        YINGJI,
        {"model": "traffic-flow", "replicas": 2},
        {"gpu": 1, "memory": 2**30, "requestsPerMinute": 600},
        plan="gpu-standard",
        offering="inference",
    )
    cpu = Request(
        JIAOTONG,
        "signals",
        "uid-cpu-1",
        JIAOTONG,
        {"model": "traffic-flow"},
        {"memory": 2**29, "requestsPerMinute": 600},
        plan="cpu-small",
        offering="inference",
    )

    async def run() -> None:
        try:
            got = await until_ready(driver, gpu)
            assert got.endpoints["pool"] == labels.GPU_POOL
            assert (
                got.endpoints["url"] == f"http://inference.{labels.SYSTEM_NAMESPACE}.svc.cluster.local:8090"
            )
            await until_ready(driver, cpu)
            routes[YINGJI] = await driver.mode.get_route(route_file(YINGJI, "video"))
        finally:
            await driver.delete(gpu)
            await driver.delete(cpu)
            await driver.close()

    core = client.CoreV1Api(k8s)

    def pods(dept: str) -> list[Any]:
        return core.list_namespaced_pod(MODEL_SERVERS, label_selector=f"{labels.DEPARTMENT}={dept}").items

    seen: dict[str, list[Any]] = {}
    routes: dict[str, Any] = {}
    original = driver.delete

    async def delete_after_looking(request: Request) -> None:
        seen.setdefault(request.department, pods(request.department))
        await original(request)

    driver.delete = delete_after_looking  # type: ignore[method-assign]
    asyncio.run(run())
    gpu_pods, cpu_pods = seen[YINGJI], seen[JIAOTONG]
    assert len(gpu_pods) == 2 and all(p.spec.node_name.startswith("cityhub-gpu-") for p in gpu_pods)
    assert all(p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1" for p in gpu_pods)
    assert all(naming.MANAGED_LABELS.items() <= p.metadata.labels.items() for p in gpu_pods)
    assert cpu_pods and all(p.spec.node_name.startswith("cityhub-cpu-") for p in cpu_pods)
    # The route went into the gateway's ConfigMap next to the gateway, pointing at the model server.
    route = routes[YINGJI]
    server = f"http://{object_name(YINGJI, 'video')}.{MODEL_SERVERS}.svc:"
    assert route is not None and route.server.startswith(server)
    data = core.read_namespaced_config_map(naming.ROUTES_CONFIGMAP, labels.SYSTEM_NAMESPACE).data or {}
    assert route_file(YINGJI, "video") not in data  # deleted with the endpoint


# -- attacks of one department on another that need the API server ------------------------------------


def test_kubernetes_mode_names_never_collide_and_anothers_object_is_left_alone(
    inference_cluster: Path,
    k8s: client.ApiClient,
    inference_backend: LocalInference,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dept-x/y-z and dept-x-y/z were one Deployment `ie-dept-x-y-z`, which either request patched or deleted.
    Now each has its own; and an object at a request's name that records another owner (what a collision
    would give; planted here) is refused with NameConflict, neither patched nor deleted."""
    monkeypatch.setenv("KUBECONFIG", str(inference_cluster))
    driver = InferenceDriver(kubernetes_settings(inference_backend))
    apps = client.AppsV1Api(k8s)

    def req(ns: str, name: str) -> Request:
        limits = {"memory": 2**28, "requestsPerMinute": 60}
        return Request(ns, name, f"uid-{ns}-{name}", ns, {"model": "traffic-flow"}, limits, plan="cpu-small")

    victim, attacker, clash = req("dept-x", "y-z"), req("dept-x-y", "z"), req("dept-x-y", "clash")
    planted_name = object_name("dept-x-y", "clash")

    async def run() -> None:
        try:
            theirs = await until_ready(driver, victim)
            mine = await until_ready(driver, attacker)
            assert theirs.backend["deployment"] != mine.backend["deployment"]
            await driver.delete(attacker)
            dep = apps.read_namespaced_deployment(object_name("dept-x", "y-z"), MODEL_SERVERS)
            assert (dep.status.available_replicas or 0) == 1  # the victim's server survived

            planted = apps.read_namespaced_deployment(object_name("dept-x", "y-z"), MODEL_SERVERS)
            body = client.ApiClient().sanitize_for_serialization(planted)
            body["metadata"] = {
                "name": planted_name,
                "namespace": MODEL_SERVERS,
                "labels": planted.metadata.labels,
                "annotations": planted.metadata.annotations,  # owner: dept-x/y-z
            }
            body.pop("status", None)
            own = {**planted.metadata.labels, labels.INSTANCE: planted_name}  # its own pods, not the victim's
            body["metadata"]["labels"] = body["spec"]["template"]["metadata"]["labels"] = own
            body["spec"]["selector"] = {"matchLabels": {labels.INSTANCE: planted_name}}
            apps.create_namespaced_deployment(MODEL_SERVERS, body)
            before = apps.read_namespaced_deployment(planted_name, MODEL_SERVERS)
            with pytest.raises(PermanentBackendError) as e:
                await driver.ensure(clash)
            assert e.value.reason == "NameConflict"
            assert f"Deployment {MODEL_SERVERS}/{planted_name} belongs to dept-x/y-z" in str(e.value)
            await driver.delete(clash)
            after = apps.read_namespaced_deployment(planted_name, MODEL_SERVERS)
            # Untouched: the same object (uid), spec (generation) and owner; only its controller wrote status.
            assert after.metadata.uid == before.metadata.uid
            assert after.metadata.generation == before.metadata.generation == 1
            assert after.metadata.annotations == before.metadata.annotations
            assert await driver.mode.get_route(route_file("dept-x", "y-z")) is not None
        finally:
            with contextlib.suppress(client.ApiException):
                apps.delete_namespaced_deployment(planted_name, MODEL_SERVERS)
            for r in (victim, attacker, clash):
                await driver.delete(r)
            await driver.close()

    asyncio.run(run())
    names = {d.metadata.name for d in apps.list_namespaced_deployment(MODEL_SERVERS).items}
    assert not names & {object_name("dept-x", "y-z"), object_name("dept-x-y", "z")}
