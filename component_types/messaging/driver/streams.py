"""A channel's JetStream stream, in its department's account: the configuration a request asks for, whether
it fits the department's limits, and refusals that name the room left. Creating, updating, comparing and
deleting it is cityhub_nats.client.streams (shared by every nats-server type).

The stream's metadata also records when the channel's credentials in its Secret were issued
(`cityhub.io/credentials-issued`), so the drift check sees when they are due for renewal.
"""

from __future__ import annotations

import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cityhub_nats.client import streams
from cityhub_nats.client.capacity import server_rooms, size
from cityhub_nats.client.errors import TEMPORARY, error_text
from component_types.messaging.driver.errors import REFUSALS, STORE_FULL
from component_types.messaging.driver.settings import DepartmentLimits
from component_types.messaging.naming import channel_subjects

ISSUED = "cityhub.io/credentials-issued"


def storage_of(request: Request) -> StorageType:
    return StorageType.MEMORY if request.spec.get("storage") == "memory" else StorageType.FILE


def stream_config(request: Request, replicas: int, issued: int) -> StreamConfig:
    """The stream a request asks for: limits-based retention, oldest messages discarded first."""
    limits = request.limits
    return StreamConfig(
        name=request.name,
        description=f"MessagingChannel {request.key}",
        subjects=channel_subjects(request.department, request.name),
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=float(limits["maxAge"]) if "maxAge" in limits else None,
        max_bytes=int(limits["maxBytes"]) if "maxBytes" in limits else -1,
        max_msgs=int(limits["maxMessages"]) if "maxMessages" in limits else -1,
        storage=storage_of(request),
        num_replicas=replicas,
        metadata={"cityhub.io/request": request.key, "cityhub.io/uid": request.uid, ISSUED: str(issued)},
    )


def _store(request: Request, limits: DepartmentLimits) -> tuple[str, int, str]:
    if storage_of(request) == StorageType.MEMORY:
        return "memory", limits.memory_store, "CITYHUB_NATS_ACCOUNT_MEMORY_STORE"
    return "file", limits.file_store, "CITYHUB_NATS_ACCOUNT_FILE_STORE"


def check(request: Request) -> None:
    """Refuse, before anything changes, a stream without maxBytes: every stream reserves its maxBytes in the
    department's store (the account requires it; how much the department may reserve: reservations.py)."""
    if "maxBytes" not in request.limits:
        raise PermanentBackendError(
            "MaxBytesRequired",
            f"spec.limits.maxBytes is required (plan {request.plan!r} has no default): every stream reserves "
            f"its maxBytes in the department's JetStream {storage_of(request).value} store",
        )


async def drift(admin: Client, request: Request, replicas: int, timeout: float, issued: int) -> list[str]:
    """How the stream differs from the request, and whether the credentials are due for renewal."""
    want = stream_config(request, replicas, issued)
    try:
        info = await admin.jetstream(timeout=timeout).stream_info(request.name)
    except nats.js.errors.NotFoundError:
        return [f"stream {request.name} is missing"]
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {request.key}: {error_text(e)}") from e
    return compared(info.config, want, issued)


def compared(have: StreamConfig, want: StreamConfig, issued: int, where: str = "") -> list[str]:
    """How stream `have` differs from `want`, and whether the credentials recorded in its metadata are due
    for renewal (`where`: e.g. "on edge xihu-edge", after the stream's name)."""
    recorded = have.metadata or {}
    diff = streams.differences(have, want)
    out = []
    if recorded.get(ISSUED) != str(issued):
        out.append("the channel's credentials are due for renewal")
        if all(recorded.get(k) == v for k, v in (want.metadata or {}).items() if k != ISSUED):
            diff.remove("metadata")
    if diff:
        out.append(f"stream {want.name}{' ' + where if where else ''} differs in {', '.join(diff)}")
    return out


async def ensure(
    admin: Client,
    system: Client,
    request: Request,
    replicas: int,
    timeout: float,
    issued: int,
    limits: DepartmentLimits,
) -> None:
    try:
        await streams.ensure(admin, stream_config(request, replicas, issued), timeout, request.key, REFUSALS)
    except PermanentBackendError as e:
        cause = e.__cause__
        if isinstance(cause, nats.js.errors.APIError) and cause.err_code in STORE_FULL:
            room = await _room(system, request, timeout, limits)
            raise PermanentBackendError("BackendRefused", f"{e} ({room})") from cause
        raise


async def _room(system: Client, request: Request, timeout: float, limits: DepartmentLimits) -> str:
    """What is left where the stream would go: the server's store, and the department's quota."""
    kind, store, variable = _store(request, limits)
    parts = [f"the department may reserve {size(store)} of JetStream {kind} store in all ({variable})"]
    rooms = await server_rooms(system, timeout)
    if rooms is not None:
        room = rooms[storage_of(request)]
        setting = "maxFileStore" if kind == "file" else "max_memory_store"
        parts.append(
            f"the NATS server's JetStream {kind} store ({setting}) has {size(room.free)} of "
            f"{size(room.size)} unreserved"
        )
    return "; ".join(parts)


async def delete(admin: Client, request: Request, timeout: float) -> None:
    await streams.delete(admin, request.name, timeout, f"{request.department}/{request.name}")
