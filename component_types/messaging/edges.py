"""Messaging on edge clusters (多级贯通): what a department on an edge holds, and what crosses the uplink.

Neutral (no NATS client): the edge's configuration (edge_config.py), the driver (driver/edges.py) and the
docs page build on these names. A street office on an edge publishes to its edge's own nats-server, a NATS
leaf node of the hub's, into a JetStream stream in the edge's domain; the hub's stream of the same channel
*sources* it across domains. Nothing of cityhub's moves messages: JetStream stores them on the edge while the
uplink is down and the hub's sourcing consumer resumes from its last sequence when it is back (in order,
none twice).

    domain         the edge's JetStream domain is the edge's name; the hub reaches it as $JS.<edge>.API
    leaf user      one per department and edge, in the department's account, key derived from
                   ("user", <department>/leaf/<edge>): the leaf node's credentials towards the hub
    sourcing       the hub's stream sources the edge's through a durable consumer on the edge (NATS
                   ADR-60, ack by flow control): its position survives both sides, and the hub resumes it
                   the moment the edge delivers again after the uplink returns, instead of waiting out
                   the retry timers of an ephemeral sourcing consumer (30 s a request, then back-off)
    what crosses   only JetStream's own traffic: the hub's API requests for the edge's domain (the sourcing
                   consumer, the operator's streams) and their replies, the sourced messages, flow control.
                   The channel's subjects (city.<d>.>) do not cross as live core-NATS messages: the hub gets
                   each message once, through the sourced stream, which republishes it on the hub to the
                   channel's own subjects (so shares to other departments work as on the hub); a live copy
                   as well would arrive twice, and the republished copy would loop back to the edge's stream.
    account        on the edge, the department's account JWT is the edge's own (JetStream store sized for
                   the edge), preloaded in the edge's configuration: the edge authenticates its devices and
                   apps with the uplink down and after a restart with the uplink down
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cityhub_nats import jwt
from cityhub_nats.keys import CONFIG_ISSUED_AT, Keys

LEAF = "leaf"
HUB_DOMAIN = "hub"
"""The hub's JetStream domain when edges join it: named, so each edge's domain stays apart from it."""
SOURCING_CONSUMER = "hub"
"""The durable consumer on each edge stream that the hub's stream sources through."""
SOURCING_REPLIES = "$JSC.R.>"
"""Where the edge answers the hub's own JetStream requests (resetting the sourcing consumer)."""
FLOW_CONTROL = "$JS.FC.>"
"""The hub's flow-control answers to the edge's consumer."""
INBOX = "_INBOX.>"
"""Replies to the operator's requests to the edge's JetStream (its streams)."""


def domain(edge: str) -> str:
    """The edge's JetStream domain: the edge's name (unique in the city, a NATS subject token)."""
    if not edge or any(c in edge for c in ". *>\t\n"):
        raise ValueError(f"edge name {edge!r} cannot be a JetStream domain: use letters, digits and '-'")
    return edge


def api_prefix(edge: str) -> str:
    """How the hub (and the operator on it) addresses the edge's JetStream through the leaf node."""
    return f"$JS.{domain(edge)}.API"


def sourcing_subject(edge: str, channel: str) -> str:
    """Where the edge stream's durable sourcing consumer delivers (to the hub's stream, over the uplink):
    messages, heartbeats and flow-control requests."""
    return f"$JS.S.{domain(edge)}.{channel}"


def leaf_label(department: str, edge: str) -> str:
    """What the leaf node's user key derives from."""
    return f"{department}/{LEAF}/{edge}"


def leaf_permissions(edge: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of a department's leaf node user, as the hub applies them to the leaf connection: `pub`
    is what the edge may send to the hub, `sub` what the hub sends to the edge."""
    pub = {"allow": [sourcing_subject(edge, ">"), SOURCING_REPLIES, INBOX]}
    sub = {"allow": [f"{api_prefix(edge)}.>", FLOW_CONTROL]}
    return pub, sub


def leaf_creds(
    keys: Keys,
    department: str,
    edge: str,
    *,
    issued_at: int = CONFIG_ISSUED_AT,
    expires_at: int | None = None,
) -> str:
    """The .creds the edge's leaf node connects to the hub with, in the department's account. A fixed
    `issued_at` and no expiry render byte-identical files every time; withdrawing an edge revokes the
    leaf user's key in the department's account JWT on the hub (the hub refuses and disconnects it)."""
    user, account = keys.user(leaf_label(department, edge)), keys.account(department)
    pub, sub = leaf_permissions(edge)
    token = jwt.user_jwt(
        user,
        account,
        f"{department} leaf node on {edge}",
        pub,
        sub,
        issued_at=issued_at,
        expires_at=expires_at,
    )
    return jwt.creds(token, user)


def edge_account_limits(file_store: int, memory_store: int = 0) -> dict[str, Any]:
    """A department account's limits on an edge: its JetStream stores there (each stream reserves its
    maxBytes), credentials that prove their seed."""
    limits = jwt.unlimited_account_limits(jetstream=True)
    limits.update(
        {
            "disk_storage": file_store,
            "mem_storage": memory_store,
            "max_bytes_required": True,
            "disallow_bearer": True,
        }
    )
    return limits


def edge_account_jwt(
    keys: Keys,
    department: str,
    *,
    file_store: int,
    memory_store: int = 0,
    revocations: Mapping[str, int] | None = None,
) -> str:
    """The department's account JWT the edge preloads: the same account key as on the hub (its users'
    credentials work on both), JetStream on within the edge's store, no exports or imports (shares are made
    on the hub), and the users revoked on the hub (`revocations`: user public key -> revoked at)."""
    nats: dict[str, Any] = {"limits": edge_account_limits(file_store, memory_store)}
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return jwt.account_jwt(
        keys.account(department), keys.operator, department, nats, issued_at=CONFIG_ISSUED_AT
    )
