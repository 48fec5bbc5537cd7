"""The objects of kubernetes mode, as the API takes them: a Deployment and a Service running MLServer, or a
KServe InferenceService, per endpoint (kubernetes_mode.py creates them).

All are named naming.object_name(namespace, name) and carry
    labels        naming.MANAGED_LABELS (the backend's NetworkPolicy admits only the gateway to such pods),
                  labels.DEPARTMENT (the namespace; `usage` sums a department's servers by it),
                  labels.ENDPOINT (the name, when it fits a label value), labels.INSTANCE (the object name),
                  naming.OWNER_UID (the request's uid)
    annotation    labels.REQUEST = naming.owner(namespace, name): read before any patch or delete
The pods meet Pod Security `restricted` (the model servers' namespace enforces it): non-root (MLServer's
image runs as uid 1000), no privilege escalation, no capabilities, the runtime's seccomp profile.
Pure functions: no API calls.
"""

from __future__ import annotations

from typing import Any

from cityhub_operator.driver import Request

from cityhub_api import labels
from component_types.inference import naming
from component_types.inference.driver.plan import Plan
from component_types.inference.driver.settings import KubernetesSettings

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
PORT = 8080
"""The model server's port inside its pod (MLServer's default): each pod has its own network namespace."""
MLSERVER_UID = 1000
"""The user of MLServer's images (USER 1000 in seldonio/mlserver)."""
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": MLSERVER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
LABEL_VALUE_MAX = 63


def object_labels(request: Request) -> dict[str, str]:
    out = {
        **naming.MANAGED_LABELS,
        labels.DEPARTMENT: request.namespace,
        labels.INSTANCE: naming.object_name(request.namespace, request.name),
        naming.OWNER_UID: request.uid,
    }
    if len(request.name) <= LABEL_VALUE_MAX:  # metadata.name may be a 253-character DNS subdomain
        out[labels.ENDPOINT] = request.name
    return out


def metadata(settings: KubernetesSettings, request: Request) -> dict[str, Any]:
    return {
        "name": naming.object_name(request.namespace, request.name),
        "namespace": settings.namespace,
        "labels": object_labels(request),
        "annotations": {labels.REQUEST: naming.owner(request.namespace, request.name)},
    }


def owner_of(meta: Any) -> str:
    """The owner recorded on an object's metadata (a client model or a dict); '' when none."""
    annotations = meta.get("annotations") if isinstance(meta, dict) else getattr(meta, "annotations", None)
    return str((annotations or {}).get(labels.REQUEST, ""))


def resources(plan: Plan) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {"cpu": f"{plan.each.cpu_millis}m"}
    if plan.memory:
        limits["memory"] = requests["memory"] = str(plan.memory)
    if plan.gpu:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(plan.gpu)
    return {"requests": requests, "limits": limits}


def deployment(
    settings: KubernetesSettings, request: Request, plan: Plan, scheduling: dict[str, Any]
) -> dict[str, Any]:
    meta = metadata(settings, request)
    uri = f"{naming.MODELS_MOUNT}/{plan.model.relative}"
    volumes, mounts = [], []
    if settings.models_pvc:
        volumes = [
            {"name": "models", "persistentVolumeClaim": {"claimName": settings.models_pvc, "readOnly": True}}
        ]
        mounts = [{"name": "models", "mountPath": naming.MODELS_MOUNT, "readOnly": True}]
    container = {
        "name": "mlserver",
        "image": settings.image,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {"name": "MLSERVER_HTTP_PORT", "value": str(PORT)},
            {"name": "MLSERVER_MODEL_NAME", "value": plan.object_name},
            {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": plan.model.runtime},
            {"name": "MLSERVER_MODEL_URI", "value": uri},
            {"name": "MLSERVER_MODEL_VERSION", "value": plan.model.version},
        ],
        "resources": resources(plan),
        "readinessProbe": {"httpGet": {"path": f"/v2/models/{plan.object_name}/ready", "port": PORT}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": {labels.INSTANCE: meta["name"]}},
            "template": {
                "metadata": {"labels": meta["labels"]},
                "spec": {
                    "containers": [container],
                    "volumes": volumes,
                    "nodeSelector": dict(scheduling.get("nodeSelector") or {}),
                    "tolerations": list(scheduling.get("tolerations") or []),
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                },
            },
        },
    }


def service(settings: KubernetesSettings, request: Request) -> dict[str, Any]:
    meta = metadata(settings, request)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": {labels.INSTANCE: meta["name"]},
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }


def inference_service(
    settings: KubernetesSettings, request: Request, plan: Plan, scheduling: dict[str, Any]
) -> dict[str, Any]:
    folder = plan.model.relative.rsplit("/", 1)[0]
    return {
        "apiVersion": f"{KSERVE[0]}/{KSERVE[1]}",
        "kind": "InferenceService",
        "metadata": metadata(settings, request),
        "spec": {
            "predictor": {
                "minReplicas": plan.replicas,
                "maxReplicas": plan.replicas,
                "nodeSelector": dict(scheduling.get("nodeSelector") or {}),
                "tolerations": list(scheduling.get("tolerations") or []),
                "securityContext": POD_SECURITY,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "protocolVersion": "v2",
                    "runtime": "kserve-mlserver",
                    "storageUri": f"{settings.storage_uri}/{folder}",
                    "resources": resources(plan),
                    "securityContext": CONTAINER_SECURITY,
                },
            }
        },
    }
