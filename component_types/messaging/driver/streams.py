"""A channel's JetStream stream, in its department's account: the configuration a request asks for. Creating,
updating, comparing and deleting it is cityhub_nats.client.streams (shared by every nats-server type)."""

from __future__ import annotations

from cityhub_operator.driver import Request
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cityhub_nats.client import streams
from component_types.messaging.driver.errors import REFUSALS
from component_types.messaging.naming import channel_subjects


def stream_config(request: Request, replicas: int) -> StreamConfig:
    """The stream a request asks for: limits-based retention, oldest messages discarded first."""
    limits = request.limits
    storage = StorageType.MEMORY if request.spec.get("storage") == "memory" else StorageType.FILE
    return StreamConfig(
        name=request.name,
        description=f"MessagingChannel {request.key}",
        subjects=channel_subjects(request.department, request.name),
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=float(limits["maxAge"]) if "maxAge" in limits else None,
        max_bytes=int(limits["maxBytes"]) if "maxBytes" in limits else -1,
        max_msgs=int(limits["maxMessages"]) if "maxMessages" in limits else -1,
        storage=storage,
        num_replicas=replicas,
        metadata={"cityhub.io/request": request.key, "cityhub.io/uid": request.uid},
    )


async def drift(admin: Client, request: Request, replicas: int, timeout: float) -> str | None:
    return await streams.drift(admin, stream_config(request, replicas), timeout, request.key)


async def ensure(admin: Client, request: Request, replicas: int, timeout: float) -> None:
    await streams.ensure(admin, stream_config(request, replicas), timeout, request.key, REFUSALS)


async def delete(admin: Client, request: Request, timeout: float) -> None:
    await streams.delete(admin, request.name, timeout, f"{request.department}/{request.name}")
