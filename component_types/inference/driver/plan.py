"""What one request asks of the backend (Plan), what serving it produced (Served), and the interface both
modes implement (Mode): embedded.py (the shared MLServer) and kubernetes_mode.py (a server per endpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cityhub_operator.driver import PermanentBackendError, Request

from component_types.inference.driver.models import ModelFile
from component_types.inference.driver.quota import Resources
from component_types.inference.routes import Route


@dataclass(frozen=True)
class Plan:
    """What one request asks of the backend, resolved and checked."""

    endpoint: str
    """The public model name <department>.<name>."""
    object_name: str
    """naming.object_name(namespace, name): every backend object's name (model, Deployment, route file)."""
    owner: str
    """naming.owner(namespace, name): recorded on every backend object and compared before changing one."""
    model: ModelFile
    pool: str
    """labels.GPU_POOL when the plan sets limits.gpu, else labels.CPU_POOL."""
    gpu: int
    """GPUs per replica."""
    memory: int
    """Bytes per replica (0: the server's default)."""
    requests_per_minute: int
    replicas: int
    each: Resources
    """What one model server replica reserves (quota.py)."""

    @property
    def reserved(self) -> Resources:
        return self.each.times(self.replicas)


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
    """One way of running model servers; every method is idempotent. Before changing or removing an object a
    mode reads the owner recorded on it: another request's object raises PermanentBackendError
    `NameConflict` naming that owner (serve) or is left alone (remove)."""

    async def serve(self, request: Request, plan: Plan) -> Served:
        """Create or update the endpoint's model server; TemporaryBackendError until it is ready."""
        ...

    async def drift(self, request: Request, plan: Plan) -> list[str]:
        """One sentence per difference between the model server and the plan."""
        ...

    async def remove(self, request: Request) -> None:
        """Stop serving the request's model (naming.object_name of its namespace and name; no plan: a refused
        request is deleted too); succeeds when it is already gone or is not the request's."""
        ...

    async def usage(self, department: str, exclude: str) -> Resources:
        """What the department's model servers reserve, except those of owner `exclude`."""
        ...

    async def get_route(self, file: str) -> Route | None: ...

    async def put_route(self, route: Route) -> None: ...

    async def delete_route(self, file: str) -> None: ...


def name_conflict(what: str, owner: str, wanted: str) -> PermanentBackendError:
    """The refusal when `what` (an object the request's name maps to) belongs to another request."""
    return PermanentBackendError(
        "NameConflict",
        f"{what} belongs to {owner or 'an unknown owner'}, not {wanted}: it is left alone; rename this "
        "endpoint (metadata.name) or ask the platform team",
    )
