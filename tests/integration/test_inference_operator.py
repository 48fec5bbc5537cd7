"""AI inference end to end: embedded cluster + real MLServer + gateway + `python -m cityhub_operator`.

Request an InferenceEndpoint → Ready + Secret; a V2 infer call with the Secret's key returns the model's
real prediction; no key or another department's key is refused; over requestsPerMinute → 429; bad requests
name the field; a server that is down gives Ready=False and a retry that succeeds once it is back; in
cluster mode a GPU plan's pods land on the (kwok) GPU inference nodes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cityhub import testkit as testing
from cityhub_operator.driver import BackendError, Request, TemporaryBackendError
from component_types.inference.driver import InferenceDriver
from component_types.inference.driver.server import LocalGateway, LocalMLServer, mlserver_binary
from component_types.inference.driver.settings import InferenceSettings
from cityhub_operator.testing import OperatorProcess, condition, wait_for
from kubernetes import client

pytestmark = pytest.mark.integration
SECRET = "inference-integration-secret-0123456789-abcdefghijkl"
CATALOG = Path(__file__).resolve().parents[2] / "stacks" / "catalog" / "inference.yaml"
GROUP, VERSION, PLURAL = "hub.cityhub.io", "v1alpha1", "inferenceendpoints"
# Rush hour on a Tuesday, dry; 3 a.m. on a Sunday with rain.
FEATURES = [[8, 1, 0, 0], [3, 6, 4, 0]]


def endpoint(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"offering": "inference", "model": "traffic-flow", **spec},
    }


def infer_body(rows: list[list[float]]) -> bytes:
    flat = [v for row in rows for v in row]
    inputs = [{"name": "features", "datatype": "FP32", "shape": [len(rows), 4], "data": flat}]
    return json.dumps({"inputs": inputs}).encode()


def call(url: str, key: str | None = None, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalMLServer, LocalGateway]]:
    try:
        mlserver_binary()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    tmp = tmp_path_factory.mktemp("inference")
    server = LocalMLServer(tmp).start()
    gateway = LocalGateway(tmp, tmp / "routes", server.url).start()
    yield server, gateway
    gateway.stop()
    server.stop()


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [yaml.safe_load(CATALOG.read_text())])
    testing.ensure_namespaces(kubeconfig, ("yingji", "jiaotong", "cityhub-inference"))
    quotas = [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": ns},
            "spec": {"hard": {"requests.nvidia.com/gpu": str(gpus)}},
        }
        for ns, gpus in (("yingji", 2), ("jiaotong", 0))
    ]
    testing.apply(kubeconfig, quotas)
    return kubeconfig


@pytest.fixture(scope="module")
def operator(
    cluster: Path, backend: tuple[LocalMLServer, LocalGateway], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    server, gateway = backend
    tmp = tmp_path_factory.mktemp("operator")
    env = {
        "CITYHUB_COMPONENTS": "inference",
        "CITYHUB_INFERENCE_SERVER_URL": server.url,
        "CITYHUB_INFERENCE_GATEWAY_URL": gateway.url,
        "CITYHUB_INFERENCE_REPOSITORY_DIR": str(server.repository),
        "CITYHUB_INFERENCE_ROUTES_DIR": str(gateway.routes),
        "CITYHUB_INFERENCE_SECRET": SECRET,
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "5",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "3",
        "CITYHUB_PROBE_INTERVAL": "0",  # probes count against the rate limit this test measures
    }
    proc = OperatorProcess(cluster, env, tmp / "operator.log").start()
    yield proc
    try:
        testing.delete_requests(cluster, "inferenceendpoints")
    finally:
        proc.stop()
    log = (tmp / "operator.log").read_text(errors="replace")
    assert "chk_" not in log, "an API key leaked into the operator log"


@pytest.fixture(scope="module")
def k8s(cluster: Path) -> client.ApiClient:
    return testing.api(cluster)


def get(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_ready(
    k8s: client.ApiClient, namespace: str, name: str, status: str = "True", timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(k8s, namespace, name)
        return obj if obj and condition(obj, "Ready").get("status") == status else None

    return wait_for(check, timeout, f"{namespace}/{name} Ready={status}")


def secret(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    data = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace).data
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_endpoint_serves_the_department_only_and_within_its_rate(
    operator: OperatorProcess, k8s: client.ApiClient, backend: tuple[LocalMLServer, LocalGateway]
) -> None:
    server, _ = backend
    testing.apply(
        operator.kubeconfig,
        [
            endpoint("yingji", "flow", limits={"requestsPerMinute": 5}),
            endpoint("jiaotong", "flow"),
        ],
    )
    obj = wait_ready(k8s, "yingji", "flow")
    wait_ready(k8s, "jiaotong", "flow")
    assert obj["status"]["endpoints"]["model"] == "yingji.flow"
    assert obj["status"]["limits"]["requestsPerMinute"] == 5
    mine, theirs = secret(k8s, "yingji", "flow-connection"), secret(k8s, "jiaotong", "flow-connection")

    status, answer = call(mine["inferUrl"], mine["apiKey"], infer_body(FEATURES))
    assert status == 200, answer
    rush, night = answer["outputs"][0]["data"]
    # The real model: rush hour carries several times the traffic of a rainy Sunday night.
    assert rush > 1000 > 500 > night > 0
    direct_status, direct = call(f"{server.url}/v2/models/yingji.flow/infer", body=infer_body(FEATURES))
    assert direct_status == 200 and direct["outputs"][0]["data"] == answer["outputs"][0]["data"]

    status, answer = call(mine["inferUrl"], None, infer_body(FEATURES))
    assert status == 401 and "Bearer" in answer["error"]
    status, answer = call(mine["inferUrl"], theirs["apiKey"], infer_body(FEATURES))
    assert status == 403, answer
    status, _ = call(theirs["inferUrl"], theirs["apiKey"], infer_body(FEATURES))
    assert status == 200
    asyncio.run(probe(operator, endpoint_request(k8s, "jiaotong", "flow"), theirs))

    codes = [call(mine["inferUrl"], mine["apiKey"], infer_body(FEATURES))[0] for _ in range(5)]
    assert codes[:4] == [200] * 4 and codes[4] == 429, codes  # 1 + 4 calls fill the 5 a minute


def endpoint_request(k8s: client.ApiClient, namespace: str, name: str) -> Request:
    obj = get(k8s, namespace, name)
    assert obj is not None
    return Request(namespace, name, obj["metadata"]["uid"], namespace, obj["spec"], {}, offering="inference")


async def probe(operator: OperatorProcess, request: Request, creds: dict[str, str]) -> None:
    """The operator's black-box probe (Prober.probe): a real infer call with the Secret's key."""
    driver = InferenceDriver(InferenceSettings.from_env({"CITYHUB_INFERENCE_SECRET": SECRET}))
    try:
        await driver.probe(request, creds)
        with pytest.raises(BackendError, match="HTTP 403"):
            await driver.probe(request, {**creds, "apiKey": "chk_not-the-key"})
    finally:
        await driver.close()


def test_bad_requests_name_the_field(operator: OperatorProcess, k8s: client.ApiClient) -> None:
    kc = operator.kubeconfig
    refused = testing.apply(
        kc, [endpoint("yingji", "sneaky", modelUri="../../etc/passwd.joblib")], check=False
    )
    assert refused.returncode != 0 and "spec.modelUri" in refused.stderr
    testing.apply(
        kc,
        [
            endpoint("yingji", "unknown", model="crowd-counting"),
            endpoint("yingji", "onnx", modelUri="traffic-flow/1/model.onnx"),
            endpoint("yingji", "greedy", plan="gpu-standard", replicas=3),
            endpoint("yingji", "noplan", plan="gpu-huge"),
        ],
    )
    expected = {
        "unknown": ("UnknownModel", "spec.model"),
        "onnx": ("UnsupportedModelFormat", "spec.modelUri"),
        "greedy": ("OverGpuQuota", "spec.replicas"),
        "noplan": ("PlanNotFound", "spec.plan"),
    }
    for name, (reason, field) in expected.items():
        ready = condition(wait_ready(k8s, "yingji", name, "False"), "Ready")
        assert ready["reason"] == reason and field in ready["message"], ready


def test_server_down_then_back(
    operator: OperatorProcess, k8s: client.ApiClient, backend: tuple[LocalMLServer, LocalGateway]
) -> None:
    server, _ = backend
    server.stop()
    try:
        testing.apply(operator.kubeconfig, [endpoint("jiaotong", "late")])
        ready = condition(wait_ready(k8s, "jiaotong", "late", "False"), "Ready")
        assert ready["reason"] == "BackendUnavailable" and "retrying" in ready["message"]
    finally:
        server.start()
    wait_ready(k8s, "jiaotong", "late", timeout=60)
    # The restarted server loaded the endpoints it served before from its repository.
    creds = secret(k8s, "yingji", "flow-connection")
    status, _ = call(f"{server.url}/v2/models/yingji.flow/ready")
    assert status == 200, creds["model"]


def test_delete_revokes_the_key(operator: OperatorProcess, k8s: client.ApiClient) -> None:
    creds = secret(k8s, "jiaotong", "flow-connection")
    testing.kubectl(operator.kubeconfig, "delete", "-n", "jiaotong", "ie", "flow", "--wait=true")
    status, _ = call(creds["inferUrl"], creds["apiKey"], infer_body(FEATURES))
    assert status == 404


def test_cluster_mode_puts_gpu_plans_on_gpu_nodes(
    cluster: Path, k8s: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster))
    settings = InferenceSettings.from_env(
        {
            "CITYHUB_INFERENCE_MODE": "cluster",
            "CITYHUB_INFERENCE_SECRET": SECRET,
            "CITYHUB_INFERENCE_MODELS_PVC": "none",
            "CITYHUB_INFERENCE_MODELS_DIR": os.environ.get("CITYHUB_INFERENCE_MODELS_DIR", ""),
        }
    )
    driver = InferenceDriver(settings)
    gpu = Request(
        "yingji",
        "video",
        "uid-gpu-1",
        "yingji",
        {"model": "traffic-flow", "replicas": 2},
        {"gpu": 1, "memory": 2**30, "requestsPerMinute": 600},
        plan="gpu-standard",
        offering="inference",
    )
    cpu = Request(
        "jiaotong",
        "signals",
        "uid-cpu-1",
        "jiaotong",
        {"model": "traffic-flow"},
        {"memory": 2**29, "requestsPerMinute": 600},
        plan="cpu-small",
        offering="inference",
    )

    async def ready(request: Request) -> Any:
        for _ in range(120):
            try:
                return await driver.ensure(request)
            except TemporaryBackendError:
                await asyncio.sleep(0.5)
        return await driver.ensure(request)

    async def run() -> None:
        try:
            got = await ready(gpu)
            assert got.endpoints["pool"] == "gpu-inference"
            await ready(cpu)
        finally:
            await driver.delete(gpu)
            await driver.delete(cpu)
            await driver.close()

    core = client.CoreV1Api(k8s)

    def pods(dept: str) -> list[Any]:
        return core.list_namespaced_pod(
            "cityhub-inference", label_selector=f"cityhub.io/department={dept}"
        ).items

    seen: dict[str, list[Any]] = {}
    original = driver.delete

    async def delete_after_looking(request: Request) -> None:
        seen.setdefault(request.department, pods(request.department))
        await original(request)

    driver.delete = delete_after_looking  # type: ignore[method-assign]
    asyncio.run(run())
    gpu_pods, cpu_pods = seen["yingji"], seen["jiaotong"]
    assert len(gpu_pods) == 2 and all(p.spec.node_name.startswith("cityhub-gpu-") for p in gpu_pods)
    assert all(p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1" for p in gpu_pods)
    assert cpu_pods and all(p.spec.node_name.startswith("cityhub-cpu-") for p in cpu_pods)
