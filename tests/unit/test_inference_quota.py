"""The inference driver's quota (summed per department over all its endpoints: GPUs, CPU, memory) and its
ownership checks in embedded mode, without servers: the shared server's repository is a directory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cityhub_operator.driver import PermanentBackendError, Request

from component_types.inference.driver import InferenceDriver, InferenceSettings, quota
from component_types.inference.driver.embedded import MODEL_SETTINGS, EmbeddedMode
from component_types.inference.driver.quota import Allowance, DepartmentQuota, Resources
from component_types.inference.naming import object_name

SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
A, B = "dept-a", "dept-b"
GiB = 2**30


def driver(store: Path, **env: str) -> InferenceDriver:
    return InferenceDriver(
        InferenceSettings.from_env(
            {
                "CITYHUB_INFERENCE_SECRET": SECRET,
                "CITYHUB_INFERENCE_MODELS_DIR": str(store),
                "CITYHUB_INFERENCE_REPOSITORY_DIR": str(store.parent / "repository"),
                "CITYHUB_INFERENCE_ROUTES_DIR": str(store.parent / "routes"),
                # Any URL: these tests never reach a server (ownership is checked before any call).
                "CITYHUB_INFERENCE_SERVER_URL": "http://127.0.0.1:9",
                "CITYHUB_INFERENCE_GATEWAY_URL": "http://127.0.0.1:9",
                **env,
            }
        )
    )


def request(ns: str, name: str, replicas: int = 1, **limits: int) -> Request:
    spec = {"model": "traffic-flow", "replicas": replicas}
    return Request(ns, name, f"uid-{ns}-{name}", ns, spec, limits, plan="p", offering="inference")


def served(d: InferenceDriver, req: Request) -> None:
    """What serve leaves in the repository for `req` (its model-settings.json), without loading it."""
    mode = d.mode
    assert isinstance(mode, EmbeddedMode)
    plan = d.plan(req)
    folder = mode.repository / plan.object_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_SETTINGS).write_text(mode.model_settings(req, plan))


def check(d: InferenceDriver, req: Request) -> None:
    asyncio.run(d.check_quota(req, d.plan(req)))


def test_gpu_quota_is_summed_over_the_departments_endpoints(inference_model_store: Path) -> None:
    d = driver(inference_model_store, CITYHUB_INFERENCE_GPU_QUOTA=f"{A}=2,{B}=2")
    first = request(A, "one", gpu=1)
    check(d, first)
    served(d, first)
    second = request(A, "two", gpu=1)
    check(d, second)
    served(d, second)
    third = request(A, "three", gpu=1)  # each fits alone; together they are over a's 2 GPUs
    with pytest.raises(PermanentBackendError) as e:
        check(d, third)
    assert e.value.reason == "OverGpuQuota"
    assert "spec.replicas x spec.limits.gpu = 1 x 1 = 1 GPUs" in str(e.value)
    assert "left of department dept-a's GPU quota: 0 of 2" in str(e.value)
    assert "2 by its other inference endpoints" in str(e.value)
    check(d, request(B, "one", replicas=2, gpu=1))  # b's quota is b's: a's endpoints take none of it
    # An update of an existing endpoint counts it once: `one` growing to 2 replicas needs 3 GPUs in all.
    with pytest.raises(PermanentBackendError, match=r"= 2 GPUs .* 1 of 2 \(.* 1 by its other inference"):
        check(d, request(A, "one", replicas=2, gpu=1))


def test_cpu_and_memory_count_against_the_departments_quota() -> None:
    """Plain function: replicas x 250m and replicas x memory, plus the other endpoints and the namespace's
    own pods, within requests.cpu and requests.memory."""
    limits = DepartmentQuota(gpu=None, cpu_millis=Allowance(1000, 250), memory=Allowance(4 * GiB, GiB))
    each = Resources(0, quota.CPU_REQUEST_MILLIS, GiB)
    quota.check(request(A, "x"), 2, each, Resources(0, 250, GiB), limits)  # 500m + 250m + 250m = 1 CPU
    with pytest.raises(PermanentBackendError) as e:
        quota.check(request(A, "x"), 3, each, Resources(0, 250, 0), limits)
    assert e.value.reason == "OverCpuQuota"
    assert "spec.replicas x 250m CPU" in str(e.value) and "500m of 1000m" in str(e.value)
    with pytest.raises(PermanentBackendError) as e:
        quota.check(request(A, "x"), 2, each, Resources(0, 0, 2 * GiB), limits)
    assert e.value.reason == "OverMemoryQuota"
    assert "spec.replicas x spec.limits.memory = 2 x 1Gi = 2Gi" in str(e.value)
    assert "1Gi of 4Gi" in str(e.value) and "1Gi used by its pods" in str(e.value)
    # No quota on cpu or memory: not limited; no GPU quota: no GPUs.
    free = DepartmentQuota(gpu=None, cpu_millis=None, memory=None)
    quota.check(request(A, "x"), 16, Resources(0, 250, 64 * GiB), Resources(0, 10**6, 10**15), free)
    with pytest.raises(PermanentBackendError, match="GPU quota: 0 of 0") as e:
        quota.check(request(A, "x"), 1, Resources(1, 250, GiB), Resources(), free)
    assert e.value.reason == "OverGpuQuota"


def test_embedded_usage_sums_only_the_departments_other_endpoints(inference_model_store: Path) -> None:
    d = driver(inference_model_store)
    for req in (request(A, "one", 2, gpu=1, memory=GiB), request(A, "two", memory=GiB), request(B, "x", 4)):
        served(d, req)
    mode = d.mode
    got = asyncio.run(mode.usage(A, exclude=f"{A}/two"))
    assert got == Resources(2, 2 * quota.CPU_REQUEST_MILLIS, 2 * GiB)
    assert asyncio.run(mode.usage(B, exclude="")) == Resources(0, 4 * quota.CPU_REQUEST_MILLIS, 0)


def test_embedded_mode_never_takes_over_anothers_model(inference_model_store: Path) -> None:
    """A folder at the request's object name that records another owner (a collision, or planted) is
    refused with NameConflict naming the owner, and neither rewritten nor removed on delete."""
    d = driver(inference_model_store)
    mine = request(A, "flow")
    folder = d.settings.embedded.repository_dir / object_name(A, "flow")
    folder.mkdir(parents=True)
    theirs = {"name": object_name(A, "flow"), "parameters": {"extra": {"cityhub": {"owner": f"{B}/flow"}}}}
    (folder / MODEL_SETTINGS).write_text(json.dumps(theirs))
    with pytest.raises(PermanentBackendError) as e:
        asyncio.run(d.mode.serve(mine, d.plan(mine)))
    assert e.value.reason == "NameConflict" and f"belongs to {B}/flow" in str(e.value)
    asyncio.run(d.mode.remove(mine))  # no server call: it is not the request's
    assert json.loads((folder / MODEL_SETTINGS).read_text()) == theirs
    (folder / MODEL_SETTINGS).write_text('{"name": "hand-made"}')  # no owner recorded: not the driver's
    with pytest.raises(PermanentBackendError, match="belongs to an unknown owner"):
        asyncio.run(d.mode.serve(mine, d.plan(mine)))
