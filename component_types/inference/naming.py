"""Names the inference backend (backend.py), its driver and the local launcher (local.py) share, spelled once.

    inference-gateway   the gateway workload (gateway.py, run as GATEWAY_MODULE); the type's front door
                        Service `inference` selects its pods
    inference-routes    the routes ConfigMap: the driver writes it, the gateway mounts it at ROUTES_MOUNT
    cityhub-models      the model store's PersistentVolumeClaim, mounted read-only at MODELS_MOUNT by the
                        model servers of kubernetes mode

Neutral: no backend client library, no Pulumi.
"""

from __future__ import annotations

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
SECRET_KEY = "secret"
"""The backend Secret's key holding the master secret API keys derive from (<mount>/secret)."""
MANAGED_LABELS = {labels.MANAGED_BY: "cityhub-operator", labels.COMPONENT: COMPONENT}
"""On everything the driver creates in kubernetes mode. The backend's NetworkPolicy selects the model server
pods by them (the gateway's pods are managed by Pulumi, so they are not among them)."""
