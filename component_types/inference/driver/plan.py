"""What one request asks of the backend (Plan), what serving it produced (Served), and the interface both
modes implement (Mode): embedded.py (the shared MLServer) and kubernetes_mode.py (a server per endpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cityhub_operator.driver import Request

from component_types.inference.driver.models import ModelFile
from component_types.inference.routes import Route


@dataclass(frozen=True)
class Plan:
    """What one request asks of the backend, resolved and checked."""

    endpoint: str
    """The public model name <department>.<name>."""
    model: ModelFile
    pool: str
    """labels.GPU_POOL when the plan sets limits.gpu, else labels.CPU_POOL."""
    gpu: int
    """GPUs per replica."""
    memory: int
    """Bytes per replica (0: the server's default)."""
    requests_per_minute: int
    replicas: int


@dataclass(frozen=True)
class Served:
    """Where an endpoint's model is served: what its gateway route points at."""

    server: str
    """Base URL of the V2 server that serves the model."""
    model: str
    """The model's name on that server."""
    backend: Mapping[str, str]
    """Backend object ids for status.backend."""


class Mode(Protocol):
    """One way of running model servers; every method is idempotent."""

    async def serve(self, request: Request, plan: Plan) -> Served:
        """Create or update the endpoint's model server; TemporaryBackendError until it is ready."""
        ...

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        """One sentence per difference between the model server and the plan."""
        ...

    async def remove(self, request: Request, endpoint: str) -> None:
        """Stop serving the endpoint's model; succeeds when it is already gone."""
        ...

    async def get_route(self, endpoint: str) -> Route | None: ...

    async def put_route(self, route: Route) -> None: ...

    async def delete_route(self, endpoint: str) -> None: ...
