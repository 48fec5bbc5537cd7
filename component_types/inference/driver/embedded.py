"""Embedded mode: every endpoint is a model of one shared MLServer (local.py starts it), and routes are files
the gateway re-reads when they change.

    serve     <repository>/<object name>/model-settings.json, then
              POST /v2/repository/models/<object name>/load (skipped when unchanged and ready)
    remove    POST /v2/repository/models/<object name>/unload, then the folder is removed
    routes    <routes_dir>/<object name>.json (routes.RouteFiles)
    owner     model-settings.json's parameters.extra.cityhub: the owning request (naming.owner) and uid, its
              department and what its servers reserve (quota.py); read before the folder is rewritten or
              removed, summed per department by `usage`

<object name> is naming.object_name(namespace, name). The MLServer loads its whole repository at start, so a
restarted server serves the endpoints it served before.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError

from component_types.inference import naming
from component_types.inference.driver.plan import Plan, Served, name_conflict
from component_types.inference.driver.quota import Resources
from component_types.inference.driver.settings import InferenceSettings
from component_types.inference.routes import Route, RouteFiles, route_file

UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
MODEL_SETTINGS = "model-settings.json"
EXTRA = "cityhub"
"""The key of model-settings.json's parameters.extra (MLServer keeps it for the runtime) holding the owner."""


def recorded(folder: Path) -> dict[str, Any] | None:
    """What the driver recorded in a model folder: None when there is no model-settings.json (free),
    {} when it holds none (not the driver's: an unknown owner)."""
    try:
        doc = json.loads((folder / MODEL_SETTINGS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    extra = ((doc.get("parameters") or {}).get("extra") or {}).get(EXTRA) if isinstance(doc, dict) else None
    return extra if isinstance(extra, dict) else {}


class EmbeddedMode:
    def __init__(
        self, settings: InferenceSettings, session: Callable[[], Awaitable[aiohttp.ClientSession]]
    ) -> None:
        self.settings = settings
        self.server_url = settings.embedded.server_url
        self.repository = settings.embedded.repository_dir
        self.routes = RouteFiles(settings.embedded.routes_dir)
        self._session = session

    def model_settings(self, request: Request, plan: Plan) -> str:
        """The endpoint's model-settings.json, byte-identical on every reconcile."""
        reserved = plan.reserved
        doc = {
            "name": plan.object_name,
            "implementation": plan.model.runtime,
            "parameters": {
                "uri": str((self.settings.models_dir / plan.model.relative).resolve()),
                "version": plan.model.version,
                "extra": {
                    EXTRA: {
                        "owner": plan.owner,
                        "uid": request.uid,
                        "department": request.department,
                        "reserved": {
                            "gpu": reserved.gpu,
                            "cpuMillis": reserved.cpu_millis,
                            "memory": reserved.memory,
                        },
                    }
                },
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
        folder = self.repository / plan.object_name
        mine = recorded(folder)
        if mine is not None and mine.get("owner") != plan.owner:
            raise name_conflict(
                f"model {plan.object_name} of the shared server", str(mine.get("owner", "")), plan.owner
            )
        wanted = self.model_settings(request, plan)
        path = folder / MODEL_SETTINGS
        changed = not path.exists() or path.read_text(encoding="utf-8") != wanted
        if changed:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{MODEL_SETTINGS}.tmp"
            tmp.write_text(wanted, encoding="utf-8")
            tmp.replace(path)  # atomic: a server (re)starting meanwhile never reads half a file
        model = plan.object_name
        served = Served(self.server_url, model, {"server": "mlserver", "model": model})
        if not changed:
            status, _ = await self._call("GET", f"/v2/models/{model}/ready")
            if status == 200:
                return served
        status, text = await self._call("POST", f"/v2/repository/models/{model}/load")
        if status == 200:
            return served
        if status == 404:
            raise TemporaryBackendError(
                f"the inference server does not see {folder}: CITYHUB_INFERENCE_REPOSITORY_DIR must be the "
                "server's model repository"
            )
        if 400 <= status < 500:
            raise PermanentBackendError("ModelLoadFailed", f"the server refused model {model}: {text[:300]}")
        raise TemporaryBackendError(f"loading model {model}: HTTP {status} {text[:300]}")

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        path = self.repository / plan.object_name / MODEL_SETTINGS
        out = []
        if not path.exists() or path.read_text(encoding="utf-8") != self.model_settings(request, plan):
            out.append(f"model settings of {plan.endpoint} are missing or differ")
        status, _ = await self._call("GET", f"/v2/models/{plan.object_name}/ready")
        if status != 200:
            out.append(f"model {plan.object_name} of {plan.endpoint} is not loaded on the server")
        route = self.routes.get(route_file(request.namespace, request.name))
        if route is not None and route.server != self.server_url:
            # The shared server came back on other ports: the route must follow it.
            out.append(f"gateway route {plan.endpoint} points at {route.server}, not {self.server_url}")
        return out

    async def remove(self, request: Request) -> None:
        model = naming.object_name(request.namespace, request.name)
        folder = self.repository / model
        mine = recorded(folder)
        if mine is not None and mine.get("owner") != naming.owner(request.namespace, request.name):
            return  # another request's model (or none of the driver's): never touched
        status, text = await self._call("POST", f"/v2/repository/models/{model}/unload")
        if status not in (200, 404) and "not found" not in text.lower():
            raise TemporaryBackendError(f"unloading model {model}: HTTP {status} {text[:300]}")
        shutil.rmtree(folder, ignore_errors=True)

    async def usage(self, department: str, exclude: str) -> Resources:
        self._require_server()  # an unconfigured driver says so before it asks for the department's quota
        total = Resources()
        for path in sorted(self.repository.glob(f"*/{MODEL_SETTINGS}")):
            mine = recorded(path.parent) or {}
            if mine.get("department") != department or mine.get("owner") == exclude:
                continue
            reserved = mine.get("reserved") or {}
            total += Resources(
                int(reserved.get("gpu", 0)), int(reserved.get("cpuMillis", 0)), int(reserved.get("memory", 0))
            )
        return total

    async def get_route(self, file: str) -> Route | None:
        return self.routes.get(file)

    async def put_route(self, route: Route) -> None:
        self.routes.put(route)

    async def delete_route(self, file: str) -> None:
        self.routes.remove(file)
