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
"""

from __future__ import annotations

import dataclasses
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
    StreamSource,
)

from cityhub_nats.client import streams as nats_streams
from cityhub_nats.client.accounts import Change
from cityhub_nats.client.errors import TEMPORARY, error_text
from component_types.messaging import edges
from component_types.messaging.driver.errors import REFUSALS
from component_types.messaging.driver.streams import stream_config

EDGE_REPLICAS = 1
ALL = ">"
SOURCING_MAX_PENDING = 1000
"""Messages the edge's sourcing consumer sends ahead of the hub's flow-control answers."""
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


async def ensure_on_edge(admin: Client, request: Request, edge: str, issued: int, timeout: float) -> None:
    """Create or update the channel's stream and its sourcing consumer on the edge, through the hub and the
    edge's leaf node (creating the consumer again with the same configuration changes nothing): a
    TemporaryBackendError while the uplink is down (no JetStream of that domain answers)."""
    want = edge_stream_config(request, issued)
    where = f"{request.key} on edge {edge}"
    js = admin.jetstream(timeout=timeout, domain=edges.domain(edge))
    try:
        try:
            info = await js.stream_info(str(want.name))
        except nats.js.errors.NotFoundError:
            await js.add_stream(want)
        else:
            if nats_streams.differences(info.config, want):
                await js.update_stream(want)
        await js.add_consumer(str(want.name), sourcing_consumer_config(request, edge))
    except TEMPORARY as e:
        raise TemporaryBackendError(
            f"NATS stream {where}: {error_text(e)} (is the edge's uplink to the hub down?)"
        ) from e
    except nats.js.errors.APIError as e:
        hint = REFUSALS.get(e.err_code or 0)
        if hint is None and (e.code or 500) >= 500:
            raise TemporaryBackendError(f"NATS stream {where}: {error_text(e)}") from e
        raise PermanentBackendError(
            "BackendRefused",
            f"NATS on edge {edge} refused stream {want.name}: {e.description} — "
            f"{hint or 'change the request'}",
        ) from e


async def ensure_on_hub(
    admin: Client, request: Request, edge: str, replicas: int, issued: int, timeout: float
) -> None:
    """Create or update the hub's stream sourcing the edge's (the account must reserve its maxBytes)."""
    want = hub_stream_config(request, edge, replicas, issued)
    await nats_streams.ensure(admin, want, timeout, f"{request.key} from edge {edge}", REFUSALS)
