"""The inference driver's settings, from CITYHUB_INFERENCE_* environment variables (README.md in this folder).

    InferenceSettings     what both modes use: the mode, the gateway URL, the model store, the key secret
    EmbeddedSettings      embedded mode: the shared MLServer, its model repository, the gateway's route files
    KubernetesSettings    kubernetes mode: where model servers and the routes ConfigMap live, the image

Nothing is required at import or start-up: an operator serving every component type starts without them,
and a request only fails (BackendUnavailable, retried) when a setting it needs is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityhub_api.settings import Env, SettingError, cache_dir
from component_types.inference import naming

PREFIX = "CITYHUB_INFERENCE_"
EMBEDDED, KUBERNETES = "embedded", "kubernetes"
MODES = (EMBEDDED, KUBERNETES)
SECRET = f"{PREFIX}SECRET"
"""CITYHUB_INFERENCE_SECRET_FILE (a mounted Secret key) or, in development, CITYHUB_INFERENCE_SECRET."""
SECRET_MIN_LENGTH = 32
QUOTA_FROM_KUBERNETES = "kubernetes"


def parse_gpu_quota(text: str) -> dict[str, int] | None:
    """None for `kubernetes` (read each department's ResourceQuota); else department → GPUs (`*`: others)."""
    if text == QUOTA_FROM_KUBERNETES:
        return None
    out: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        dept, _, count = item.partition("=")
        if not dept.strip() or not count.strip().isdigit():
            raise SettingError(
                f"Invalid {PREFIX}GPU_QUOTA={text}: needs to be `kubernetes` or a list like "
                "dept-yingji=2,dept-jiaotong=1,*=0"
            )
        out[dept.strip()] = int(count)
    return out


@dataclass(frozen=True)
class EmbeddedSettings:
    """Embedded mode: one shared MLServer; `cityhub operator start` (local.py) sets all of these."""

    server_url: str
    """CITYHUB_INFERENCE_SERVER_URL: the shared MLServer's HTTP address; no default (local.py picks a free
    port for it)."""
    repository_dir: Path
    """CITYHUB_INFERENCE_REPOSITORY_DIR: the shared server's model repository, where the driver writes one
    model-settings.json per endpoint; default <cache>/inference/repository."""
    routes_dir: Path
    """CITYHUB_INFERENCE_ROUTES_DIR: the gateway's route files; default <cache>/inference/routes."""

    @classmethod
    def from_env(cls, env: Env) -> EmbeddedSettings:
        cache = cache_dir(env.env)
        return cls(
            server_url=env.url(f"{PREFIX}SERVER_URL"),
            repository_dir=env.path(f"{PREFIX}REPOSITORY_DIR", cache / "inference" / "repository"),
            routes_dir=env.path(f"{PREFIX}ROUTES_DIR", cache / "inference" / "routes"),
        )


@dataclass(frozen=True)
class KubernetesSettings:
    """Kubernetes mode: a model server per endpoint; the stack's inference Backend sets these."""

    namespace: str = "cityhub-inference"
    """CITYHUB_INFERENCE_NAMESPACE: namespace of the model servers (the GPU inference pool's), where the
    driver also reads the pool's ConfigMap gpu-scheduling."""
    routes_configmap: str = naming.ROUTES_CONFIGMAP
    """CITYHUB_INFERENCE_ROUTES_CONFIGMAP: the ConfigMap the gateway mounts as its routes."""
    routes_namespace: str = ""
    """CITYHUB_INFERENCE_ROUTES_NAMESPACE: the routes ConfigMap's namespace (the gateway's, the hub's system
    namespace); default: CITYHUB_INFERENCE_NAMESPACE."""
    image: str = naming.MLSERVER_IMAGE
    """CITYHUB_INFERENCE_IMAGE: the model server image of Deployments."""
    models_pvc: str = naming.MODELS_PVC
    """CITYHUB_INFERENCE_MODELS_PVC: the PersistentVolumeClaim holding the model store, mounted read-only at
    /mnt/models; `none`: the image holds the model store at /mnt/models."""
    storage_uri: str = f"pvc://{naming.MODELS_PVC}"
    """CITYHUB_INFERENCE_STORAGE_URI: with KServe: the storageUri prefix of the model store."""
    cpu_scheduling: Mapping[str, Any] = field(default_factory=lambda: dict(naming.CPU_SCHEDULING))
    """CITYHUB_INFERENCE_CPU_SCHEDULING: where model servers of CPU plans run, as pod spec fields (JSON
    {"nodeSelector": {…}, "tolerations": […]}; the stack's cityhub:backends.inference.serverPlacement);
    default the CPU pool (cityhub.io/pool=cpu). GPU plans follow the pool's ConfigMap gpu-scheduling."""

    @classmethod
    def from_env(cls, env: Env) -> KubernetesSettings:
        namespace = env.text(f"{PREFIX}NAMESPACE", cls.namespace)
        pvc = env.text(f"{PREFIX}MODELS_PVC", cls.models_pvc)
        return cls(
            namespace=namespace,
            routes_configmap=env.text(f"{PREFIX}ROUTES_CONFIGMAP", cls.routes_configmap),
            routes_namespace=env.text(f"{PREFIX}ROUTES_NAMESPACE", namespace),
            image=env.text(f"{PREFIX}IMAGE", cls.image),
            models_pvc="" if pvc == "none" else pvc,
            storage_uri=env.text(f"{PREFIX}STORAGE_URI", cls.storage_uri).rstrip("/"),
            cpu_scheduling=cpu_scheduling(env),
        )


def cpu_scheduling(env: Env) -> dict[str, Any]:
    name = f"{PREFIX}CPU_SCHEDULING"
    needs = 'with only "nodeSelector" (an object of strings) and "tolerations" (a list of objects)'
    value = env.json_object(name, naming.CPU_SCHEDULING, needs=needs)
    selector, tolerations = value.get("nodeSelector", {}), value.get("tolerations", [])
    if (
        set(value) - {"nodeSelector", "tolerations"}
        or not isinstance(selector, dict)
        or not all(isinstance(v, str) for v in selector.values())
        or not isinstance(tolerations, list)
        or not all(isinstance(t, dict) for t in tolerations)
    ):
        raise SettingError(f"Invalid {name}={env.raw(name)}: needs to be a JSON object {needs}")
    return {"nodeSelector": dict(selector), "tolerations": list(tolerations)}


@dataclass(frozen=True)
class InferenceSettings:
    mode: str
    """CITYHUB_INFERENCE_MODE: `embedded` (default; one shared MLServer, models loaded through its repository
    API) or `kubernetes` (a KServe InferenceService, or a Deployment and Service, per endpoint)."""
    gateway_url: str
    """CITYHUB_INFERENCE_GATEWAY_URL: the gateway's address written into departments' Secrets (kubernetes
    mode: the front door http://inference.<system namespace>.svc.cluster.local:8090)."""
    models_dir: Path
    """CITYHUB_INFERENCE_MODELS_DIR: the city's model store, <model>/<version>/<file> plus <model>/model.json
    (install.sh builds it); default <cache>/inference/models. The driver reads the catalog from it."""
    secret: bytes
    """CITYHUB_INFERENCE_SECRET_FILE (or CITYHUB_INFERENCE_SECRET): at least 32 characters; the API keys are
    derived from it, so they survive restarts and are the same on every reconcile. Empty until configured."""
    gpu_quota: Mapping[str, int] | None
    """CITYHUB_INFERENCE_GPU_QUOTA: `kubernetes` (None: the department namespace's ResourceQuota hard
    requests.nvidia.com/gpu; none means 0) or a list like `dept-yingji=2,dept-jiaotong=1,*=0`."""
    timeout: float
    """CITYHUB_INFERENCE_TIMEOUT: seconds to wait for one server call (loading a model included); 10."""
    embedded: EmbeddedSettings
    kubernetes: KubernetesSettings

    @property
    def has_secret(self) -> bool:
        return len(self.secret) >= SECRET_MIN_LENGTH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | Env | None = None) -> InferenceSettings:
        env = env if isinstance(env, Env) else Env(env)
        secret = b""
        if env.has_secret(SECRET):  # optional at start-up: endpoints wait with a clear message until set
            secret = env.secret(SECRET, min_length=SECRET_MIN_LENGTH, needs="random text").encode()
        return cls(
            mode=env.choice(f"{PREFIX}MODE", EMBEDDED, MODES),
            gateway_url=env.url(f"{PREFIX}GATEWAY_URL"),
            models_dir=env.path(f"{PREFIX}MODELS_DIR", cache_dir(env.env) / "inference" / "models"),
            secret=secret,
            gpu_quota=parse_gpu_quota(env.text(f"{PREFIX}GPU_QUOTA", QUOTA_FROM_KUBERNETES)),
            timeout=env.number(f"{PREFIX}TIMEOUT", 10.0, minimum=0.0, exclusive=True),
            embedded=EmbeddedSettings.from_env(env),
            kubernetes=KubernetesSettings.from_env(env),
        )
