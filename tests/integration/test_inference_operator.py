"""AI inference end to end: embedded cluster + real MLServer + gateway + `python -m cityhub_operator`.

Request an InferenceEndpoint → Ready + Secret; a V2 infer call with the Secret's key returns the model's
real prediction; no key or another department's key is refused; over requestsPerMinute → 429; bad requests
name the field; a server that is down gives Ready=False and a retry that succeeds once it is back; in
kubernetes mode a GPU plan's pods land on the (kwok) GPU inference nodes and its route in the gateway's
ConfigMap in the system namespace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cityhub_operator.driver import BackendError, Request, TemporaryBackendError
from kubernetes import client

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, condition, wait_for
from cityhub_api import labels
from cityhub_api.api import GROUP, VERSION
from cityhub_api.registry import component_type
from cityhub_api.settings import cache_dir
from component_types.inference import local, naming
from component_types.inference.driver import InferenceDriver, InferenceSettings
from component_types.inference.fixtures import LocalInference

pytestmark = pytest.mark.integration
INFERENCE = component_type("inference")
PLURAL = INFERENCE.plural
YINGJI, JIAOTONG = "dept-yingji", "dept-jiaotong"
MODEL_SERVERS = "cityhub-inference"
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
def cluster(kubeconfig: Path) -> Iterator[Path]:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, list(yaml.safe_load_all(INFERENCE.catalog_file.read_text())))
    testing.ensure_namespaces(kubeconfig, (YINGJI, JIAOTONG, MODEL_SERVERS, labels.SYSTEM_NAMESPACE))
    quotas = [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": ns},
            "spec": {"hard": {"requests.nvidia.com/gpu": str(gpus)}},
        }
        for ns, gpus in ((YINGJI, 2), (JIAOTONG, 0))
    ]
    testing.apply(kubeconfig, quotas)
    yield kubeconfig
    # Test modules share the cluster: the stack's own quota of these namespaces must not meet ours.
    for ns in (YINGJI, JIAOTONG):
        testing.kubectl(kubeconfig, "delete", "resourcequota", "compute", "-n", ns, "--ignore-not-found")


@pytest.fixture(scope="module")
def operator(
    cluster: Path, inference_backend: LocalInference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("operator")
    env = {
        "CITYHUB_COMPONENTS": "inference",
        **inference_backend.operator_env(),
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "5",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "3",
        "CITYHUB_PROBE_INTERVAL": "0",  # probes count against the rate limit this test measures
    }
    proc = OperatorProcess(cluster, env, tmp / "operator.log").start()
    yield proc
    try:
        testing.delete_requests(cluster, PLURAL)
    finally:
        proc.stop()
    log = (tmp / "operator.log").read_text(errors="replace")
    assert "chk_" not in log, "an API key leaked into the operator log"
    assert inference_backend.secret not in log, "the key secret leaked into the operator log"


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
    operator: OperatorProcess, k8s: client.ApiClient, inference_backend: LocalInference
) -> None:
    server = inference_backend.server
    testing.apply(
        operator.kubeconfig,
        [
            endpoint(YINGJI, "flow", limits={"requestsPerMinute": 5}),
            endpoint(JIAOTONG, "flow"),
        ],
    )
    obj = wait_ready(k8s, YINGJI, "flow")
    wait_ready(k8s, JIAOTONG, "flow")
    assert obj["status"]["endpoints"]["model"] == f"{YINGJI}.flow"
    assert obj["status"]["limits"]["requestsPerMinute"] == 5
    mine, theirs = secret(k8s, YINGJI, "flow-connection"), secret(k8s, JIAOTONG, "flow-connection")
    assert set(mine) == {"url", "model", "inferUrl", "protocol", "pool", "requestsPerMinute", "apiKey"}

    status, answer = call(mine["inferUrl"], mine["apiKey"], infer_body(FEATURES))
    assert status == 200, answer
    rush, night = answer["outputs"][0]["data"]
    # The real model: rush hour carries several times the traffic of a rainy Sunday night.
    assert rush > 1000 > 500 > night > 0
    direct_status, direct = call(f"{server.url}/v2/models/{YINGJI}.flow/infer", body=infer_body(FEATURES))
    assert direct_status == 200 and direct["outputs"][0]["data"] == answer["outputs"][0]["data"]

    status, answer = call(mine["inferUrl"], None, infer_body(FEATURES))
    assert status == 401 and "Bearer" in answer["error"]
    status, answer = call(mine["inferUrl"], theirs["apiKey"], infer_body(FEATURES))
    assert status == 403, answer
    status, _ = call(theirs["inferUrl"], theirs["apiKey"], infer_body(FEATURES))
    assert status == 200
    asyncio.run(probe(inference_backend, endpoint_request(k8s, JIAOTONG, "flow"), theirs))

    codes = [call(mine["inferUrl"], mine["apiKey"], infer_body(FEATURES))[0] for _ in range(5)]
    assert codes[:4] == [200] * 4 and codes[4] == 429, codes  # 1 + 4 calls fill the 5 a minute


def endpoint_request(k8s: client.ApiClient, namespace: str, name: str) -> Request:
    obj = get(k8s, namespace, name)
    assert obj is not None
    return Request(namespace, name, obj["metadata"]["uid"], namespace, obj["spec"], {}, offering="inference")


async def probe(backend: LocalInference, request: Request, creds: dict[str, str]) -> None:
    """The operator's black-box probe (Prober.probe): a real infer call with the Secret's key."""
    driver = InferenceDriver(InferenceSettings.from_env(backend.operator_env()))
    try:
        await driver.probe(request, creds)
        with pytest.raises(BackendError, match="HTTP 403"):
            await driver.probe(request, {**creds, "apiKey": "chk_not-the-key"})
    finally:
        await driver.close()


def test_bad_requests_name_the_field(operator: OperatorProcess, k8s: client.ApiClient) -> None:
    kc = operator.kubeconfig
    refused = testing.apply(kc, [endpoint(YINGJI, "sneaky", modelUri="../../etc/passwd.joblib")], check=False)
    assert refused.returncode != 0 and "spec.modelUri" in refused.stderr
    testing.apply(
        kc,
        [
            endpoint(YINGJI, "unknown", model="crowd-counting"),
            endpoint(YINGJI, "onnx", modelUri="traffic-flow/1/model.onnx"),
            endpoint(YINGJI, "greedy", plan="gpu-standard", replicas=3),
            endpoint(YINGJI, "noplan", plan="gpu-huge"),
        ],
    )
    expected = {
        "unknown": ("UnknownModel", "spec.model"),
        "onnx": ("UnsupportedModelFormat", "spec.modelUri"),
        "greedy": ("OverGpuQuota", "spec.replicas"),
        "noplan": ("PlanNotFound", "spec.plan"),
    }
    for name, (reason, field) in expected.items():
        ready = condition(wait_ready(k8s, YINGJI, name, "False"), "Ready")
        assert ready["reason"] == reason and field in ready["message"], ready


def test_server_down_then_back(
    operator: OperatorProcess, k8s: client.ApiClient, inference_backend: LocalInference
) -> None:
    server = inference_backend.server
    server.stop()
    try:
        testing.apply(operator.kubeconfig, [endpoint(JIAOTONG, "late")])
        ready = condition(wait_ready(k8s, JIAOTONG, "late", "False"), "Ready")
        assert ready["reason"] == "BackendUnavailable" and "retrying" in ready["message"]
    finally:
        server.start()  # on the same ports: the routes name its URL
    wait_ready(k8s, JIAOTONG, "late", timeout=60)
    # The restarted server loaded the endpoints it served before from its repository.
    creds = secret(k8s, YINGJI, "flow-connection")
    status, _ = call(f"{server.url}/v2/models/{YINGJI}.flow/ready")
    assert status == 200, creds["model"]


def test_delete_revokes_the_key(operator: OperatorProcess, k8s: client.ApiClient) -> None:
    creds = secret(k8s, JIAOTONG, "flow-connection")
    testing.kubectl(operator.kubeconfig, "delete", "-n", JIAOTONG, "ie", "flow", "--wait=true")
    status, _ = call(creds["inferUrl"], creds["apiKey"], infer_body(FEATURES))
    assert status == 404


def test_kubernetes_mode_puts_gpu_plans_on_gpu_nodes(
    cluster: Path, k8s: client.ApiClient, inference_backend: LocalInference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster))
    door = INFERENCE.front_door
    settings = InferenceSettings.from_env(
        {
            "CITYHUB_INFERENCE_MODE": "kubernetes",
            "CITYHUB_INFERENCE_SECRET_FILE": str(inference_backend.secret_file),
            "CITYHUB_INFERENCE_GATEWAY_URL": f"http://{door.host()}:{door.port}",
            "CITYHUB_INFERENCE_NAMESPACE": MODEL_SERVERS,
            "CITYHUB_INFERENCE_ROUTES_NAMESPACE": labels.SYSTEM_NAMESPACE,
            "CITYHUB_INFERENCE_MODELS_PVC": "none",
            "CITYHUB_INFERENCE_MODELS_DIR": str(local.model_store(cache_dir())),
        }
    )
    driver = InferenceDriver(settings)
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
            assert got.endpoints["pool"] == labels.GPU_POOL
            assert (
                got.endpoints["url"] == f"http://inference.{labels.SYSTEM_NAMESPACE}.svc.cluster.local:8090"
            )
            await ready(cpu)
            routes[YINGJI] = await driver.mode.get_route(f"{YINGJI}.video")
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
    assert route is not None and route.server.startswith(f"http://ie-{YINGJI}-video.{MODEL_SERVERS}.svc:")
    data = core.read_namespaced_config_map(naming.ROUTES_CONFIGMAP, labels.SYSTEM_NAMESPACE).data or {}
    assert f"{YINGJI}.video.json" not in data  # deleted with the endpoint
