"""The gateway's routes in a pod (gateway_routes.py): a new endpoint answers and a deleted endpoint's key
stops working about a second after the operator changes the routes' ConfigMap, not at the kubelet's next
rewrite of the mounted files (seen in pods: up to a minute of 404s after Ready). A fake API server on a
loopback port serves the ConfigMap and its watch; the mounted files are the fallback until it answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from component_types.inference.gateway import RouteTable
from component_types.inference.gateway_routes import ApiServer, ConfigMapRoutes
from component_types.inference.routes import Route, RouteFiles, route_file

NS, NAME, TOKEN = "cityhub-system", "inference-routes", "gateway-token"


def route(department: str, name: str) -> Route:
    return Route(f"{department}.{name}", department, "uid", "http://server:8080", name, "0" * 64, 60)


class FakeApi:
    """GET of the ConfigMap, and its watch streaming what `events` receives; what each call asked."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.data: dict[str, str] = {}
        self.version = 1
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.calls: list[tuple[str, dict[str, str], str]] = []

    def obj(self) -> dict[str, Any]:
        return {"metadata": {"name": NAME, "resourceVersion": str(self.version)}, "data": dict(self.data)}

    def change(self, data: dict[str, str]) -> None:
        self.data, self.version = data, self.version + 1
        self.events.put_nowait({"type": "MODIFIED", "object": self.obj()})

    async def get(self, req: web.Request) -> web.Response:
        self.calls.append(("get", dict(req.query), req.headers.get("Authorization", "")))
        if self.status != 200:
            return web.json_response({"kind": "Status", "code": self.status}, status=self.status)
        return web.json_response(self.obj())

    async def watch(self, req: web.Request) -> web.StreamResponse:
        self.calls.append(("watch", dict(req.query), req.headers.get("Authorization", "")))
        resp = web.StreamResponse()
        await resp.prepare(req)
        while True:
            event = await self.events.get()
            await resp.write(json.dumps(event).encode() + b"\n")

    async def serve(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get(f"/api/v1/namespaces/{NS}/configmaps/{NAME}", self.get)
        app.router.add_get(f"/api/v1/namespaces/{NS}/configmaps", self.watch)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"


def source(tmp_path: Path, url: str) -> tuple[ConfigMapRoutes, RouteFiles]:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    files = RouteFiles(tmp_path / "mounted")
    return ConfigMapRoutes(files, ApiServer(url, token, None), NS, NAME), files


async def until(check: Any, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within 3 s")


def test_a_route_added_or_removed_takes_effect_within_a_second(tmp_path: Path) -> None:
    flow, jam = route("dept-jiaotong", "flow"), route("dept-jiaotong", "jam")
    planted = route("dept-yingji", "alarm")

    async def scenario() -> None:
        api = FakeApi()
        api.data = {flow.file: flow.to_json()}
        runner, url = await api.serve()
        routes, _ = source(tmp_path, url)
        table = RouteTable(routes)
        await routes.start()
        try:
            await until(lambda: table.get(flow.endpoint) is not None)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            api.change({flow.file: flow.to_json(), jam.file: jam.to_json()})
            await until(lambda: table.get(jam.endpoint) is not None)
            added = loop.time() - t0
            # The operator deletes the endpoint: its key stops working as soon (revocation).
            api.change({jam.file: jam.to_json(), "planted.json": planted.to_json()})
            await until(lambda: table.get(flow.endpoint) is None)
            assert table.get(planted.endpoint) is None  # a key not named after its route is ignored
            assert added < 1.0
        finally:
            await routes.stop()
            await runner.cleanup()
        kinds = [c[0] for c in api.calls]
        assert kinds[:2] == ["get", "watch"]
        watch = api.calls[1][1]
        # Narrowed to the one ConfigMap, so RBAC's resourceNames authorizes it, from the version listed.
        assert watch["fieldSelector"] == f"metadata.name={NAME}" and watch["resourceVersion"] == "1"
        assert {c[2] for c in api.calls} == {f"Bearer {TOKEN}"}

    asyncio.run(scenario())


def test_until_the_api_server_answers_the_mounted_files_serve(tmp_path: Path) -> None:
    """An account that may not read the ConfigMap (403) leaves the gateway on its mounted files, as before."""
    flow = route("dept-chengguan", "flow")

    async def scenario() -> None:
        api = FakeApi(status=403)
        runner, url = await api.serve()
        routes, files = source(tmp_path, url)
        files.put(flow)
        await routes.start()
        try:
            await until(lambda: len(api.calls) >= 1)
            assert not routes.watching
            assert RouteTable(routes).get(flow.endpoint) == flow
        finally:
            await routes.stop()
            await runner.cleanup()

    asyncio.run(scenario())


def test_the_target_names_namespace_and_configmap() -> None:
    assert ConfigMapRoutes.parse_target(f"{NS}/{NAME}") == (NS, NAME)
    for bad in ("inference-routes", "/inference-routes", "cityhub-system/", "a/b/c"):
        try:
            ConfigMapRoutes.parse_target(bad)
        except ValueError as e:
            assert "NAMESPACE/NAME" in str(e)
        else:
            raise AssertionError(f"{bad!r} accepted")
    assert route_file("dept-a", "flow") == route("dept-a", "flow").file
