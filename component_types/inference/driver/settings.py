"""The inference driver's settings, from CITYHUB_INFERENCE_* environment variables (docs/inference.md).

Nothing is required at import or start-up: an operator serving every component type starts without them,
and a request only fails (BackendUnavailable, retried) when the setting it needs is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cityhub_operator.driver_env import secret_setting


def cache_dir(env: Mapping[str, str]) -> Path:
    given = env.get("CITYHUB_CACHE", "").strip()
    return Path(given).expanduser() if given else Path.home() / ".cache" / "cityhub"


@dataclass(frozen=True)
class InferenceSettings:
    mode: str = "embedded"
    """CITYHUB_INFERENCE_MODE: embedded (one shared MLServer, models loaded through its repository API) or
    cluster (a KServe InferenceService, or a Deployment and Service, per endpoint)."""
    server_url: str = "http://127.0.0.1:8080"
    """CITYHUB_INFERENCE_SERVER_URL: the shared MLServer's HTTP address (embedded mode)."""
    gateway_url: str = "http://127.0.0.1:8090"
    """CITYHUB_INFERENCE_GATEWAY_URL: the gateway's address written into departments' Secrets."""
    models_dir: Path = Path()
    """CITYHUB_INFERENCE_MODELS_DIR: the city's model store, <model>/<version>/<file> plus <model>/model.json
    (component_types/inference/install.sh builds it); default <cache>/inference/models. In cluster mode: where the
    servers mount it (see CITYHUB_INFERENCE_MODELS_PVC)."""
    repository_dir: Path = Path()
    """CITYHUB_INFERENCE_REPOSITORY_DIR: the shared server's model repository (embedded mode), where the
    driver writes one model-settings.json per endpoint; default <cache>/inference/repository."""
    routes_dir: Path = Path()
    """CITYHUB_INFERENCE_ROUTES_DIR: the gateway's route files (embedded mode); default
    <cache>/inference/routes."""
    secret: bytes = b""
    """CITYHUB_INFERENCE_SECRET_FILE (or CITYHUB_INFERENCE_SECRET): at least 32 characters; the API keys
    are derived from it, so they survive restarts and are the same on every reconcile."""
    gpu_quota: str = "kubernetes"
    """CITYHUB_INFERENCE_GPU_QUOTA: `kubernetes` (the department namespace's ResourceQuota hard
    requests.nvidia.com/gpu; none means 0) or a list like `yingji=2,jiaotong=1,*=0`."""
    timeout: float = 10.0
    """CITYHUB_INFERENCE_TIMEOUT: seconds to wait for one server call (loading a model included)."""
    namespace: str = "cityhub-inference"
    """CITYHUB_INFERENCE_NAMESPACE: cluster mode: namespace of the model servers and the gateway's routes
    ConfigMap (the GPU inference pool's namespace)."""
    routes_configmap: str = "inference-routes"
    """CITYHUB_INFERENCE_ROUTES_CONFIGMAP: cluster mode: the ConfigMap the gateway mounts as its routes."""
    image: str = "docker.io/seldonio/mlserver:1.7.1-sklearn"
    """CITYHUB_INFERENCE_IMAGE: cluster mode: the model server image of Deployments."""
    models_pvc: str = "cityhub-models"
    """CITYHUB_INFERENCE_MODELS_PVC: cluster mode: the PersistentVolumeClaim holding the model store,
    mounted read-only at /mnt/models; `none`: the image holds the model store at /mnt/models."""
    storage_uri: str = "pvc://cityhub-models"
    """CITYHUB_INFERENCE_STORAGE_URI: cluster mode with KServe: storageUri prefix of the model store."""

    @property
    def has_secret(self) -> bool:
        return len(self.secret) >= 32

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InferenceSettings:
        env = os.environ if env is None else env
        cache = cache_dir(env)

        def get(name: str, default: str) -> str:
            return env.get(f"CITYHUB_INFERENCE_{name}", "").strip() or default

        mode = get("MODE", "embedded")
        if mode not in ("embedded", "cluster"):
            raise ValueError(f"Invalid CITYHUB_INFERENCE_MODE={mode}: needs to be embedded or cluster")
        for name in ("SERVER_URL", "GATEWAY_URL"):
            url = get(name, "http://x")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"Invalid CITYHUB_INFERENCE_{name}={url}: needs to be http(s)://host:port")
        raw_timeout = get("TIMEOUT", "10")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise ValueError(
                f"Invalid CITYHUB_INFERENCE_TIMEOUT={raw_timeout}: needs to be a positive number"
            )
        quota = get("GPU_QUOTA", "kubernetes")
        parse_gpu_quota(quota)  # validates
        return cls(
            mode=mode,
            server_url=get("SERVER_URL", cls.server_url).rstrip("/"),
            gateway_url=get("GATEWAY_URL", cls.gateway_url).rstrip("/"),
            models_dir=Path(get("MODELS_DIR", str(cache / "inference" / "models"))),
            repository_dir=Path(get("REPOSITORY_DIR", str(cache / "inference" / "repository"))),
            routes_dir=Path(get("ROUTES_DIR", str(cache / "inference" / "routes"))),
            secret=_read_secret(env),
            gpu_quota=quota,
            timeout=timeout,
            namespace=get("NAMESPACE", cls.namespace),
            routes_configmap=get("ROUTES_CONFIGMAP", cls.routes_configmap),
            image=get("IMAGE", cls.image),
            models_pvc=""
            if get("MODELS_PVC", cls.models_pvc) == "none"
            else get("MODELS_PVC", cls.models_pvc),
            storage_uri=get("STORAGE_URI", cls.storage_uri).rstrip("/"),
        )


def parse_gpu_quota(text: str) -> dict[str, int] | None:
    """None for `kubernetes`; else department → GPUs (`*` for the others)."""
    if text == "kubernetes":
        return None
    out: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        dept, _, count = item.partition("=")
        if not dept.strip() or not count.strip().isdigit():
            raise ValueError(
                f"Invalid CITYHUB_INFERENCE_GPU_QUOTA={text}: needs to be `kubernetes` or a list like "
                "yingji=2,jiaotong=1,*=0"
            )
        out[dept.strip()] = int(count)
    return out


def _read_secret(env: Mapping[str, str]) -> bytes:
    # Optional at startup: endpoints wait with a clear message until it is set.
    if not (
        env.get("CITYHUB_INFERENCE_SECRET_FILE", "").strip()
        or env.get("CITYHUB_INFERENCE_SECRET", "").strip()
    ):
        return b""
    return secret_setting(env, "CITYHUB_INFERENCE_SECRET", min_length=32, needs="random text").encode()
