"""AI inference (推理服务): shared model serving with per-department endpoints, KServe V2 protocol.

How an InferenceEndpoint `<name>` in department (namespace) `<d>` maps onto the backend — every name is
derived from the request, so retries and restarts find the same objects:

    endpoint   public model name `<d>.<name>`, called at <gateway>/v2/models/<d>.<name>/infer
    API key    HMAC(secret, <d>/<name>/<uid>) → the Secret's apiKey; the gateway holds only its SHA-256
    route      <d>.<name>.json (routes.py): key hash, requestsPerMinute, which server and model serve it
    embedded   model-settings.json `<repository>/<d>.<name>/`, loaded into the shared MLServer through
               POST /v2/repository/models/<d>.<name>/load (unloaded and removed on delete)
    cluster    a KServe InferenceService (when the CRD exists), else a Deployment and Service on the CPU
               or GPU inference pool, in CITYHUB_INFERENCE_NAMESPACE (cluster.py)
    deletion   the route is removed first (the key stops working at once), then the model is unloaded

Checks (PermanentBackendError naming the field): spec.model in the model store's catalog, spec.modelVersion,
spec.modelUri inside the store and of a format the model's runtime loads (models.py), and spec.replicas x
spec.limits.gpu within the department's GPU quota. Settings: settings.py (CITYHUB_INFERENCE_*).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from cityhub_operator.driver import (
    BackendError,
    Observation,
    PermanentBackendError,
    Request,
    Result,
    TemporaryBackendError,
)
from component_types.inference.driver import models
from component_types.inference.driver.routes import Route, RouteFiles, api_key, endpoint_name, key_hash
from component_types.inference.driver.settings import InferenceSettings, parse_gpu_quota

log = logging.getLogger("component_types.inference.driver")
GPU_POOL, CPU_POOL = "gpu-inference", "cpu"
_UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True)
class Plan:
    """What one request asks of the backend, resolved and checked."""

    endpoint: str
    model: models.ModelFile
    pool: str
    gpu: int
    """GPUs per replica."""
    memory: int
    """Bytes per replica (0: the server's default)."""
    requests_per_minute: int
    replicas: int


def _gpu_hint(request: Request) -> str:
    return (
        f"lower spec.replicas or spec.limits.gpu, choose a CPU plan (cpu-small, cpu-standard), or ask for a "
        f"larger GPU quota for department {request.department}"
    )


class InferenceDriver:
    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._cluster: Any = None
        self.routes = RouteFiles(settings.routes_dir)

    # -- shared ------------------------------------------------------------------------------------

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        return self._session

    def cluster(self) -> Any:
        if self._cluster is None:
            from component_types.inference.driver.cluster import ClusterBackend

            self._cluster = ClusterBackend(self.settings)
        return self._cluster

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def plan(self, request: Request) -> Plan:
        model = models.resolve(
            self.settings.models_dir, request.spec, check_files=self.settings.mode == "embedded"
        )
        gpu = int(request.limits.get("gpu", 0))
        return Plan(
            endpoint=endpoint_name(request.department, request.name),
            model=model,
            pool=GPU_POOL if gpu else CPU_POOL,
            gpu=gpu,
            memory=int(request.limits.get("memory", 0)),
            requests_per_minute=int(request.limits.get("requestsPerMinute", 60)),
            replicas=int(request.spec.get("replicas") or 1),
        )

    async def gpu_quota(self, department: str) -> int:
        table = parse_gpu_quota(self.settings.gpu_quota)
        if table is not None:
            return table.get(department, table.get("*", 0))
        from component_types.inference.driver.cluster import department_gpu_quota

        try:
            return await asyncio.to_thread(department_gpu_quota, department)
        except Exception as e:  # the kubernetes client raises many kinds; all mean "ask again later"
            raise TemporaryBackendError(f"cannot read the GPU quota of {department}: {e}") from e

    async def _check_quota(self, request: Request, plan: Plan) -> None:
        wanted = plan.gpu * plan.replicas
        if not wanted:
            return
        quota = await self.gpu_quota(request.department)
        if wanted > quota:
            raise PermanentBackendError(
                "OverGpuQuota",
                f"spec.replicas x spec.limits.gpu = {plan.replicas} x {plan.gpu} = {wanted} GPUs exceeds "
                f"department {request.department}'s GPU quota of {quota} (requests.nvidia.com/gpu): "
                + _gpu_hint(request),
            )

    def _key(self, request: Request) -> str:
        if not self.settings.has_secret:
            raise TemporaryBackendError(
                "the inference driver has no CITYHUB_INFERENCE_SECRET(_FILE) (32+ characters) to derive API "
                "keys from: configure the operator"
            )
        return api_key(self.settings.secret, request.namespace, request.name, request.uid)

    def _route(self, request: Request, plan: Plan, key: str, server: str, model: str) -> Route:
        return Route(
            endpoint=plan.endpoint,
            department=request.department,
            uid=request.uid,
            server=server,
            model=model,
            key_sha256=key_hash(key),
            requests_per_minute=plan.requests_per_minute,
        )

    # -- the driver interface ------------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        key = self._key(request)
        plan = self.plan(request)
        await self._check_quota(request, plan)
        if self.settings.mode == "cluster":
            server, model, backend = await self.cluster().ensure(request, plan)
            await self.cluster().put_route(self._route(request, plan, key, server, model))
        else:
            await self._load(plan)
            server, model = self.settings.server_url, plan.endpoint
            backend = {"server": "mlserver", "model": plan.endpoint}
            self.routes.put(self._route(request, plan, key, server, model))
        url = self.settings.gateway_url
        return Result(
            endpoints={
                "url": url,
                "model": plan.endpoint,
                "inferUrl": f"{url}/v2/models/{plan.endpoint}/infer",
                "protocol": "kserve-v2",
                "pool": plan.pool,
                "requestsPerMinute": str(plan.requests_per_minute),
            },
            credentials={"apiKey": key},
            backend={**backend, "modelFile": plan.model.relative},
        )

    async def observe(self, request: Request) -> Observation:
        plan = self.plan(request)
        key = self._key(request)
        drift: list[str] = []
        if self.settings.mode == "cluster":
            drift += await self.cluster().drift(request, plan)
            route = await self.cluster().get_route(plan.endpoint)
        else:
            drift += await self._drift(plan)
            route = self.routes.get(plan.endpoint)
        if route is None:
            drift.append(f"gateway route {plan.endpoint} is missing")
        elif route.key_sha256 != key_hash(key) or route.requests_per_minute != plan.requests_per_minute:
            drift.append(f"gateway route {plan.endpoint} differs (key or requestsPerMinute)")
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def delete(self, request: Request) -> None:
        endpoint = endpoint_name(request.department, request.name)
        if self.settings.mode == "cluster":
            await self.cluster().delete_route(endpoint)
            await self.cluster().delete(request)
            return
        self.routes.remove(endpoint)  # first: the key stops working even if the server is down
        await self._unload(endpoint)
        shutil.rmtree(self.settings.repository_dir / endpoint, ignore_errors=True)

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A real infer call through the gateway with the department's key (zeros of the model's input)."""
        plan = self.plan(request)
        meta = models.catalog(self.settings.models_dir).get(plan.model.model, {})
        inputs = []
        for spec in meta.get("inputs") or [{"name": "input-0", "datatype": "FP32", "shape": [-1, 1]}]:
            shape = [1 if d < 0 else int(d) for d in spec["shape"]]
            size = 1
            for d in shape:
                size *= d
            inputs.append(
                {"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": [0] * size}
            )
        url = secret.get("inferUrl") or f"{self.settings.gateway_url}/v2/models/{plan.endpoint}/infer"
        headers = {"Authorization": f"Bearer {secret.get('apiKey', '')}"}
        try:
            async with (await self.session()).post(url, json={"inputs": inputs}, headers=headers) as resp:
                text = await resp.text()
        except _UNREACHABLE as e:
            raise TemporaryBackendError(f"inference gateway {url} unreachable: {type(e).__name__}") from e
        if resp.status >= 500 or resp.status == 429:
            raise TemporaryBackendError(f"infer call to {plan.endpoint}: HTTP {resp.status} {text[:200]}")
        if resp.status != 200:
            raise BackendError(f"infer call to {plan.endpoint}: HTTP {resp.status} {text[:200]}")

    # -- embedded: the shared MLServer ---------------------------------------------------------------

    def _model_settings(self, plan: Plan) -> dict[str, Any]:
        return {
            "name": plan.endpoint,
            "implementation": plan.model.runtime,
            "parameters": {
                "uri": str((self.settings.models_dir / plan.model.relative).resolve()),
                "version": plan.model.version,
            },
        }

    async def _call(self, method: str, path: str) -> tuple[int, str]:
        url = f"{self.settings.server_url}{path}"
        try:
            async with (await self.session()).request(method, url) as resp:
                return resp.status, await resp.text()
        except _UNREACHABLE as e:
            raise TemporaryBackendError(
                f"the inference server at {self.settings.server_url} is unreachable ({type(e).__name__})"
            ) from e

    async def _load(self, plan: Plan) -> None:
        folder = self.settings.repository_dir / plan.endpoint
        wanted = json.dumps(self._model_settings(plan), indent=2, sort_keys=True)
        path = folder / "model-settings.json"
        changed = not path.exists() or path.read_text(encoding="utf-8") != wanted
        if changed:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / ".model-settings.json.tmp"
            tmp.write_text(wanted, encoding="utf-8")
            tmp.replace(path)
        if not changed:
            status, _ = await self._call("GET", f"/v2/models/{plan.endpoint}/ready")
            if status == 200:
                return
        status, text = await self._call("POST", f"/v2/repository/models/{plan.endpoint}/load")
        if status == 200:
            return
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

    async def _drift(self, plan: Plan) -> list[str]:
        path = self.settings.repository_dir / plan.endpoint / "model-settings.json"
        wanted = json.dumps(self._model_settings(plan), indent=2, sort_keys=True)
        out = []
        if not path.exists() or path.read_text(encoding="utf-8") != wanted:
            out.append(f"model settings of {plan.endpoint} are missing or differ")
        status, _ = await self._call("GET", f"/v2/models/{plan.endpoint}/ready")
        if status != 200:
            out.append(f"model {plan.endpoint} is not loaded on the server")
        return out

    async def _unload(self, endpoint: str) -> None:
        status, text = await self._call("POST", f"/v2/repository/models/{endpoint}/unload")
        if status not in (200, 404) and "not found" not in text.lower():
            raise TemporaryBackendError(f"unloading model {endpoint}: HTTP {status} {text[:300]}")


def create_driver(env: Mapping[str, str]) -> InferenceDriver:
    """The driver factory the operator core calls (by name, from the inference schema's x-cityhub.driver)."""
    return InferenceDriver(InferenceSettings.from_env(env))
