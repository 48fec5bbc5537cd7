"""Ready means usable: in kubernetes mode the driver's ensure() waits until the gateway serves the new route
(seen in pods: Ready 15 s after creation, then a minute of 404s while the route travelled through the
gateway's ConfigMap volume). A fake gateway on a loopback port answers 404 "no inference endpoint" first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from cityhub_operator.driver import Request, TemporaryBackendError

from component_types.inference import naming
from component_types.inference.driver import InferenceDriver, InferenceSettings, endpoints

SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DEPT = "dept-yingji"


def kubernetes_driver(store: Path, gateway: str) -> InferenceDriver:
    return InferenceDriver(
        InferenceSettings.from_env(
            {
                "CITYHUB_INFERENCE_MODE": "kubernetes",
                "CITYHUB_INFERENCE_SECRET": SECRET,
                "CITYHUB_INFERENCE_MODELS_DIR": str(store),
                "CITYHUB_INFERENCE_GATEWAY_URL": gateway,
            }
        )
    )


async def gateway_knowing_the_route_after(unknown: int) -> tuple[web.AppRunner, str, list[str]]:
    """A gateway answering 404 (unknown endpoint) to the first `unknown` calls, then 200; its call log."""
    calls: list[str] = []

    async def infer(req: web.Request) -> web.Response:
        calls.append(req.headers.get("Authorization", ""))
        if len(calls) <= unknown:
            endpoint = req.match_info["endpoint"]
            return web.json_response({"error": f"{naming.UNKNOWN_ENDPOINT} {endpoint!r}"}, status=404)
        return web.json_response({"outputs": [{"name": "predict", "data": [1.0]}]})

    app = web.Application()
    app.router.add_post("/v2/models/{endpoint}/infer", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", calls


def request() -> Request:
    spec = {"model": "traffic-flow"}
    return Request(DEPT, "flow", "uid-1", DEPT, spec, {}, plan="cpu-small", offering="inference")


def test_ready_waits_until_the_gateway_serves_the_route(inference_model_store: Path) -> None:
    async def run() -> list[str]:
        runner, url, calls = await gateway_knowing_the_route_after(2)
        driver = kubernetes_driver(inference_model_store, url)
        try:
            plan = driver.plan(request())
            await driver.confirm_route(plan, driver.key(request()))
        finally:
            await driver.close()
            await runner.cleanup()
        return calls

    calls = asyncio.run(run())
    assert len(calls) == 3, "asked until the gateway knew the endpoint"
    assert all(c.startswith("Bearer ") and len(c) > 20 for c in calls), "with the request's own key"


def test_a_route_the_gateway_never_loads_is_retried_with_the_reason(
    inference_model_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "ROUTE_WAIT", 1.5)

    async def run() -> None:
        runner, url, _ = await gateway_knowing_the_route_after(1000)
        driver = kubernetes_driver(inference_model_store, url)
        try:
            await driver.confirm_route(driver.plan(request()), driver.key(request()))
        finally:
            await driver.close()
            await runner.cleanup()

    with pytest.raises(TemporaryBackendError, match=r"does not serve dept-yingji\.flow yet.*ConfigMap"):
        asyncio.run(run())


def test_an_operator_outside_the_cluster_does_not_wait(inference_model_store: Path) -> None:
    """Development: the gateway's cluster address does not resolve here; its probes report it instead."""

    async def run() -> None:
        driver = kubernetes_driver(inference_model_store, "http://inference.cityhub-system.svc.cluster.local:8090")
        try:
            await driver.confirm_route(driver.plan(request()), driver.key(request()))
        finally:
            await driver.close()

    asyncio.run(run())
