"""A channel's JetStream stream, in its department's account: wanted configuration, drift, create/update,
delete. The operator's admin user in that account manages it; departments' credentials cannot."""

from __future__ import annotations

import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from component_types.messaging.driver.errors import REFUSALS, TEMPORARY, error_text
from component_types.messaging.naming import channel_subjects

COMPARED = ("subjects", "max_bytes", "max_msgs", "storage", "num_replicas", "description")


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


def differences(have: StreamConfig, want: StreamConfig) -> list[str]:
    """The fields of `have` that differ from `want` (the server adds fields of its own: not compared)."""
    out = [field for field in COMPARED if getattr(have, field) != getattr(want, field)]
    if round(have.max_age or 0) != round(want.max_age or 0):
        out.append("max_age")
    if any((have.metadata or {}).get(k) != v for k, v in (want.metadata or {}).items()):
        out.append("metadata")
    return out


async def drift(admin: Client, request: Request, replicas: int, timeout: float) -> str | None:
    """One sentence saying how the stream differs from the request, or None when it matches."""
    js = admin.jetstream(timeout=timeout)
    try:
        info = await js.stream_info(request.name)
    except nats.js.errors.NotFoundError:
        return f"stream {request.name} is missing"
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {request.key}: {error_text(e)}") from e
    diff = differences(info.config, stream_config(request, replicas))
    return f"stream {request.name} differs in {', '.join(diff)}" if diff else None


async def ensure(admin: Client, request: Request, replicas: int, timeout: float) -> None:
    """Create the stream, or update it where it differs; a refusal says what to change in the request."""
    want = stream_config(request, replicas)
    js = admin.jetstream(timeout=timeout)
    try:
        try:
            info = await js.stream_info(request.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(want)
            return
        if differences(info.config, want):
            await js.update_stream(want)
    except TEMPORARY as e:
        raise TemporaryBackendError(f"NATS stream {request.key}: {error_text(e)}") from e
    except nats.js.errors.APIError as e:
        hint = REFUSALS.get(e.err_code or 0)
        if hint is None and (e.code or 500) >= 500:
            raise TemporaryBackendError(f"NATS stream {request.key}: {error_text(e)}") from e
        raise PermanentBackendError(
            "BackendRefused",
            f"NATS refused stream {request.name}: {e.description} — {hint or 'change the request'}",
        ) from e


async def delete(admin: Client, request: Request, timeout: float) -> None:
    """Delete the stream and its messages; done when it is already gone."""
    where = f"{request.department}/{request.name}"
    try:
        await admin.jetstream(timeout=timeout).delete_stream(request.name)
    except nats.js.errors.NotFoundError:
        pass
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {where}: delete failed: {error_text(e)}") from e
