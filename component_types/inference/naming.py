"""Names the inference backend (backend.py), its driver and the local launcher (local.py) share, spelled once.

    inference-gateway   the gateway workload (gateway.py, run as GATEWAY_MODULE); the type's front door
                        Service `inference` selects its pods
    inference-routes    the routes ConfigMap: the driver writes it, the gateway mounts it at ROUTES_MOUNT
    cityhub-models      the model store's PersistentVolumeClaim, mounted read-only at MODELS_MOUNT by the
                        model servers of kubernetes mode

Every backend object of one endpoint (kubernetes mode: Deployment, Service or InferenceService; embedded
mode: the shared server's model and its repository folder; both: the route) is named
`object_name(namespace, name)`: a readable prefix and a SHA-256 prefix of `<namespace>/<name>`. Names that
join namespace and name with `-` collide (`dept-x`/`y-z` and `dept-x-y`/`z` both gave `ie-dept-x-y-z`);
the hash does not, and the driver still checks the owner recorded on an object (`owner`) before it patches
or deletes it.

Neutral: no backend client library, no Pulumi.
"""

from __future__ import annotations

import hashlib
import re

from cityhub_api import labels

COMPONENT = "inference"
GATEWAY = "inference-gateway"
GATEWAY_MODULE = f"{__package__}.gateway"
"""`python -m component_types.inference.gateway`: from the operator's image (kubernetes) or the CLI's venv."""
ROUTES_CONFIGMAP = "inference-routes"
ROUTES_MOUNT = "/etc/cityhub/routes"
MODELS_PVC = "cityhub-models"
MODELS_MOUNT = "/mnt/models"
MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1-sklearn"
"""The model server image of kubernetes mode (CITYHUB_INFERENCE_IMAGE)."""
MODELS_IMAGE_ROOT = "/models"
"""Where a models image (cityhub:backends.inference.modelsImage) holds the model store."""
CATALOG_MOUNT = "/var/lib/cityhub/inference-models"
"""The operator's copy of the store's catalog (the model.json files) from the models image."""
CPU_SCHEDULING = {"nodeSelector": {labels.POOL: labels.CPU_POOL}, "tolerations": []}
"""Where model servers of CPU plans run unless serverPlacement says otherwise: the CPU pool."""
UNKNOWN_ENDPOINT = "no inference endpoint"
"""How the gateway's 404 for an endpoint without a route begins; the driver waits on it (confirm_route)."""
SECRET_KEY = "secret"
"""The backend Secret's key holding the master secret API keys derive from (<mount>/secret)."""
MANAGED_LABELS = {labels.MANAGED_BY: "cityhub-operator", labels.COMPONENT: COMPONENT}
"""On everything the driver creates in kubernetes mode. The backend's NetworkPolicy selects the model server
pods by them (the gateway's pods are managed by Pulumi, so they are not among them)."""

OWNER_UID = labels.REQUEST_UID
"""Label with the owning request's metadata.uid on the objects of kubernetes mode (next to labels.DEPARTMENT,
its namespace, and labels.ENDPOINT, its name); the annotation labels.REQUEST holds `owner(namespace, name)`,
which the driver compares before any patch or delete."""
HASH_LENGTH = 16
"""64 bits of SHA-256: finding another namespace/name with the same name takes ~2^64 tries."""
READABLE_LENGTH = 29
"""ie-<29>-<16> is at most 49 characters: a DNS-1035 label with room for KServe's `-predictor` suffixes."""


def owner(namespace: str, name: str) -> str:
    """Who an object belongs to: `<namespace>/<name>` (neither may contain '/')."""
    return f"{namespace}/{name}"


def object_name(namespace: str, name: str) -> str:
    """The name of every backend object of the endpoint `name` of department (namespace) `namespace`."""
    digest = hashlib.sha256(owner(namespace, name).encode()).hexdigest()[:HASH_LENGTH]
    readable = re.sub(r"[^a-z0-9-]+", "-", f"{namespace}-{name}".lower())[:READABLE_LENGTH].strip("-")
    return f"ie-{readable}-{digest}"
