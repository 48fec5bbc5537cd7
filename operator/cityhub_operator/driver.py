"""The backend driver interface: the whole contract between the operator core and a backend.

A driver module (named by `x-cityhub.driver` in its component type's schema) exposes
`create_driver(env: Mapping[str, str]) -> Driver`; the core imports it by name, so it never depends on a
particular backend. A driver reads its own settings from `env` (CITYHUB_<BACKEND>_…).

Every method is idempotent and must tolerate partly created backend objects. Backend object names follow
from the request alone (namespace, name, uid), never from random values, so a retry or a restart after a
crash finds the same objects instead of creating duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Request:
    """One component request, with its plan resolved: what a driver needs to act on it."""

    namespace: str
    name: str
    uid: str
    """metadata.uid: distinguishes a request from a deleted one that had the same name."""
    department: str
    """The requesting department (its namespace)."""
    spec: Mapping[str, Any]
    """The request's spec as applied (with CRD defaults)."""
    limits: Mapping[str, int]
    """Effective limits, within the plan: durations in seconds, quantities in bytes, integers as such."""
    plan: str = ""
    offering: str = ""
    created_at: int = 0
    """metadata.creationTimestamp in Unix seconds: stable, so drivers can keep outputs byte-identical."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Result:
    """What `ensure` made: endpoints (not secret), credentials (secret) and the ids of the backend objects."""

    endpoints: Mapping[str, str]
    """Go to status.endpoints and to the Secret; never secret."""
    credentials: Mapping[str, str]
    """Go to the Secret only: never to status, events or logs."""
    backend: Mapping[str, str] = field(default_factory=dict)
    """Backend object ids (status.backend), e.g. {"stream": "…", "account": "A…"}."""


@dataclass(frozen=True)
class Observation:
    """What `observe` saw: whether the backend objects match the request, and if not, what differs."""

    in_sync: bool
    drift: tuple[str, ...] = ()
    """One short sentence per difference, e.g. "stream traffic-events is missing"."""


class BackendError(Exception):
    """A backend call failed; the message says what happened, never a credential."""


class TemporaryBackendError(BackendError):
    """Try again later: the backend is unreachable, timed out or busy. The core retries with backoff."""


class PermanentBackendError(BackendError):
    """The backend refuses the request as written; retrying the same spec cannot help.

    `reason` is a CamelCase condition reason; the message says what to change.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Driver(Protocol):
    """A backend for one component type."""

    async def ensure(self, request: Request) -> Result:
        """Create or update the request's backend objects to match it; return endpoints and credentials."""
        ...

    async def observe(self, request: Request) -> Observation:
        """Compare the backend objects with the request without changing anything (drift detection)."""
        ...

    async def delete(self, request: Request) -> None:
        """Remove every backend object of the request, and make its credentials stop working.

        Succeeds when they are already gone.
        """
        ...

    async def close(self) -> None:
        """Release connections; called once at operator shutdown."""
        ...


@runtime_checkable
class Prober(Protocol):
    """Optional: a black-box probe of a provisioned component through the department's own credentials.

    A driver that implements it lets the operator measure what a department experiences (an OIDC token, a
    publish/consume round trip, a tile fetch, an inference call), not just whether the backend object exists.
    """

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """Use the component as the department would, with `secret` (the request's Secret data, decoded).

        Returns when it works; raises BackendError (Temporary… when it is unreachable) saying what failed.

        Take only credentials from `secret` (a password, a token, NATS user creds), never where to connect:
        every URL, host and port comes from the driver's own settings (CITYHUB_<BACKEND>_…) and the request.
        The Secret lives in the department's namespace and whoever may write it there (the department's
        admins, any of its workloads so permitted) could otherwise point the operator's probes at any address
        the operator reaches: the cluster's internal services, the cloud metadata endpoint (SSRF). Endpoints
        the driver wrote to the Secret are for the department's applications, not for the operator.
        """
        ...


@runtime_checkable
class Orphaner(Protocol):
    """Optional: what deletionPolicy Orphan means for this backend beyond keeping its objects.

    Without it, Orphan leaves everything as it is, credentials included; with it, the core calls `orphan`
    instead of `delete`, so nothing the request granted outlives it while its data stays.
    """

    async def orphan(self, request: Request) -> None:
        """Keep the request's data (streams, tables, models) but revoke its credentials and withdraw what it
        granted to others. Idempotent; succeeds when they are already gone."""
        ...


@runtime_checkable
class UplinkReporter(Protocol):
    """Optional: a driver serving an edge cluster (多级贯通) that can tell whether the edge's uplink to the
    hub works. The core asks every probe interval and exports cityhub_edge_uplink_up{edge}, which the hub's
    CityhubEdgeUplinkDown alert names the edge by."""

    async def uplinks(self) -> Mapping[str, bool]:
        """Edge cluster name → whether its uplink carries traffic now. Empty when the driver has nothing to
        judge by (no edge, or no component on it yet) or cannot reach its own backend on the hub: that
        outage is the hub's, reported by its requests' conditions, not the edge's."""
        ...
