"""The inference driver: one department endpoint per InferenceEndpoint, served by the mode's model servers
behind the gateway's route.

How an InferenceEndpoint `<name>` in department (namespace) `<d>` maps onto the backend — every name is
derived from the request, so retries and restarts find the same objects:

    endpoint    public model name `<d>.<name>`, called at <gateway>/v2/models/<d>.<name>/infer
    objects     naming.object_name(<d>, <name>) = ie-<readable>-<sha256 of d/name>: the model (embedded), the
                Deployment, Service or InferenceService (kubernetes), the route file; each records its owner
                <d>/<name> and is changed or deleted only by that request (else NameConflict)
    API key     HMAC(secret, <d>/<name>/<uid>) → the Secret's apiKey; the gateway holds only its SHA-256
    route       <object name>.json (routes.py): key hash, requestsPerMinute, which server and model serve it
    embedded    a model of the shared MLServer (embedded.py)
    kubernetes  a KServe InferenceService (when the CRD exists), else a Deployment and Service on the CPU
                or GPU inference pool, in CITYHUB_INFERENCE_NAMESPACE (kubernetes_mode.py)
    deletion    the route is removed first (the key stops working at once), then the model server

Checks (PermanentBackendError naming the field): spec.model in the model store's catalog, spec.modelVersion,
spec.modelUri inside the store and of a format the model's runtime loads (models.py), and the department's
quota summed over all its endpoints (quota.py: GPUs, CPU, memory). One department's checks and changes run
one at a time, so two endpoints created at once cannot both take the last of a quota.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping

import aiohttp
from cityhub_operator.driver import (
    BackendError,
    Observation,
    Request,
    Result,
    TemporaryBackendError,
)

from cityhub_api import labels
from component_types.inference import naming
from component_types.inference.driver import models, quota
from component_types.inference.driver.embedded import UNREACHABLE, EmbeddedMode
from component_types.inference.driver.plan import Mode, Plan, name_conflict
from component_types.inference.driver.quota import Allowance, DepartmentQuota, Resources
from component_types.inference.driver.settings import EMBEDDED, KUBERNETES, InferenceSettings
from component_types.inference.routes import Route, api_key, endpoint_name, key_hash, route_file

ROUTE_WAIT = 90.0
"""Seconds ensure() waits in one go for the gateway to serve a new route before it retries (confirm_route).
The gateway watches its routes' ConfigMap (about a second); where its account may not, it falls back to the
mounted ConfigMap, which the kubelet rewrites at its next pod sync (1 min by default): 90 s covers that in
one call (with 20 s, the retry's backoff made Ready take 107 s in pods). An async sleep: other requests are
handled meanwhile."""


class InferenceDriver:
    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._mode: Mode | None = None
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        return self._session

    @property
    def mode(self) -> Mode:
        if self._mode is None:
            if self.settings.mode == KUBERNETES:
                # Imported on first use: an embedded operator does not load the kubernetes client for it.
                from component_types.inference.driver.kubernetes_mode import KubernetesMode

                self._mode = KubernetesMode(self.settings)
            else:
                self._mode = EmbeddedMode(self.settings, self.session)
        return self._mode

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- checks ------------------------------------------------------------------------------------

    def plan(self, request: Request) -> Plan:
        model = models.resolve(
            self.settings.models_dir, request.spec, check_files=self.settings.mode == EMBEDDED
        )
        gpu = int(request.limits.get("gpu", 0))
        memory = int(request.limits.get("memory", 0))
        return Plan(
            endpoint=endpoint_name(request.namespace, request.name),
            object_name=naming.object_name(request.namespace, request.name),
            owner=naming.owner(request.namespace, request.name),
            model=model,
            pool=labels.GPU_POOL if gpu else labels.CPU_POOL,
            gpu=gpu,
            memory=memory,
            requests_per_minute=int(request.limits.get("requestsPerMinute", 60)),
            replicas=int(request.spec.get("replicas") or 1),
            each=Resources(gpu, quota.CPU_REQUEST_MILLIS, memory),
        )

    async def department_quota(self, department: str) -> DepartmentQuota:
        table = self.settings.gpu_quota
        if table is not None:  # a fixed table (development without a cluster): GPUs only
            gpus = table.get(department, table.get("*", 0))
            return DepartmentQuota(Allowance(gpus), None, None)
        from component_types.inference.driver.kubernetes_mode import department_quota

        try:
            return await asyncio.to_thread(department_quota, department)
        except Exception as e:  # the kubernetes client raises many kinds; all mean "ask again later"
            raise TemporaryBackendError(f"cannot read the quota of {department}: {e}") from e

    async def check_quota(self, request: Request, plan: Plan) -> None:
        """The request's servers plus the department's other endpoints' must fit its quota (quota.py)."""
        wanted = plan.reserved
        if not (wanted.gpu or wanted.cpu_millis or wanted.memory):
            return
        others = await self.mode.usage(request.department, exclude=plan.owner)
        limits = await self.department_quota(request.department)
        quota.check(request, plan.replicas, plan.each, others, limits)

    def key(self, request: Request) -> str:
        if not self.settings.has_secret:
            raise TemporaryBackendError(
                "the inference driver has no CITYHUB_INFERENCE_SECRET(_FILE) (32+ characters) to derive API "
                "keys from: configure the operator"
            )
        return api_key(self.settings.secret, request.namespace, request.name, request.uid)

    def gateway_url(self) -> str:
        if not self.settings.gateway_url:
            raise TemporaryBackendError(
                "the inference driver has no CITYHUB_INFERENCE_GATEWAY_URL to write into Secrets: start the "
                "gateway with `cityhub operator start` or configure the operator"
            )
        return self.settings.gateway_url

    # -- the driver interface ------------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        key = self.key(request)
        url = self.gateway_url()
        plan = self.plan(request)
        file = route_file(request.namespace, request.name)
        async with self._locks[request.department]:
            route = await self.mode.get_route(file)
            if route is not None and route.endpoint != plan.endpoint:
                raise name_conflict(f"gateway route {file}", route.endpoint, plan.endpoint)
            await self.check_quota(request, plan)
            served = await self.mode.serve(request, plan)
        await self.mode.put_route(
            Route(
                endpoint=plan.endpoint,
                department=request.namespace,
                uid=request.uid,
                server=served.server,
                model=served.model,
                key_sha256=key_hash(key),
                requests_per_minute=plan.requests_per_minute,
            )
        )
        await self.confirm_route(plan, key)
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
            backend={**served.backend, "modelFile": plan.model.relative},
        )

    async def observe(self, request: Request) -> Observation:
        plan = self.plan(request)
        key = self.key(request)
        drift = await self.mode.drift(request, plan)
        route = await self.mode.get_route(route_file(request.namespace, request.name))
        if route is None:
            drift.append(f"gateway route {plan.endpoint} is missing")
        elif route.endpoint != plan.endpoint:
            drift.append(f"gateway route of {plan.endpoint} belongs to {route.endpoint}")
        elif route.key_sha256 != key_hash(key) or route.requests_per_minute != plan.requests_per_minute:
            drift.append(f"gateway route {plan.endpoint} differs (key or requestsPerMinute)")
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def delete(self, request: Request) -> None:
        endpoint = endpoint_name(request.namespace, request.name)
        file = route_file(request.namespace, request.name)
        async with self._locks[request.department]:
            route = await self.mode.get_route(file)
            if route is not None and route.endpoint == endpoint:
                await self.mode.delete_route(file)  # first: the key stops working even if the server is down
            await self.mode.remove(request)

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A real infer call through the gateway with the department's key (zeros of the model's input)."""
        plan = self.plan(request)
        # The URL from the driver's own settings, never from the Secret: whoever can write the department's
        # Secret must not steer the operator's connections (SSRF). The Secret gives the key only.
        url = f"{self.gateway_url()}/v2/models/{plan.endpoint}/infer"
        try:
            status, text = await self._infer(plan, secret.get("apiKey", ""))
        except UNREACHABLE as e:
            raise TemporaryBackendError(f"inference gateway {url} unreachable: {type(e).__name__}") from e
        if status >= 500 or status == 429:
            raise TemporaryBackendError(f"infer call to {plan.endpoint}: HTTP {status} {text[:200]}")
        if status != 200:
            raise BackendError(f"infer call to {plan.endpoint}: HTTP {status} {text[:200]}")

    async def _infer(self, plan: Plan, key: str) -> tuple[int, str]:
        """POST zeros of the model's inputs to the endpoint through the gateway: (HTTP status, body)."""
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
        url = f"{self.gateway_url()}/v2/models/{plan.endpoint}/infer"
        headers = {"Authorization": f"Bearer {key}"}
        async with (await self.session()).post(url, json={"inputs": inputs}, headers=headers) as resp:
            return resp.status, await resp.text()

    async def confirm_route(self, plan: Plan, key: str) -> None:
        """Ready only once the gateway serves the endpoint. In kubernetes mode the route reaches the gateway's
        pods through the ConfigMap they watch (about a second), or through their ConfigMap volume at the
        kubelet's next sync of the pod when they cannot watch it (up to about a minute: seen in pods, before
        the watch, Ready came 15 s after creation while the department's calls got 404 for a minute more).
        An operator that cannot reach the gateway at all (run outside the cluster, in development) does not
        wait: its probes say whether the endpoint works."""
        if self.settings.mode != KUBERNETES:
            return  # embedded: the gateway reads the route files the driver just wrote
        deadline = asyncio.get_running_loop().time() + ROUTE_WAIT
        while True:
            try:
                status, text = await self._infer(plan, key)
            except UNREACHABLE:
                return
            if status != 404 or naming.UNKNOWN_ENDPOINT not in text:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TemporaryBackendError(
                    f"the inference gateway does not serve {plan.endpoint} yet (its pods read the routes "
                    "ConfigMap through the API server, or when the kubelet next syncs them); retrying"
                )
            await asyncio.sleep(1.0)
