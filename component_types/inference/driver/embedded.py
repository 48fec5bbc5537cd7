"""Embedded mode: every endpoint is a model of one shared MLServer (local.py starts it), and routes are files
the gateway re-reads when they change.

    serve     <repository>/<department>.<name>/model-settings.json, then
              POST /v2/repository/models/<department>.<name>/load (skipped when unchanged and ready)
    remove    POST /v2/repository/models/<department>.<name>/unload, then the folder is removed
    routes    <routes_dir>/<department>.<name>.json (routes.RouteFiles)

The MLServer loads its whole repository at start, so a restarted server serves the endpoints it served before.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable

import aiohttp
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError

from component_types.inference.driver.plan import Plan, Served
from component_types.inference.driver.settings import InferenceSettings
from component_types.inference.routes import Route, RouteFiles

UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
MODEL_SETTINGS = "model-settings.json"


class EmbeddedMode:
    def __init__(
        self, settings: InferenceSettings, session: Callable[[], Awaitable[aiohttp.ClientSession]]
    ) -> None:
        self.settings = settings
        self.server_url = settings.embedded.server_url
        self.repository = settings.embedded.repository_dir
        self.routes = RouteFiles(settings.embedded.routes_dir)
        self._session = session

    def model_settings(self, plan: Plan) -> str:
        """The endpoint's model-settings.json, byte-identical on every reconcile."""
        doc = {
            "name": plan.endpoint,
            "implementation": plan.model.runtime,
            "parameters": {
                "uri": str((self.settings.models_dir / plan.model.relative).resolve()),
                "version": plan.model.version,
            },
        }
        return json.dumps(doc, indent=2, sort_keys=True)

    def _require_server(self) -> None:
        if not self.server_url:
            raise TemporaryBackendError(
                "the inference driver has no CITYHUB_INFERENCE_SERVER_URL (the shared MLServer): start it "
                "with `cityhub operator start` or configure the operator"
            )

    async def _call(self, method: str, path: str) -> tuple[int, str]:
        self._require_server()
        url = f"{self.server_url}{path}"
        try:
            async with (await self._session()).request(method, url) as resp:
                return resp.status, await resp.text()
        except UNREACHABLE as e:
            raise TemporaryBackendError(
                f"the inference server at {self.server_url} is unreachable ({type(e).__name__})"
            ) from e

    async def serve(self, request: Request, plan: Plan) -> Served:
        self._require_server()  # before writing: an unconfigured driver leaves no files behind
        folder = self.repository / plan.endpoint
        wanted = self.model_settings(plan)
        path = folder / MODEL_SETTINGS
        changed = not path.exists() or path.read_text(encoding="utf-8") != wanted
        if changed:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{MODEL_SETTINGS}.tmp"
            tmp.write_text(wanted, encoding="utf-8")
            tmp.replace(path)  # atomic: a server (re)starting meanwhile never reads half a file
        served = Served(self.server_url, plan.endpoint, {"server": "mlserver", "model": plan.endpoint})
        if not changed:
            status, _ = await self._call("GET", f"/v2/models/{plan.endpoint}/ready")
            if status == 200:
                return served
        status, text = await self._call("POST", f"/v2/repository/models/{plan.endpoint}/load")
        if status == 200:
            return served
        if status == 404:
            raise TemporaryBackendError(
                f"the inference server does not see {folder}: CITYHUB_INFERENCE_REPOSITORY_DIR must be the "
                "server's model repository"
            )
        if 400 <= status < 500:
            raise PermanentBackendError(
                "ModelLoadFailed", f"the server refused model {plan.endpoint}: {text[:300]}"
            )
        raise TemporaryBackendError(f"loading model {plan.endpoint}: HTTP {status} {text[:300]}")

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        path = self.repository / plan.endpoint / MODEL_SETTINGS
        out = []
        if not path.exists() or path.read_text(encoding="utf-8") != self.model_settings(plan):
            out.append(f"model settings of {plan.endpoint} are missing or differ")
        status, _ = await self._call("GET", f"/v2/models/{plan.endpoint}/ready")
        if status != 200:
            out.append(f"model {plan.endpoint} is not loaded on the server")
        route = self.routes.get(plan.endpoint)
        if route is not None and route.server != self.server_url:
            # The shared server came back on other ports: the route must follow it.
            out.append(f"gateway route {plan.endpoint} points at {route.server}, not {self.server_url}")
        return out

    async def remove(self, request: Request, endpoint: str) -> None:
        status, text = await self._call("POST", f"/v2/repository/models/{endpoint}/unload")
        if status not in (200, 404) and "not found" not in text.lower():
            raise TemporaryBackendError(f"unloading model {endpoint}: HTTP {status} {text[:300]}")
        shutil.rmtree(self.repository / endpoint, ignore_errors=True)

    async def get_route(self, endpoint: str) -> Route | None:
        return self.routes.get(endpoint)

    async def put_route(self, route: Route) -> None:
        self.routes.put(route)

    async def delete_route(self, endpoint: str) -> None:
        self.routes.remove(endpoint)
