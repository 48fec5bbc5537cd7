"""The inference driver's checks and the gateway's rules, without servers (fakes only for the model store)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cityhub_operator.driver import PermanentBackendError, Request
from component_types.inference.driver.cluster import ClusterBackend, object_name
from component_types.inference.driver.gateway import RateLimiter
from component_types.inference.driver.routes import Route, RouteFiles, api_key, key_hash

from component_types.inference.driver import InferenceDriver, models
from component_types.inference.driver.settings import InferenceSettings, parse_gpu_quota

SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    model = tmp_path / "traffic-flow"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.joblib").write_bytes(b"not really a model")
    meta = {"name": "traffic-flow", "runtime": "mlserver_sklearn.SKLearnModel", "versions": ["1"]}
    (model / "model.json").write_text(json.dumps(meta))
    return tmp_path


def driver(store: Path, **env: str) -> InferenceDriver:
    return InferenceDriver(
        InferenceSettings.from_env(
            {"CITYHUB_INFERENCE_SECRET": SECRET, "CITYHUB_INFERENCE_MODELS_DIR": str(store), **env}
        )
    )


def request(spec: dict[str, object], limits: dict[str, int] | None = None) -> Request:
    return Request("yingji", "flow", "uid-1", "yingji", spec, limits or {}, plan="p", offering="inference")


@pytest.mark.parametrize(
    ("spec", "reason", "field"),
    [
        ({"model": "crowd-counting"}, "UnknownModel", "spec.model"),
        ({"model": "traffic-flow", "modelVersion": "7"}, "UnknownModelVersion", "spec.modelVersion"),
        (
            {"model": "traffic-flow", "modelUri": "../secrets/model.joblib"},
            "InvalidModelUri",
            "spec.modelUri",
        ),
        ({"model": "traffic-flow", "modelUri": "/etc/model.joblib"}, "InvalidModelUri", "spec.modelUri"),
        ({"model": "traffic-flow", "modelUri": "s3://bucket/m.joblib"}, "InvalidModelUri", "spec.modelUri"),
        (
            {"model": "traffic-flow", "modelUri": "traffic-flow/1/m.onnx"},
            "UnsupportedModelFormat",
            "spec.modelUri",
        ),
        (
            {"model": "traffic-flow", "modelUri": "traffic-flow/2/model.joblib"},
            "ModelFileNotFound",
            "spec.modelUri",
        ),
    ],
)
def test_bad_models_name_the_field(store: Path, spec: dict[str, object], reason: str, field: str) -> None:
    with pytest.raises(PermanentBackendError) as e:
        driver(store).plan(request(spec))
    assert e.value.reason == reason and field in str(e.value)


def test_symlink_out_of_the_store_is_refused(store: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "model.joblib"
    outside.write_bytes(b"x")
    (store / "traffic-flow" / "1" / "escape.joblib").symlink_to(outside)
    with pytest.raises(PermanentBackendError, match="leads out of the model store"):
        driver(store).plan(request({"model": "traffic-flow", "modelUri": "traffic-flow/1/escape.joblib"}))


def test_gpu_plan_over_the_department_quota_is_refused(store: Path) -> None:
    d = driver(store, CITYHUB_INFERENCE_GPU_QUOTA="yingji=2,*=0")
    asyncio.run(
        d._check_quota(
            request({"model": "traffic-flow", "replicas": 2}, {"gpu": 1}),
            d.plan(request({"model": "traffic-flow", "replicas": 2}, {"gpu": 1})),
        )
    )
    big = request({"model": "traffic-flow", "replicas": 3}, {"gpu": 1})
    with pytest.raises(PermanentBackendError, match=r"spec.replicas x spec.limits.gpu = 3 x 1 = 3 GPUs") as e:
        asyncio.run(d._check_quota(big, d.plan(big)))
    assert e.value.reason == "OverGpuQuota" and "cpu-small" in str(e.value)


def test_plan_picks_the_pool_from_the_gpu_limit(store: Path) -> None:
    d = driver(store)
    assert d.plan(request({"model": "traffic-flow"}, {"gpu": 1})).pool == "gpu-inference"
    assert d.plan(request({"model": "traffic-flow"})).pool == "cpu"


def test_gpu_deployment_tolerates_the_gpu_taint_and_limits_gpus(store: Path) -> None:
    d = driver(store, CITYHUB_INFERENCE_MODE="cluster")
    req = request({"model": "traffic-flow", "replicas": 2}, {"gpu": 1, "memory": 2**30})
    plan = d.plan(req)
    scheduling = {
        "nodeSelector": {"cityhub.io/pool": "gpu-inference"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    dep = ClusterBackend(d.settings).deployment(req, plan, scheduling)
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"cityhub.io/pool": "gpu-inference"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"] == {"memory": str(2**30), "nvidia.com/gpu": "1"}


def test_keys_are_stable_per_request_and_differ_across_requests() -> None:
    a = api_key(SECRET.encode(), "yingji", "flow", "uid-1")
    assert a == api_key(SECRET.encode(), "yingji", "flow", "uid-1")
    assert a != api_key(SECRET.encode(), "yingji", "flow", "uid-2")  # recreated: the old key is dead
    assert a != api_key(SECRET.encode(), "jiaotong", "flow", "uid-1")


def test_route_files_round_trip(tmp_path: Path) -> None:
    files = RouteFiles(tmp_path)
    route = Route("yingji.flow", "yingji", "u", "http://s", "yingji.flow", key_hash("k"), 5)
    files.put(route)
    assert files.get("yingji.flow") == route and files.all() == {"yingji.flow": route}
    files.remove("yingji.flow")
    assert files.get("yingji.flow") is None


def test_rate_limiter_admits_the_limit_per_minute() -> None:
    limiter = RateLimiter()
    assert [limiter.admit("e", 3, now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert limiter.admit("e", 3, now=30) == pytest.approx(30)  # until the call at t=0 leaves the window
    assert limiter.admit("e", 3, now=60.5) == 0


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="CITYHUB_INFERENCE_MODE"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_MODE": "cloud"})
    with pytest.raises(ValueError, match="CITYHUB_INFERENCE_GPU_QUOTA"):
        parse_gpu_quota("yingji=two")
    with pytest.raises(ValueError, match="32 characters"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_SECRET": "short"})
    assert InferenceSettings.from_env({}).mode == "embedded"  # an operator serving every type starts


def test_object_names_fit_kubernetes() -> None:
    assert object_name("yingji", "flow") == "ie-yingji-flow"
    long = object_name("a" * 40, "b" * 40)
    assert len(long) <= 50 and long != object_name("a" * 40, "b" * 39 + "c")


def test_models_catalog_lists_the_store(store: Path) -> None:
    assert list(models.catalog(store)) == ["traffic-flow"]
