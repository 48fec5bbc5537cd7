"""AI inference end to end: embedded cluster + real MLServer + gateway + `python -m cityhub_operator`.

Request an InferenceEndpoint → Ready + Secret; a V2 infer call with the Secret's key returns the model's
real prediction; no key or another department's key is refused; over requestsPerMinute → 429; bad requests
name the field; a server that is down gives Ready=False and a retry that succeeds once it is back. The
kubernetes mode (GPU nodes, Pod Security, the gateway's routes ConfigMap, names that never collide) is in
test_inference_kubernetes_mode.py.

Attacks that need the API server (the others are in tests/security/test_inference_attacks.py): department
A's endpoints together over A's CPU, memory and GPU quota (ResourceQuota `compute`) while B's keep working
and B's quota stays B's.
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
from cityhub_operator.driver import BackendError, Request
from kubernetes import client

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, condition, wait_for
from cityhub_api.api import GROUP, VERSION
from cityhub_api.registry import component_type
from component_types.inference.driver import InferenceDriver, InferenceSettings
from component_types.inference.fixtures import CHENGGUAN, JIAOTONG, SHUIWU, YINGJI, LocalInference
from component_types.inference.naming import object_name

pytestmark = pytest.mark.integration
INFERENCE = component_type("inference")
PLURAL = INFERENCE.plural
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
def operator(
    inference_cluster: Path, inference_backend: LocalInference, tmp_path_factory: pytest.TempPathFactory
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
    proc = OperatorProcess(inference_cluster, env, tmp / "operator.log").start()
    yield proc
    try:
        testing.delete_requests(inference_cluster, PLURAL)
    finally:
        proc.stop()
    log = (tmp / "operator.log").read_text(errors="replace")
    assert "chk_" not in log, "an API key leaked into the operator log"
    assert inference_backend.secret not in log, "the key secret leaked into the operator log"


@pytest.fixture(scope="module")
def k8s(inference_cluster: Path) -> client.ApiClient:
    return testing.api(inference_cluster)


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
    assert obj["status"]["backend"]["model"] == object_name(YINGJI, "flow")
    direct_url = f"{server.url}/v2/models/{object_name(YINGJI, 'flow')}/infer"
    direct_status, direct = call(direct_url, body=infer_body(FEATURES))
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
    status, _ = call(f"{server.url}/v2/models/{object_name(YINGJI, 'flow')}/ready")
    assert status == 200, creds["model"]


def test_delete_revokes_the_key(operator: OperatorProcess, k8s: client.ApiClient) -> None:
    creds = secret(k8s, JIAOTONG, "flow-connection")
    testing.kubectl(operator.kubeconfig, "delete", "-n", JIAOTONG, "ie", "flow", "--wait=true")
    status, _ = call(creds["inferUrl"], creds["apiKey"], infer_body(FEATURES))
    assert status == 404


# -- attacks of one department on another that need the API server ------------------------------------


def test_a_departments_endpoints_together_stay_within_its_quota(
    operator: OperatorProcess, k8s: client.ApiClient
) -> None:
    """A (shuiwu) and B (chengguan) each have a compute quota of 2 CPUs, 2Gi and 2 GPUs. The model servers
    run outside their namespaces, so the driver sums each department's endpoints (replicas x 250m CPU,
    replicas x limits.memory, replicas x limits.gpu) against it: A fills its own quota and no more; B's
    quota stays B's, and B's endpoint answers."""
    kc = operator.kubeconfig
    # 2 x (250m, 512Mi) + 1 x (250m, 1Gi) = 750m, 2Gi: A's memory is full, each fits alone.
    testing.apply(
        kc, [endpoint(SHUIWU, "one", replicas=2), endpoint(SHUIWU, "two", limits={"memory": "1Gi"})]
    )
    wait_ready(k8s, SHUIWU, "one")
    wait_ready(k8s, SHUIWU, "two")
    testing.apply(
        kc,
        [
            endpoint(SHUIWU, "three"),  # 512Mi more
            endpoint(SHUIWU, "wide", replicas=16),  # 16 x 250m
            endpoint(SHUIWU, "gpus", plan="gpu-standard", replicas=3, limits={"memory": "1"}),
        ],
    )
    expected = {
        "three": (
            "OverMemoryQuota",
            "spec.replicas x spec.limits.memory = 1 x 512Mi = 512Mi exceeds what is left of department "
            f"{SHUIWU}'s memory quota: 0 of 2Gi",
        ),
        "wide": (
            "OverCpuQuota",
            "spec.replicas x 250m CPU (each model server replica) = 4000m exceeds what is left of "
            f"department {SHUIWU}'s CPU quota: 1250m of 2000m (requests.cpu; 0m used by its pods, 750m by "
            "its other inference endpoints)",
        ),
        "gpus": ("OverGpuQuota", "spec.replicas x spec.limits.gpu = 3 x 1 = 3 GPUs exceeds"),
    }
    for name, (reason, message) in expected.items():
        ready = condition(wait_ready(k8s, SHUIWU, name, "False"), "Ready")
        assert ready["reason"] == reason and message in ready["message"], ready

    # B's quota is B's: 4 x (250m, 512Mi) = 1000m, 2Gi fits although A's is full.
    testing.apply(kc, [endpoint(CHENGGUAN, "flow", replicas=4)])
    wait_ready(k8s, CHENGGUAN, "flow")
    theirs = secret(k8s, CHENGGUAN, "flow-connection")
    status, answer = call(theirs["inferUrl"], theirs["apiKey"], infer_body(FEATURES))
    assert status == 200 and answer["outputs"][0]["data"][0] > 1000, answer
    mine = secret(k8s, SHUIWU, "one-connection")
    assert call(mine["inferUrl"], mine["apiKey"], infer_body(FEATURES))[0] == 200  # A's endpoints still serve

    # Deleting one of A's endpoints gives its share back.
    testing.kubectl(kc, "delete", "-n", SHUIWU, "ie", "two", "--wait=true")
    testing.apply(kc, [endpoint(SHUIWU, "four")])
    wait_ready(k8s, SHUIWU, "four")
    assert call(theirs["inferUrl"], theirs["apiKey"], infer_body(FEATURES))[0] == 200
