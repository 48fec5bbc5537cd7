"""The inference driver's checks and the gateway's rules without servers (a fake model store only); and,
marked integration, the embedded default's launcher (local.start) with a real MLServer and gateway."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError

from cityhub.local_backends import LocalContext
from cityhub.supervisor import Supervisor, is_running
from cityhub_api import labels
from cityhub_api.settings import SettingError, cache_dir
from component_types.inference import local, naming
from component_types.inference.driver import (
    InferenceDriver,
    InferenceSettings,
    create_driver,
    manifests,
    models,
)
from component_types.inference.driver.settings import parse_gpu_quota
from component_types.inference.fixtures import installed_backend
from component_types.inference.gateway_limits import RateLimiter
from component_types.inference.naming import object_name
from component_types.inference.routes import Route, RouteFiles, api_key, key_hash, route_file

SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DEPT = "dept-yingji"
T = TypeVar("T")


def driver(store: Path, **env: str) -> InferenceDriver:
    """A driver on `store`; its other directories next to it (never the real cache's)."""
    return InferenceDriver(
        InferenceSettings.from_env(
            {
                "CITYHUB_INFERENCE_SECRET": SECRET,
                "CITYHUB_INFERENCE_MODELS_DIR": str(store),
                "CITYHUB_INFERENCE_REPOSITORY_DIR": str(store.parent / "repository"),
                "CITYHUB_INFERENCE_ROUTES_DIR": str(store.parent / "routes"),
                **env,
            }
        )
    )


def request(spec: dict[str, object], limits: dict[str, int] | None = None, name: str = "flow") -> Request:
    return Request(DEPT, name, "uid-1", DEPT, spec, limits or {}, plan="p", offering="inference")


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
def test_bad_models_name_the_field(
    inference_model_store: Path, spec: dict[str, object], reason: str, field: str
) -> None:
    with pytest.raises(PermanentBackendError) as e:
        driver(inference_model_store).plan(request(spec))
    assert e.value.reason == reason and field in str(e.value)


def test_symlink_out_of_the_store_is_refused(
    inference_model_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "model.joblib"
    outside.write_bytes(b"x")
    (inference_model_store / "traffic-flow" / "1" / "escape.joblib").symlink_to(outside)
    with pytest.raises(PermanentBackendError, match="leads out of the model store"):
        driver(inference_model_store).plan(
            request({"model": "traffic-flow", "modelUri": "traffic-flow/1/escape.joblib"})
        )


def test_gpu_plan_over_the_department_quota_is_refused(inference_model_store: Path) -> None:
    d = driver(
        inference_model_store,
        CITYHUB_INFERENCE_GPU_QUOTA=f"{DEPT}=2,*=0",
        CITYHUB_INFERENCE_SERVER_URL="http://127.0.0.1:9",  # never called: the repository is the inventory
    )
    fits = request({"model": "traffic-flow", "replicas": 2}, {"gpu": 1})
    asyncio.run(d.check_quota(fits, d.plan(fits)))
    big = request({"model": "traffic-flow", "replicas": 3}, {"gpu": 1})
    with pytest.raises(PermanentBackendError, match=r"spec.replicas x spec.limits.gpu = 3 x 1 = 3 GPUs") as e:
        asyncio.run(d.check_quota(big, d.plan(big)))
    assert e.value.reason == "OverGpuQuota" and "cpu-small" in str(e.value)


def test_plan_picks_the_pool_from_the_gpu_limit(inference_model_store: Path) -> None:
    d = driver(inference_model_store)
    assert d.plan(request({"model": "traffic-flow"}, {"gpu": 1})).pool == labels.GPU_POOL
    assert d.plan(request({"model": "traffic-flow"})).pool == labels.CPU_POOL


def test_gpu_deployment_tolerates_the_gpu_taint_and_limits_gpus(inference_model_store: Path) -> None:
    d = driver(inference_model_store, CITYHUB_INFERENCE_MODE="kubernetes")
    req = request({"model": "traffic-flow", "replicas": 2}, {"gpu": 1, "memory": 2**30})
    scheduling = {
        "nodeSelector": {labels.POOL: labels.GPU_POOL},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    dep = manifests.deployment(d.settings.kubernetes, req, d.plan(req), scheduling)
    pod = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["namespace"] == "cityhub-inference"
    assert dep["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {labels.POOL: labels.GPU_POOL}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"] == {"memory": str(2**30), "nvidia.com/gpu": "1"}


def test_model_servers_carry_the_labels_the_backend_fences(inference_model_store: Path) -> None:
    """backend.py's NetworkPolicy admits only the gateway to pods with naming.MANAGED_LABELS; every object
    records its owner, which the driver reads before a patch or delete."""
    d = driver(inference_model_store, CITYHUB_INFERENCE_MODE="kubernetes")
    req = request({"model": "traffic-flow"})
    settings = d.settings.kubernetes
    dep = manifests.deployment(settings, req, d.plan(req), {})
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert naming.MANAGED_LABELS.items() <= pod_labels.items()
    assert pod_labels[labels.DEPARTMENT] == DEPT and pod_labels[labels.ENDPOINT] == "flow"
    assert pod_labels[naming.OWNER_UID] == "uid-1"
    isvc = manifests.inference_service(settings, req, d.plan(req), {})
    for obj in (dep, manifests.service(settings, req), isvc):
        assert naming.MANAGED_LABELS.items() <= obj["metadata"]["labels"].items()
        assert obj["metadata"]["annotations"] == {labels.REQUEST: f"{DEPT}/flow"}
        assert obj["metadata"]["name"] == object_name(DEPT, "flow")


def test_model_servers_meet_pod_security_restricted(inference_model_store: Path) -> None:
    """The model servers' namespace enforces `restricted` (backend.py): non-root, no escalation, no
    capabilities, the runtime's seccomp profile."""
    d = driver(inference_model_store, CITYHUB_INFERENCE_MODE="kubernetes")
    req = request({"model": "traffic-flow"})
    settings = d.settings.kubernetes
    pod = manifests.deployment(settings, req, d.plan(req), {})["spec"]["template"]["spec"]
    predictor = manifests.inference_service(settings, req, d.plan(req), {})["spec"]["predictor"]
    for pod_security, container in (
        (pod["securityContext"], pod["containers"][0]),
        (predictor["securityContext"], predictor["model"]),
    ):
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] > 0
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    assert pod["automountServiceAccountToken"] is False


def test_a_long_request_name_keeps_labels_valid(inference_model_store: Path) -> None:
    d = driver(inference_model_store, CITYHUB_INFERENCE_MODE="kubernetes")
    req = request({"model": "traffic-flow"}, name="n" * 200)
    meta = manifests.service(d.settings.kubernetes, req)["metadata"]
    assert labels.ENDPOINT not in meta["labels"]  # over 63 characters: the annotation names the owner
    assert all(len(v) <= 63 for v in meta["labels"].values())
    assert meta["annotations"][labels.REQUEST] == f"{DEPT}/{'n' * 200}"


def test_keys_are_stable_per_request_and_differ_across_requests() -> None:
    a = api_key(SECRET.encode(), DEPT, "flow", "uid-1")
    assert a == api_key(SECRET.encode(), DEPT, "flow", "uid-1")
    assert a != api_key(SECRET.encode(), DEPT, "flow", "uid-2")  # recreated: the old key is dead
    assert a != api_key(SECRET.encode(), "dept-jiaotong", "flow", "uid-1")


def test_route_files_round_trip(tmp_path: Path) -> None:
    files = RouteFiles(tmp_path)
    route = Route(f"{DEPT}.flow", DEPT, "u", "http://s", object_name(DEPT, "flow"), key_hash("k"), 5)
    files.put(route)
    assert route.file == route_file(DEPT, "flow") == f"{object_name(DEPT, 'flow')}.json"
    assert files.get(route.file) == route and files.all() == {f"{DEPT}.flow": route}
    files.remove(route.file)
    assert files.get(route.file) is None


def test_gateway_ignores_route_files_that_do_not_follow_from_their_route(tmp_path: Path) -> None:
    """A file planted under another name (or left by the old `<endpoint>.json` naming) routes nothing: only
    the file named after the route it holds counts."""
    files = RouteFiles(tmp_path)
    theirs = Route("dept-b.flow", "dept-b", "u", "http://s", "m", key_hash("k"), 5)
    (tmp_path / "dept-b.flow.json").write_text(theirs.to_json())  # the old name
    (tmp_path / route_file("dept-a", "flow")).write_text(theirs.to_json())  # a's file, b's route
    lying = Route("dept-b.flow", "dept-a", "u", "http://s", "m", key_hash("k"), 5)  # department ≠ prefix
    (tmp_path / route_file("dept-a", "b.flow")).write_text(lying.to_json())
    assert files.all() == {}
    files.put(theirs)
    assert files.all() == {"dept-b.flow": theirs}


def test_rate_limiter_admits_the_limit_per_minute() -> None:
    limiter = RateLimiter()
    assert [limiter.admit("e", 3, now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert limiter.admit("e", 3, now=30) == pytest.approx(30)  # until the call at t=0 leaves the window
    assert limiter.admit("e", 3, now=60.5) == 0


def test_settings_reject_bad_values() -> None:
    with pytest.raises(SettingError, match=r"Invalid CITYHUB_INFERENCE_MODE=cluster: .*embedded, kubernetes"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_MODE": "cluster"})
    with pytest.raises(SettingError, match="CITYHUB_INFERENCE_GPU_QUOTA"):
        parse_gpu_quota(f"{DEPT}=two")
    with pytest.raises(SettingError, match="32 characters"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_SECRET": "short"})
    with pytest.raises(SettingError, match="CITYHUB_INFERENCE_GATEWAY_URL"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_GATEWAY_URL": "gateway:8090"})
    with pytest.raises(SettingError, match="CITYHUB_INFERENCE_TIMEOUT"):
        InferenceSettings.from_env({"CITYHUB_INFERENCE_TIMEOUT": "0"})
    assert create_driver({}).settings.mode == "embedded"  # an operator serving every type starts


def test_kubernetes_settings_put_routes_next_to_the_gateway(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    settings = InferenceSettings.from_env(
        {
            "CITYHUB_INFERENCE_MODE": "kubernetes",
            "CITYHUB_INFERENCE_SECRET_FILE": str(secret),
            "CITYHUB_INFERENCE_NAMESPACE": "cityhub-inference",
            "CITYHUB_INFERENCE_ROUTES_NAMESPACE": "cityhub-system",
            "CITYHUB_INFERENCE_MODELS_PVC": "none",
        }
    )
    assert settings.mode == "kubernetes" and settings.secret == SECRET.encode()
    assert settings.kubernetes.namespace == "cityhub-inference"
    assert settings.kubernetes.routes_namespace == "cityhub-system"
    assert settings.kubernetes.routes_configmap == naming.ROUTES_CONFIGMAP
    assert settings.kubernetes.models_pvc == ""
    alone = InferenceSettings.from_env({"CITYHUB_INFERENCE_NAMESPACE": "models"})
    assert alone.kubernetes.routes_namespace == "models"  # default: next to the model servers


def test_unconfigured_driver_waits_instead_of_writing_a_wrong_url(inference_model_store: Path) -> None:
    d = driver(inference_model_store)  # neither CITYHUB_INFERENCE_GATEWAY_URL nor SERVER_URL
    with pytest.raises(TemporaryBackendError, match="CITYHUB_INFERENCE_GATEWAY_URL"):
        asyncio.run(d.ensure(request({"model": "traffic-flow"})))
    d = driver(inference_model_store, CITYHUB_INFERENCE_GATEWAY_URL="http://127.0.0.1:1")
    with pytest.raises(TemporaryBackendError, match="CITYHUB_INFERENCE_SERVER_URL"):
        asyncio.run(d.ensure(request({"model": "traffic-flow"})))
    assert not (inference_model_store.parent / "repository").exists()  # nothing written without a server


def test_object_names_fit_kubernetes_and_never_collide() -> None:
    """`ie-<ns>-<name>` made dept-x/y-z and dept-x-y/z the same object; the hash of <ns>/<name> does not."""
    dns_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
    pairs = [
        ("dept-x", "y-z"),
        ("dept-x-y", "z"),
        ("dept-x", "y.z"),
        ("dept-x-y", "z"),
        ("a" * 63, "b" * 253),
    ]
    for ns, name in pairs:
        got = object_name(ns, name)
        assert dns_1035.fullmatch(got) and len(got) <= 50, got
        assert got.startswith("ie-" + f"{ns}-{name}"[:10].replace(".", "-"))  # readable
        assert route_file(ns, name) == got + ".json"
    assert object_name("dept-x", "y-z") != object_name("dept-x-y", "z")
    assert object_name("dept-x", "y.z") != object_name("dept-x", "y-z")
    assert object_name("a" * 40, "b" * 40) != object_name("a" * 40, "b" * 39 + "c")
    assert object_name(DEPT, "flow") == object_name(DEPT, "flow")  # stable: retries find the same objects


def test_models_catalog_lists_the_store(inference_model_store: Path) -> None:
    assert list(models.catalog(inference_model_store)) == ["traffic-flow"]


# -- the embedded default's launcher, on a real MLServer -------------------------------------------------


def infer(url: str, key: str | None) -> int:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [8, 1, 0, 0]}]}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def with_driver(env: dict[str, str], call: Callable[[InferenceDriver], Awaitable[T]]) -> T:
    """One driver call in its own event loop (the driver's HTTP session belongs to one loop)."""

    async def run() -> T:
        d = create_driver(env)
        try:
            return await call(d)
        finally:
            await d.close()

    return asyncio.run(run())


@pytest.mark.integration
def test_local_start_serves_on_free_ports_and_is_idempotent(tmp_path: Path) -> None:
    installed_backend()  # fails, naming install.sh, when MLServer or the model store is missing
    state = tmp_path / "state"
    ctx = LocalContext(
        "inference", state / "backends" / "inference", Supervisor(state / "processes"), cache_dir()
    )
    try:
        first = local.start(ctx)
        names = [r.name for r in first.processes]
        assert names == [ctx.process_name("mlserver"), ctx.process_name("gateway")]
        ports = [p for r in first.processes for p in r.ports.values()]
        assert len(ports) == 4 and not {8080, 8081, 8082, 8090} & set(ports)  # http, grpc, metrics; gateway
        settings = json.loads((ctx.directory / "repository" / "settings.json").read_text())
        assert {settings["http_port"], settings["grpc_port"], settings["metrics_port"]} <= set(ports)

        again = local.start(ctx)  # a second `cityhub operator start` changes nothing
        assert again.operator_env == first.operator_env
        assert [r.pid for r in again.processes] == [r.pid for r in first.processes]

        env = {**first.operator_env, "CITYHUB_INFERENCE_GPU_QUOTA": "*=0"}  # no cluster: quotas from a table
        assert Path(env["CITYHUB_INFERENCE_SECRET_FILE"]).stat().st_mode & 0o077 == 0
        req = request({"model": "traffic-flow"}, {"requestsPerMinute": 100}, name="local")
        result = with_driver(env, lambda d: d.ensure(req))
        assert infer(result.endpoints["inferUrl"], result.credentials["apiKey"]) == 200
        assert infer(result.endpoints["inferUrl"], None) == 401
        assert with_driver(env, lambda d: d.observe(req)).in_sync

        ctx.supervisor.stop_all()  # `cityhub operator stop`, then start: the same ports, the same routes
        assert not any(is_running(r) for r in first.processes)
        back = local.start(ctx)
        assert back.operator_env == first.operator_env
        assert infer(result.endpoints["inferUrl"], result.credentials["apiKey"]) == 200
        with_driver(env, lambda d: d.delete(req))
        assert infer(result.endpoints["inferUrl"], result.credentials["apiKey"]) == 404
    finally:
        ctx.supervisor.stop_all()
