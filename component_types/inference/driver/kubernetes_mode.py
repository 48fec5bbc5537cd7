"""Kubernetes mode: one model server per endpoint, on the node pool its plan names.

    KServe      when the InferenceService CRD exists: an InferenceService (V2 protocol, sklearn/MLServer)
    otherwise   a Deployment and a Service running MLServer with the endpoint's model
    both        in CITYHUB_INFERENCE_NAMESPACE (the GPU pool's), named ie-<department>-<name> (shortened
                with a hash), labelled naming.MANAGED_LABELS (the backend's NetworkPolicy lets only the
                gateway reach them), with the GPU pool's node selector and tolerations and nvidia.com/gpu
                limits (GPU plans) or the CPU pool's node selector
    routes      keys of the ConfigMap CITYHUB_INFERENCE_ROUTES_CONFIGMAP (in
                CITYHUB_INFERENCE_ROUTES_NAMESPACE, the gateway's), which the gateway mounts

The kubernetes client is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from typing import Any

from cityhub_operator.driver import Request, TemporaryBackendError
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from cityhub_api import labels
from component_types.inference import naming
from component_types.inference.driver.plan import Plan, Served
from component_types.inference.driver.settings import InferenceSettings
from component_types.inference.routes import Route

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
GPU_SCHEDULING = {
    "nodeSelector": {labels.POOL: labels.GPU_POOL},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
"""What components/gpu_pool.py publishes by default; its ConfigMap gpu-scheduling, when present, wins."""
GPU_SCHEDULING_CONFIGMAP = "gpu-scheduling"
CPU_SCHEDULING: dict[str, Any] = {"nodeSelector": {labels.POOL: labels.CPU_POOL}, "tolerations": []}
PORT = 8080
"""The model server's port inside its pod (MLServer's default): each pod has its own network namespace."""

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


def department_gpu_quota(department: str) -> int:
    """The smallest `requests.nvidia.com/gpu` (or `nvidia.com/gpu`) hard limit of the namespace's quotas."""
    quotas = client.CoreV1Api(api()).list_namespaced_resource_quota(department).items
    limits = [
        int(float(q.spec.hard[k]))
        for q in quotas
        for k in ("requests.nvidia.com/gpu", "limits.nvidia.com/gpu")
        if q.spec and q.spec.hard and k in q.spec.hard
    ]
    return min(limits) if limits else 0


def object_name(department: str, name: str) -> str:
    full = f"ie-{department}-{name}"
    if len(full) <= 50:  # leaves room for KServe's -predictor suffixes
        return full
    return f"{full[:41]}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"


def _missing(e: ApiException) -> bool:
    return e.status == 404


class KubernetesMode:
    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings.kubernetes

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as e:
            if _missing(e):
                raise
            raise TemporaryBackendError(f"Kubernetes API: {e.status} {e.reason}") from e
        except Exception as e:  # connection errors of urllib3 and friends
            raise TemporaryBackendError(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from e

    # -- scheduling --------------------------------------------------------------------------------

    async def scheduling(self, pool: str) -> dict[str, Any]:
        if pool != labels.GPU_POOL:
            return CPU_SCHEDULING
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

    def _labels(self, request: Request) -> dict[str, str]:
        return {
            **naming.MANAGED_LABELS,
            labels.DEPARTMENT: request.department,
            labels.ENDPOINT: request.name,
            labels.INSTANCE: object_name(request.department, request.name),
        }

    def _resources(self, plan: Plan) -> dict[str, Any]:
        limits: dict[str, str] = {}
        requests: dict[str, str] = {"cpu": "250m"}
        if plan.memory:
            limits["memory"] = requests["memory"] = str(plan.memory)
        if plan.gpu:
            limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(plan.gpu)
        return {"requests": requests, "limits": limits}

    def deployment(self, request: Request, plan: Plan, scheduling: dict[str, Any]) -> dict[str, Any]:
        name = object_name(request.department, request.name)
        pod_labels = self._labels(request)
        selector = {labels.INSTANCE: name}
        uri = f"{naming.MODELS_MOUNT}/{plan.model.relative}"
        volumes, mounts = [], []
        if self.settings.models_pvc:
            volumes = [
                {
                    "name": "models",
                    "persistentVolumeClaim": {"claimName": self.settings.models_pvc, "readOnly": True},
                }
            ]
            mounts = [{"name": "models", "mountPath": naming.MODELS_MOUNT, "readOnly": True}]
        container = {
            "name": "mlserver",
            "image": self.settings.image,
            "ports": [{"name": "http", "containerPort": PORT}],
            "env": [
                {"name": "MLSERVER_HTTP_PORT", "value": str(PORT)},
                {"name": "MLSERVER_MODEL_NAME", "value": plan.endpoint},
                {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": plan.model.runtime},
                {"name": "MLSERVER_MODEL_URI", "value": uri},
                {"name": "MLSERVER_MODEL_VERSION", "value": plan.model.version},
            ],
            "resources": self._resources(plan),
            "readinessProbe": {"httpGet": {"path": f"/v2/models/{plan.endpoint}/ready", "port": PORT}},
            "volumeMounts": mounts,
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": pod_labels},
            "spec": {
                "replicas": plan.replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "containers": [container],
                        "volumes": volumes,
                        "nodeSelector": dict(scheduling.get("nodeSelector") or {}),
                        "tolerations": list(scheduling.get("tolerations") or []),
                        "automountServiceAccountToken": False,
                    },
                },
            },
        }

    def service(self, request: Request) -> dict[str, Any]:
        name = object_name(request.department, request.name)
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": self._labels(request)},
            "spec": {
                "selector": {labels.INSTANCE: name},
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
            },
        }

    def inference_service(self, request: Request, plan: Plan, scheduling: dict[str, Any]) -> dict[str, Any]:
        name = object_name(request.department, request.name)
        folder = plan.model.relative.rsplit("/", 1)[0]
        return {
            "apiVersion": f"{KSERVE[0]}/{KSERVE[1]}",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": self._labels(request)},
            "spec": {
                "predictor": {
                    "minReplicas": plan.replicas,
                    "maxReplicas": plan.replicas,
                    "nodeSelector": dict(scheduling.get("nodeSelector") or {}),
                    "tolerations": list(scheduling.get("tolerations") or []),
                    "model": {
                        "modelFormat": {"name": "sklearn"},
                        "protocolVersion": "v2",
                        "runtime": "kserve-mlserver",
                        "storageUri": f"{self.settings.storage_uri}/{folder}",
                        "resources": self._resources(plan),
                    },
                }
            },
        }

    async def _apply(self, read: Any, create: Any, patch: Any, body: dict[str, Any], *args: Any) -> Any:
        name, ns = body["metadata"]["name"], body["metadata"]["namespace"]
        try:
            await self._run(read, *args, name, ns) if args else await self._run(read, name, ns)
        except ApiException:
            return await (self._run(create, *args, ns, body) if args else self._run(create, ns, body))
        return await (self._run(patch, *args, ns, name, body) if args else self._run(patch, name, ns, body))

    async def serve(self, request: Request, plan: Plan) -> Served:
        """The endpoint's server; TemporaryBackendError until its pods are ready."""
        scheduling = await self.scheduling(plan.pool)
        name = object_name(request.department, request.name)
        ns = self.settings.namespace
        if await self.has_kserve():
            co = client.CustomObjectsApi(api())
            body = self.inference_service(request, plan, scheduling)
            await self._apply(
                co.get_namespaced_custom_object,
                co.create_namespaced_custom_object,
                co.patch_namespaced_custom_object,
                body,
                KSERVE[0],
                KSERVE[1],
                KSERVE[2],
            )
            got = await self._run(co.get_namespaced_custom_object, *KSERVE[:2], ns, KSERVE[2], name)
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            )
            if not ready:
                raise TemporaryBackendError(f"InferenceService {ns}/{name} is not ready yet")
            url = ((got.get("status") or {}).get("address") or {}).get("url") or (
                f"http://{name}-predictor.{ns}.svc.cluster.local"
            )
            return Served(url, name, {"inferenceService": f"{ns}/{name}", "pool": plan.pool})
        apps, core = client.AppsV1Api(api()), client.CoreV1Api(api())
        await self._apply(
            apps.read_namespaced_deployment,
            apps.create_namespaced_deployment,
            apps.patch_namespaced_deployment,
            self.deployment(request, plan, scheduling),
        )
        await self._apply(
            core.read_namespaced_service,
            core.create_namespaced_service,
            core.patch_namespaced_service,
            self.service(request),
        )
        dep = await self._run(apps.read_namespaced_deployment, name, ns)
        available = (dep.status.available_replicas or 0) if dep.status else 0
        if available < plan.replicas:
            raise TemporaryBackendError(
                f"Deployment {ns}/{name}: {available} of {plan.replicas} replicas available "
                f"on pool {plan.pool}"
            )
        return Served(
            f"http://{name}.{ns}.svc:{PORT}", plan.endpoint, {"deployment": f"{ns}/{name}", "pool": plan.pool}
        )

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        name, ns = object_name(request.department, request.name), self.settings.namespace
        apps = client.AppsV1Api(api())
        if await self.has_kserve():
            co = client.CustomObjectsApi(api())
            try:
                await self._run(co.get_namespaced_custom_object, *KSERVE[:2], ns, KSERVE[2], name)
            except ApiException:
                return [f"InferenceService {ns}/{name} is missing"]
            return []
        try:
            dep = await self._run(apps.read_namespaced_deployment, name, ns)
        except ApiException:
            return [f"Deployment {ns}/{name} is missing"]
        if dep.spec.replicas != plan.replicas:
            return [f"Deployment {ns}/{name} has {dep.spec.replicas} replicas, not {plan.replicas}"]
        return []

    async def remove(self, request: Request, endpoint: str) -> None:
        name, ns = object_name(request.department, request.name), self.settings.namespace
        apps, core, co = client.AppsV1Api(api()), client.CoreV1Api(api()), client.CustomObjectsApi(api())
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (apps.delete_namespaced_deployment, (name, ns)),
            (core.delete_namespaced_service, (name, ns)),
        ]
        if await self.has_kserve():
            calls.append((co.delete_namespaced_custom_object, (*KSERVE[:2], ns, KSERVE[2], name)))
        for fn, args in calls:
            with contextlib.suppress(ApiException):  # already gone
                await self._run(fn, *args)

    # -- routes (the gateway's ConfigMap) ----------------------------------------------------------

    async def get_route(self, endpoint: str) -> Route | None:
        core = client.CoreV1Api(api())
        try:
            cm = await self._run(
                core.read_namespaced_config_map,
                self.settings.routes_configmap,
                self.settings.routes_namespace,
            )
        except ApiException:
            return None
        text = (cm.data or {}).get(f"{endpoint}.json")
        return Route.from_json(text) if text else None

    async def put_route(self, route: Route) -> None:
        core = client.CoreV1Api(api())
        name, ns = self.settings.routes_configmap, self.settings.routes_namespace
        data = {f"{route.endpoint}.json": route.to_json()}
        try:
            await self._run(core.patch_namespaced_config_map, name, ns, {"data": data})
        except ApiException:
            # The stack creates it (backend.py); this is for clusters set up by hand and for the tests.
            meta = {"name": name, "namespace": ns, "labels": naming.MANAGED_LABELS}
            body = {"metadata": meta, "data": data}
            await self._run(core.create_namespaced_config_map, ns, body)

    async def delete_route(self, endpoint: str) -> None:
        core = client.CoreV1Api(api())
        with contextlib.suppress(ApiException):
            await self._run(
                core.patch_namespaced_config_map,
                self.settings.routes_configmap,
                self.settings.routes_namespace,
                {"data": {f"{endpoint}.json": None}},
            )
