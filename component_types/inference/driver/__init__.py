"""The inference driver (operator side): `create_driver(env)` for the operator core.

    endpoints.py        InferenceDriver: checks, keys, routes; ensure/observe/delete/probe
    plan.py             Plan (a request resolved), Served, and the Mode interface of the two modes
    embedded.py         embedded mode: models of the shared MLServer, route files (local.py starts both)
    kubernetes_mode.py  kubernetes mode: a KServe InferenceService or Deployment + Service per endpoint,
                        routes in the gateway's ConfigMap
    models.py           the city's model store: catalog, versions, which files a request may load
    settings.py         CITYHUB_INFERENCE_* (InferenceSettings, EmbeddedSettings, KubernetesSettings)

The gateway is not driver code: ../gateway.py (a runtime), with the route format in ../routes.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from component_types.inference.driver.endpoints import InferenceDriver
from component_types.inference.driver.settings import InferenceSettings

__all__ = ["InferenceDriver", "InferenceSettings", "create_driver"]


def create_driver(env: Mapping[str, str]) -> InferenceDriver:
    """The driver factory the operator core calls (through the registry)."""
    return InferenceDriver(InferenceSettings.from_env(env))
