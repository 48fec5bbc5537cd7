"""A channel of a department on an edge cluster (多级贯通): its stream on the edge, the hub's stream sourcing
it, and the department's account admitting the edge's leaf node. What crosses the uplink and why:
component_types/messaging/edges.py.

    edge stream   `<name>` in the edge's JetStream domain, subjects city.<d>.<name> and city.<d>.<name>.>,
                  the request's limits, one replica (an edge is one server); created by the operator from
                  the hub through the leaf node ($JS.<edge>.API), so no operator runs on the edge for it
    consumer      `hub` on the edge stream, durable, push to $JS.S.<edge>.<name>, acknowledged by the
                  hub's flow-control answers (NATS ADR-60): what the hub's stream sources through
    hub stream    `<name>` in the hub's domain, no subjects of its own: it sources the edge stream across
                  domains through that consumer (resumed where the hub stopped once the uplink is back) and
                  republishes every message it stores on the hub to the message's own subject, where the
                  channel's shares (exports/imports, shares.py) carry it to other departments
    account       the department's account on the hub admits one leaf node per edge it is on (`leaf`),
                  where a department on the hub only admits none
    uplink        the edge's consumer sends a heartbeat every HEARTBEAT; the hub's stream records when it
                  last heard from its source (`active`): silent past CITYHUB_NATS_EDGE_SILENCE, `observe`
                  reports "edge <name> uplink down for N s" (and asks nothing of the edge meanwhile)

An operator on the edge cluster serves these channels (CITYHUB_NATS_EDGE, driver/settings.py): from the hub's
nats-server, as every operator does, reaching the edge's JetStream through the leaf node. While the uplink is
down, whatever needs the edge (ensure, delete) is a TemporaryBackendError naming the edge, retried.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ExternalStream,
    RePublish,
    StreamConfig,
    StreamConsumerSource,
    StreamInfo,
    StreamSource,
)

from cityhub_nats.client import streams as nats_streams
from cityhub_nats.client.accounts import Accounts, Change
from cityhub_nats.client.errors import TEMPORARY, error_text
from cityhub_nats.renewal import Lifetime
from component_types.messaging import edges
from component_types.messaging.driver.errors import REFUSALS
from component_types.messaging.driver.streams import compared, stream_config

EDGE_REPLICAS = 1
ALL = ">"
SOURCING_MAX_PENDING = 1000
"""Messages the edge's sourcing consumer sends ahead of the hub's flow-control answers."""
STREAM_NOT_FOUND = 10059
"""JetStream's err_code for a missing stream (a missing consumer is another)."""
HEARTBEAT = 1.0
"""Seconds: nats-server requires 1 s of a consumer acknowledged by flow control."""


def edge_stream_config(request: Request, issued: int) -> StreamConfig:
    """The channel's stream on its edge: what a channel on the hub would be, with one replica."""
    return stream_config(request, EDGE_REPLICAS, issued)


def sourcing_consumer_config(request: Request, edge: str) -> ConsumerConfig:
    """The durable push consumer on the edge's stream that the hub's stream sources through (ADR-60):
    acknowledged by the hub's flow-control answers, so the edge knows what the hub holds."""
    return ConsumerConfig(
        durable_name=edges.SOURCING_CONSUMER,
        name=edges.SOURCING_CONSUMER,
        description=f"sourced by the hub: MessagingChannel {request.key}",
        deliver_subject=edges.sourcing_subject(edge, request.name),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.FLOW_CONTROL,
        flow_control=True,
        idle_heartbeat=HEARTBEAT,
        max_ack_pending=SOURCING_MAX_PENDING,
    )


def hub_stream_config(request: Request, edge: str, replicas: int, issued: int) -> StreamConfig:
    """The hub's stream of an edge channel: the same name, limits and metadata, its messages sourced from
    the edge's stream and republished on the hub under their own subjects."""
    return dataclasses.replace(
        stream_config(request, replicas, issued),
        subjects=None,
        sources=[
            StreamSource(
                name=request.name,
                external=ExternalStream(api=edges.api_prefix(edge)),
                consumer=StreamConsumerSource(
                    name=edges.SOURCING_CONSUMER, deliver_subject=edges.sourcing_subject(edge, request.name)
                ),
            )
        ],
        republish=RePublish(src=ALL, dest=ALL),
    )


def admitting_leaf_nodes(count: int) -> Change:
    """The department's account admits `count` leaf node connections (one per edge it is on)."""

    def change(claims: dict[str, Any]) -> None:
        limits = claims.setdefault("limits", {})
        limits["leaf"] = count

    return change


def unreachable(edge: str, e: BaseException) -> TemporaryBackendError:
    """The edge did not answer through the hub: retried until its uplink is back."""
    return TemporaryBackendError(
        f"edge {edge} is unreachable from the hub ({e}): its uplink to the hub is down or its leaf node "
        "has not connected yet; retried until it answers"
    )


async def ensure_on_edge(admin: Client, request: Request, edge: str, issued: int, timeout: float) -> None:
    """Create or update the channel's stream and its sourcing consumer on the edge, through the hub and the
    edge's leaf node (creating the consumer again with the same configuration changes nothing): a
    TemporaryBackendError naming the edge while the uplink is down (no JetStream of that domain answers)."""
    want = edge_stream_config(request, issued)
    where, domain = f"{request.key} on edge {edge}", edges.domain(edge)
    try:
        await nats_streams.ensure(admin, want, timeout, where, REFUSALS, domain=domain)
        with nats_streams.refusals_mapped(where, str(want.name), REFUSALS):
            js = admin.jetstream(timeout=timeout, domain=domain)
            await js.add_consumer(str(want.name), sourcing_consumer_config(request, edge))
    except TemporaryBackendError as e:
        raise unreachable(edge, e) from e
    except PermanentBackendError as e:
        raise PermanentBackendError(e.reason, f"on edge {edge}: {e}") from e


async def ensure_on_hub(
    admin: Client, request: Request, edge: str, replicas: int, issued: int, timeout: float
) -> None:
    """Create or update the hub's stream sourcing the edge's (the account must reserve its maxBytes)."""
    want = hub_stream_config(request, edge, replicas, issued)
    await nats_streams.ensure(admin, want, timeout, f"{request.key} from edge {edge}", REFUSALS)


def uplink_silence(info: StreamInfo, name: str, now: float) -> float | None:
    """Seconds since the hub's stream last heard from its source `name` (messages or heartbeats), counted
    from the stream's creation when it never has; None when it does not source it."""
    for source in info.sources or []:
        if source.name == name:
            if source.active is not None and source.active >= 0:
                return source.active / 1e9
            created = info.created.timestamp() if info.created else now
            return max(0.0, now - created)
    return None


async def revoke_on_edge(
    accounts: Accounts, department: str, user: str, at: int, edge: str, lifetime: Lifetime, now: int
) -> None:
    """Revoke `user` in the department's account JWT on the edge as on the hub (`at`: the hub's entry), so
    its credentials stop working there at once: the edge authenticates against its own copy of the account
    (edge_config.py). `accounts` talk to the edge's system account directly (CITYHUB_NATS_EDGE_URL), not
    through the leaf node, which carries no system traffic. Revocations older than a lifetime are pruned as
    on the hub. A TemporaryBackendError naming the edge while it does not answer: the deletion is retried."""

    def change(claims: dict[str, Any]) -> None:
        claims["revocations"] = {**lifetime.prune(claims.get("revocations") or {}, now), user: at}

    try:
        await accounts.modify(department, change, create=False)
    except TemporaryBackendError as e:
        raise unreachable(edge, e) from e


async def uplink_up(
    admin_of: Callable[[str], Awaitable[Client]],
    channels: list[tuple[str, str]],
    silence: float,
    timeout: float,
    tries: int = 3,
) -> bool | None:
    """Whether the hub heard from the edge within `silence` seconds, read from the first of `channels`
    (department, channel) whose hub stream exists; every channel's sourcing consumer beats once a second, so
    one says it for all. None when no stream could tell (all missing) or the hub's own server does not
    answer (that outage is the hub's, not the uplink's)."""
    for dept, name in channels[:tries]:
        try:
            admin = await admin_of(dept)
            info = await admin.jetstream(timeout=timeout).stream_info(name)
        except nats.js.errors.NotFoundError:
            continue
        except (*TEMPORARY, nats.js.errors.APIError):
            return None
        quiet = uplink_silence(info, name, time.time())
        if quiet is not None:
            return quiet <= silence
    return None


async def drift(
    admin: Client, request: Request, edge: str, replicas: int, timeout: float, issued: int, silence: float
) -> list[str]:
    """How the hub's stream, its source (the uplink) and the edge's stream and consumer differ from the
    request. The edge is asked only while its uplink is up (heard from within `silence` seconds)."""
    name, domain = request.name, edges.domain(edge)
    try:
        info = await admin.jetstream(timeout=timeout).stream_info(name)
    except nats.js.errors.NotFoundError:
        return [f"stream {name} is missing on the hub"]
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {request.key}: {error_text(e)}") from e
    out = compared(info.config, hub_stream_config(request, edge, replicas, issued), issued, "on the hub")
    quiet = uplink_silence(info, name, time.time())
    if quiet is None:
        return [*out, f"the hub's stream {name} does not source edge {edge}'s"]
    for source in info.sources or []:
        if source.name == name and source.error:
            text = source.error.get("description") or source.error
            out.append(f"the hub's stream {name} cannot source edge {edge}'s: {text}")
    if quiet > silence:
        return [*out, f"edge {edge} uplink down for {quiet:.0f} s (the hub has not heard from it since)"]
    js = admin.jetstream(timeout=timeout, domain=domain)
    try:
        edge_info = await js.stream_info(name)
        want = edge_stream_config(request, issued)
        out += [d for d in compared(edge_info.config, want, issued, f"on edge {edge}") if d not in out]
        await js.consumer_info(name, edges.SOURCING_CONSUMER)
    except nats.js.errors.NotFoundError as e:
        missing = "stream" if e.err_code == STREAM_NOT_FOUND else "sourcing consumer"
        out.append(f"edge {edge}'s {missing} of channel {name} is missing")
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        out.append(f"edge {edge} does not answer the hub: {error_text(e)}")
    return out


async def delete_on_edge(admin: Client, request: Request, edge: str, timeout: float) -> None:
    """Delete the edge's stream with its sourcing consumer (after the hub's): a TemporaryBackendError naming
    the edge while it is unreachable, so the deletion is retried."""
    where = f"{request.key} on edge {edge}"
    try:
        await nats_streams.delete(admin, request.name, timeout, where, domain=edges.domain(edge))
    except TemporaryBackendError as e:
        raise unreachable(edge, e) from e
