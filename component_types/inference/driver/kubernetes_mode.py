"""Kubernetes mode: one model server per endpoint, on the node pool its plan names.

    KServe      when the InferenceService CRD exists: an InferenceService (V2 protocol, sklearn/MLServer)
    otherwise   a Deployment and a Service running MLServer with the endpoint's model
    both        in CITYHUB_INFERENCE_NAMESPACE (the GPU pool's), named naming.object_name(namespace, name),
                labelled and annotated with their owner (manifests.py), with the GPU pool's node selector and
                tolerations and nvidia.com/gpu limits (GPU plans) or the CPU pool's node selector
    ownership   an existing object is patched (with its resourceVersion) or deleted (with its uid as a
                precondition) only when its annotation names the request; else NameConflict / left alone
    usage       the department's servers as they exist (labels.DEPARTMENT): replicas x container requests
    routes      keys of the ConfigMap CITYHUB_INFERENCE_ROUTES_CONFIGMAP (in
                CITYHUB_INFERENCE_ROUTES_NAMESPACE, the gateway's), which the gateway mounts

The kubernetes client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from decimal import Decimal
from typing import Any

from cityhub_operator.driver import Request, TemporaryBackendError
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from cityhub_api import labels
from component_types.inference import naming
from component_types.inference.driver import manifests
from component_types.inference.driver.manifests import KSERVE, PORT, owner_of
from component_types.inference.driver.plan import Plan, Served, name_conflict
from component_types.inference.driver.quota import (
    CPU_KEYS,
    GPU_KEYS,
    MEMORY_KEYS,
    Allowance,
    DepartmentQuota,
    Resources,
)
from component_types.inference.driver.settings import InferenceSettings
from component_types.inference.routes import Route

GPU_SCHEDULING = {
    "nodeSelector": {labels.POOL: labels.GPU_POOL},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
"""What components/gpu_pool.py publishes by default; its ConfigMap gpu-scheduling, when present, wins."""
GPU_SCHEDULING_CONFIGMAP = "gpu-scheduling"

_api: client.ApiClient | None = None


def api() -> client.ApiClient:
    """In a pod: the service account; elsewhere $KUBECONFIG."""
    global _api
    if _api is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            # The client reads $KUBECONFIG at import; a later setting (tests, tools) must count too.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        _api = client.ApiClient()
    return _api


def _quantity(value: Any, scale: int = 1) -> int:
    return int(parse_quantity(str(value)) * Decimal(scale))


def _allowance(quotas: list[Any], keys: tuple[str, ...], scale: int = 1) -> Allowance | None:
    """The tightest of the namespace's unscoped quotas on `keys` (hard and used), None when none sets one."""
    best: Allowance | None = None
    for q in quotas:
        spec, status = q.spec, q.status
        if spec is None or spec.scopes or spec.scope_selector:  # scoped quotas bind only some pods
            continue
        hard, used = spec.hard or {}, (status.used if status else None) or {}
        for key in keys:
            if key in hard:
                got = Allowance(_quantity(hard[key], scale), _quantity(used.get(key, "0"), scale))
                if best is None or got.hard - got.used < best.hard - best.used:
                    best = got
    return best


def department_quota(department: str) -> DepartmentQuota:
    """The department namespace's quotas (the stack's ResourceQuota `compute`) for GPUs, CPU and memory."""
    quotas = client.CoreV1Api(api()).list_namespaced_resource_quota(department).items
    return DepartmentQuota(
        gpu=_allowance(quotas, GPU_KEYS),
        cpu_millis=_allowance(quotas, CPU_KEYS, 1000),
        memory=_allowance(quotas, MEMORY_KEYS),
    )


def requested(containers: list[dict[str, Any]]) -> Resources:
    total = Resources()
    for c in containers:
        req = (c.get("resources") or {}).get("requests") or {}
        total += Resources(
            _quantity(req.get("nvidia.com/gpu", 0)),
            _quantity(req.get("cpu", 0), 1000),
            _quantity(req.get("memory", 0)),
        )
    return total


class KubernetesMode:
    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings.kubernetes

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                raise
            raise TemporaryBackendError(f"Kubernetes API: {e.status} {e.reason}") from e
        except Exception as e:  # connection errors of urllib3 and friends
            raise TemporaryBackendError(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e

    # -- scheduling --------------------------------------------------------------------------------

    async def scheduling(self, pool: str) -> dict[str, Any]:
        if pool != labels.GPU_POOL:
            return dict(self.settings.cpu_scheduling)
        core = client.CoreV1Api(api())
        try:
            cm = await self._run(
                core.read_namespaced_config_map, GPU_SCHEDULING_CONFIGMAP, self.settings.namespace
            )
        except ApiException:
            return GPU_SCHEDULING
        try:
            return dict(json.loads((cm.data or {}).get("scheduling.json", "")))
        except ValueError:
            return GPU_SCHEDULING

    async def has_kserve(self) -> bool:
        ext = client.ApiextensionsV1Api(api())
        try:
            await self._run(ext.read_custom_resource_definition, f"{KSERVE[2]}.{KSERVE[0]}")
        except ApiException:
            return False
        return True

    # -- objects -----------------------------------------------------------------------------------

    async def _read(self, kind: str, name: str) -> Any:
        """The object, or None when it does not exist."""
        ns = self.settings.namespace
        reads = {
            "Deployment": lambda: client.AppsV1Api(api()).read_namespaced_deployment(name, ns),
            "Service": lambda: client.CoreV1Api(api()).read_namespaced_service(name, ns),
            "InferenceService": lambda: client.CustomObjectsApi(api()).get_namespaced_custom_object(
                KSERVE[0], KSERVE[1], ns, KSERVE[2], name
            ),
        }
        try:
            return await self._run(reads[kind])
        except ApiException:
            return None

    @staticmethod
    def _meta(obj: Any) -> Any:
        return obj["metadata"] if isinstance(obj, dict) else obj.metadata

    async def _apply(self, body: dict[str, Any]) -> None:
        """Create, or patch when it exists and is the request's (NameConflict when it is another's)."""
        kind, meta = body["kind"], body["metadata"]
        name, ns, owner = meta["name"], meta["namespace"], meta["annotations"][labels.REQUEST]
        apps, core, co = client.AppsV1Api(api()), client.CoreV1Api(api()), client.CustomObjectsApi(api())
        existing = await self._read(kind, name)
        if existing is None:
            create = {
                "Deployment": lambda: apps.create_namespaced_deployment(ns, body),
                "Service": lambda: core.create_namespaced_service(ns, body),
                "InferenceService": lambda: co.create_namespaced_custom_object(
                    *KSERVE[:2], ns, KSERVE[2], body
                ),
            }[kind]
            await self._run(create)
            return
        found = self._meta(existing)
        if owner_of(found) != owner:
            raise name_conflict(f"{kind} {ns}/{name}", owner_of(found), owner)
        # The resourceVersion read with the owner: if the object changed since, the patch fails (409) and the
        # next reconcile reads the owner again.
        version = found["resourceVersion"] if isinstance(found, dict) else found.resource_version
        patch_body = {**body, "metadata": {**meta, "resourceVersion": version}}
        patch = {
            "Deployment": lambda: apps.patch_namespaced_deployment(name, ns, patch_body),
            "Service": lambda: core.patch_namespaced_service(name, ns, patch_body),
            "InferenceService": lambda: co.patch_namespaced_custom_object(
                *KSERVE[:2], ns, KSERVE[2], name, patch_body
            ),
        }[kind]
        await self._run(patch)

    async def serve(self, request: Request, plan: Plan) -> Served:
        """The endpoint's server; TemporaryBackendError until its pods are ready."""
        scheduling = await self.scheduling(plan.pool)
        name, ns = plan.object_name, self.settings.namespace
        if await self.has_kserve():
            await self._apply(manifests.inference_service(self.settings, request, plan, scheduling))
            got = await self._read("InferenceService", name) or {}
            status = got.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            if not ready:
                raise TemporaryBackendError(f"InferenceService {ns}/{name} is not ready yet")
            url = (status.get("address") or {}).get(
                "url"
            ) or f"http://{name}-predictor.{ns}.svc.cluster.local"
            return Served(url, name, {"inferenceService": f"{ns}/{name}", "pool": plan.pool})
        await self._apply(manifests.deployment(self.settings, request, plan, scheduling))
        await self._apply(manifests.service(self.settings, request))
        dep = await self._read("Deployment", name)
        available = (dep.status.available_replicas or 0) if dep is not None and dep.status else 0
        if available < plan.replicas:
            raise TemporaryBackendError(
                f"Deployment {ns}/{name}: {available} of {plan.replicas} replicas available "
                f"on pool {plan.pool}"
            )
        return Served(
            f"http://{name}.{ns}.svc:{PORT}", name, {"deployment": f"{ns}/{name}", "pool": plan.pool}
        )

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        name, ns = plan.object_name, self.settings.namespace
        kind = "InferenceService" if await self.has_kserve() else "Deployment"
        got = await self._read(kind, name)
        if got is None:
            return [f"{kind} {ns}/{name} is missing"]
        if owner_of(self._meta(got)) != plan.owner:
            return [f"{kind} {ns}/{name} belongs to {owner_of(self._meta(got)) or 'an unknown owner'}"]
        if kind == "Deployment" and got.spec.replicas != plan.replicas:
            return [f"Deployment {ns}/{name} has {got.spec.replicas} replicas, not {plan.replicas}"]
        return []

    async def remove(self, request: Request) -> None:
        name, ns = naming.object_name(request.namespace, request.name), self.settings.namespace
        owner = naming.owner(request.namespace, request.name)
        apps, core, co = client.AppsV1Api(api()), client.CoreV1Api(api()), client.CustomObjectsApi(api())
        kinds = ["Deployment", "Service"] + (["InferenceService"] if await self.has_kserve() else [])
        for kind in kinds:
            got = await self._read(kind, name)
            if got is None or owner_of(self._meta(got)) != owner:
                continue  # gone, or another request's: never touched
            meta = self._meta(got)
            uid = meta["uid"] if isinstance(meta, dict) else meta.uid
            # The uid precondition: the object deleted is the one whose owner was just read.
            options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
            delete = {
                "Deployment": (apps.delete_namespaced_deployment, (name, ns)),
                "Service": (core.delete_namespaced_service, (name, ns)),
                "InferenceService": (co.delete_namespaced_custom_object, (*KSERVE[:2], ns, KSERVE[2], name)),
            }[kind]
            with contextlib.suppress(ApiException):  # already gone
                await self._run(delete[0], *delete[1], body=options)

    async def usage(self, department: str, exclude: str) -> Resources:
        ns = self.settings.namespace
        selector = ",".join(
            f"{k}={v}" for k, v in {**naming.MANAGED_LABELS, labels.DEPARTMENT: department}.items()
        )
        total = Resources()
        if await self.has_kserve():
            co = client.CustomObjectsApi(api())
            got = await self._run(
                co.list_namespaced_custom_object, *KSERVE[:2], ns, KSERVE[2], label_selector=selector
            )
            for isvc in got.get("items") or []:
                if owner_of(isvc["metadata"]) == exclude:
                    continue
                predictor = isvc.get("spec", {}).get("predictor", {})
                each = requested([predictor.get("model") or {}])
                total += each.times(int(predictor.get("minReplicas") or 1))
            return total
        apps = client.AppsV1Api(api())
        deployments = await self._run(apps.list_namespaced_deployment, ns, label_selector=selector)
        for dep in deployments.items:
            if owner_of(dep.metadata) == exclude:
                continue
            containers = api().sanitize_for_serialization(dep.spec.template.spec.containers)
            total += requested(containers).times(int(dep.spec.replicas or 0))
        return total

    # -- routes (the gateway's ConfigMap) ----------------------------------------------------------

    async def get_route(self, file: str) -> Route | None:
        core = client.CoreV1Api(api())
        try:
            cm = await self._run(
                core.read_namespaced_config_map,
                self.settings.routes_configmap,
                self.settings.routes_namespace,
            )
        except ApiException:
            return None
        text = (cm.data or {}).get(file)
        return Route.from_json(text) if text else None

    async def put_route(self, route: Route) -> None:
        core = client.CoreV1Api(api())
        name, ns = self.settings.routes_configmap, self.settings.routes_namespace
        data = {route.file: route.to_json()}
        try:
            await self._run(core.patch_namespaced_config_map, name, ns, {"data": data})
        except ApiException:
            # The stack creates it (backend.py); this is for clusters set up by hand and for the tests.
            meta = {"name": name, "namespace": ns, "labels": naming.MANAGED_LABELS}
            body = {"metadata": meta, "data": data}
            await self._run(core.create_namespaced_config_map, ns, body)

    async def delete_route(self, file: str) -> None:
        core = client.CoreV1Api(api())
        with contextlib.suppress(ApiException):
            await self._run(
                core.patch_namespaced_config_map,
                self.settings.routes_configmap,
                self.settings.routes_namespace,
                {"data": {file: None}},
            )
