"""The inference backend's Pulumi component under mocks: gateway, routes, model store, operator env."""

from __future__ import annotations

from components.backends.inference import (
    GATEWAY_NAME,
    MODELS_PVC,
    ROUTES_NAME,
    SECRET_NAME,
    InferenceBackend,
    InferenceBackendArgs,
)

from tests.unit.test_components import find, run

ARGS = InferenceBackendArgs(
    namespace="cityhub-inference", master_secret="s" * 48, gateway_image="cityhub/operator:dev"
)


def test_gateway_mounts_the_routes_the_operator_writes() -> None:
    created = run(lambda: InferenceBackend("inference", ARGS))
    gateway = find(created, "Deployment", GATEWAY_NAME, "cityhub-inference")
    pod = gateway.inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][-1] == "component_types.inference.driver.gateway"
    assert pod["volumes"][0]["configMap"]["name"] == ROUTES_NAME
    find(created, "ConfigMap", ROUTES_NAME, "cityhub-inference")
    find(created, "PersistentVolumeClaim", MODELS_PVC, "cityhub-inference")
    find(created, "Service", GATEWAY_NAME, "cityhub-inference")
    find(created, "Secret", SECRET_NAME, "cityhub-inference")


def test_operator_env_selects_cluster_mode() -> None:
    seen: dict[str, str] = {}

    def program() -> None:
        InferenceBackend("inference", ARGS).operator_env.apply(seen.update)

    run(program)
    assert seen["CITYHUB_INFERENCE_MODE"] == "cluster"
    assert seen["CITYHUB_INFERENCE_GATEWAY_URL"] == "http://inference-gateway.cityhub-inference.svc:8090"
    assert seen["CITYHUB_INFERENCE_SECRET_FILE"] == "/var/run/cityhub/backends/inference-secret"
