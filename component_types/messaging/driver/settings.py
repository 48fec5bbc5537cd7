"""The messaging driver's settings, from CITYHUB_NATS_* environment variables (README.md, "设置 Settings")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cityhub_api import units
from cityhub_api.settings import Env, SettingError
from cityhub_nats import jwt
from cityhub_nats.renewal import Lifetime

NEW_SECRET_HINT = "random text (python -m component_types.messaging.local new-secret)"
DAY = 86400
LIFETIME = "CITYHUB_NATS_CREDENTIALS_LIFETIME"
EDGE = "CITYHUB_NATS_EDGE"
EDGE_URL = "CITYHUB_NATS_EDGE_URL"
EDGE_OPERATOR_URL = "CITYHUB_NATS_EDGE_OPERATOR_URL"
EDGE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LEAF_NODES_ON_EDGE = 1
"""Leaf node connections a department on an edge admits in its account on the hub: its edge's one."""


def _limit(read: Env, name: str, kind: str, default: int, needs: str) -> int:
    """A quantity (bytes) or duration (seconds) setting, in the units the plans use (cityhub_api.units)."""
    raw = read.raw(name)
    if raw is None:
        return default
    try:
        return units.parse(kind, raw)
    except ValueError:
        raise SettingError(f"Invalid {name}={raw}: needs to be {needs}") from None


@dataclass(frozen=True)
class DepartmentLimits:
    """What one department's NATS account may use in all (every channel of the department together). The
    account JWT carries them, so nats-server enforces them; defaults suit the catalog's plans (the file store
    holds one channel at the `large` plan's maxBytes, or eight at `standard`'s)."""

    file_store: int = 8 * 2**30
    """CITYHUB_NATS_ACCOUNT_FILE_STORE: bytes of JetStream file store the department's streams may reserve
    in all (each reserves its maxBytes), e.g. 8Gi; the server's store is shared by every department, each
    reserving what its channels hold, so this is one department's most, not its guarantee."""
    memory_store: int = 256 * 2**20
    """CITYHUB_NATS_ACCOUNT_MEMORY_STORE: bytes of JetStream memory its `storage: memory` streams may
    reserve in all, e.g. 256Mi."""
    streams: int = 100
    """CITYHUB_NATS_ACCOUNT_STREAMS: streams (channels) at most."""
    consumers: int = 1000
    """CITYHUB_NATS_ACCOUNT_CONSUMERS: JetStream consumers its applications may create, at most."""
    connections: int = 100
    """CITYHUB_NATS_ACCOUNT_CONNECTIONS: connections at once (the operator's own counts as one)."""
    subscriptions: int = 1000
    """CITYHUB_NATS_ACCOUNT_SUBSCRIPTIONS: subscriptions of one connection at most (nats-server applies the
    account's `subs` per connection; in all at most connections times subscriptions)."""
    payload: int = 2**20
    """CITYHUB_NATS_ACCOUNT_PAYLOAD: the largest message its credentials may publish, in bytes (1Mi)."""
    shares: int = 100
    """CITYHUB_NATS_ACCOUNT_IMPORTS: channels other departments may share with it at most (imports in its
    account JWT): past it a share is refused (TooManyShares), so others' shares can never make its account
    JWT too large to update."""
    shares_per_source: int = 25
    """CITYHUB_NATS_ACCOUNT_IMPORTS_PER_SOURCE: of those, at most this many from one department, so no
    single department can take every place."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DepartmentLimits:
        read, d = Env(env), cls()
        quantity = "a quantity such as 512Mi or 8Gi"
        return cls(
            file_store=_limit(read, "CITYHUB_NATS_ACCOUNT_FILE_STORE", "quantity", d.file_store, quantity),
            memory_store=_limit(
                read, "CITYHUB_NATS_ACCOUNT_MEMORY_STORE", "quantity", d.memory_store, quantity
            ),
            streams=read.integer("CITYHUB_NATS_ACCOUNT_STREAMS", d.streams, minimum=1),
            consumers=read.integer("CITYHUB_NATS_ACCOUNT_CONSUMERS", d.consumers, minimum=1),
            connections=read.integer("CITYHUB_NATS_ACCOUNT_CONNECTIONS", d.connections, minimum=2),
            subscriptions=read.integer("CITYHUB_NATS_ACCOUNT_SUBSCRIPTIONS", d.subscriptions, minimum=10),
            payload=_limit(read, "CITYHUB_NATS_ACCOUNT_PAYLOAD", "quantity", d.payload, quantity),
            shares=read.integer("CITYHUB_NATS_ACCOUNT_IMPORTS", d.shares, minimum=0, maximum=1000),
            shares_per_source=read.integer(
                "CITYHUB_NATS_ACCOUNT_IMPORTS_PER_SOURCE", d.shares_per_source, minimum=0, maximum=1000
            ),
        )

    def account(self, file: int, memory: int, leaf: int = 0) -> dict[str, Any]:
        """The `limits` of the department's account JWT (nats-server's names), its JetStream stores being
        `file` and `memory` bytes: what its streams reserve (driver/reservations.py), not the quotas above;
        `leaf`: the leaf node connections it admits, 0 for a department on the hub, LEAF_NODES_ON_EDGE for
        one on an edge cluster (its edge's leaf node joins the account on the hub)."""
        limits = jwt.unlimited_account_limits(jetstream=True)
        limits.update(
            {
                "conn": self.connections,
                "subs": self.subscriptions,
                "payload": self.payload,
                "leaf": leaf,
                "disk_storage": file,
                "mem_storage": memory,
                "streams": self.streams,
                "consumer": self.consumers,
                "max_bytes_required": True,  # every stream reserves a bounded size (memory ones above all)
                "disallow_bearer": True,  # credentials must prove the seed: a leaked JWT alone is useless
            }
        )
        return limits


@dataclass(frozen=True)
class EdgeSettings:
    """An operator on an edge cluster (多级贯通): its departments' channels live in the edge's JetStream (the
    edge's nats-server, a leaf node of the hub's) and the hub's streams source them
    (component_types/messaging/edges.py). The operator still talks to the hub's nats-server
    (CITYHUB_NATS_URL): accounts are made there, and the edge is reached through its leaf node."""

    name: str
    """CITYHUB_NATS_EDGE: the edge cluster's name (as in cityhub:clusters), which is its JetStream domain;
    unset or empty: the operator serves the hub's departments."""
    url: str
    """CITYHUB_NATS_EDGE_URL: the edge nats-server's client URL, nats://host:port (comma-separated for
    several): written into departments' Secrets, and where the operator's probes publish. Required with
    CITYHUB_NATS_EDGE."""
    silence: float = 30.0
    """CITYHUB_NATS_EDGE_SILENCE: seconds without a word from the edge (its sourcing consumer sends a
    heartbeat every second) after which `observe` reports the edge's uplink down, at least 2."""
    operator_url: str = ""
    """CITYHUB_NATS_EDGE_OPERATOR_URL: where the operator itself reaches the edge's nats-server (its
    revocations, its probes), when that is not `url` — an operator on the hub reaching an edge cluster's
    Service from outside that cluster; empty: `url`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EdgeSettings | None:
        """None when CITYHUB_NATS_EDGE is unset (a hub operator)."""
        read = Env(env)
        name, url = read.raw(EDGE), read.raw(EDGE_URL)
        if name is None:
            if url is not None:
                raise SettingError(
                    f"Invalid {EDGE_URL}={url}: needs {EDGE} set to the edge cluster's name as well "
                    f"(or unset {EDGE_URL} for an operator of the hub)"
                )
            return None
        if not EDGE_NAME.fullmatch(name):
            raise SettingError(
                f"Invalid {EDGE}={name}: needs to be the edge cluster's name as in cityhub:clusters "
                "(lowercase letters, digits and '-', at most 63; it is the edge's JetStream domain), "
                "or empty for the hub"
            )
        if url is None:
            raise SettingError(
                f"{EDGE_URL} is not set: needs to be nats://host:port of edge {name}'s nats-server "
                f"(required with {EDGE}={name})"
            )
        return cls(
            name=name,
            url=read.url(EDGE_URL, schemes=("nats", "tls"), required=True, many=True),
            operator_url=read.url(EDGE_OPERATOR_URL, schemes=("nats", "tls"), many=True),
            silence=read.number("CITYHUB_NATS_EDGE_SILENCE", 30.0, minimum=2.0),
        )

    @property
    def servers(self) -> list[str]:
        """Where the operator connects to the edge's nats-server."""
        return [u.strip() for u in (self.operator_url or self.url).split(",")]


@dataclass(frozen=True)
class NatsSettings:
    url: str
    """CITYHUB_NATS_URL: where the operator reaches nats-server, e.g. nats://127.0.0.1:4222 (comma-separated
    for a cluster). Required. The operator's probes connect here too, never to a URL from a Secret."""
    secret: bytes
    """CITYHUB_NATS_SECRET_FILE (or CITYHUB_NATS_SECRET): the master secret every nkey is derived from, at
    least 32 characters; the server's configuration must be rendered from the same secret
    (cityhub_nats.server_config). Required."""
    public_url: str
    """CITYHUB_NATS_PUBLIC_URL: the URL written into departments' Secrets; default CITYHUB_NATS_URL."""
    timeout: float = 5.0
    """CITYHUB_NATS_TIMEOUT: seconds to wait for one NATS request."""
    replicas: int = 1
    """CITYHUB_NATS_REPLICAS: JetStream replicas of each stream (1, or up to the cluster size, at most 5)."""
    credentials_lifetime: int = 30 * DAY
    """CITYHUB_NATS_CREDENTIALS_LIFETIME: how long a channel's credentials (and a share's activation) stay
    valid, e.g. 30d; the operator renews them every third of it, so revocations older than it are pruned."""
    limits: DepartmentLimits = field(default_factory=DepartmentLimits)
    """CITYHUB_NATS_ACCOUNT_*: what each department's account may use (DepartmentLimits)."""
    edge: EdgeSettings | None = None
    """CITYHUB_NATS_EDGE*: the edge cluster whose departments this operator serves (EdgeSettings); None:
    the hub's."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NatsSettings:
        read = Env(env)
        schemes = ("nats", "tls")
        url = read.url("CITYHUB_NATS_URL", schemes=schemes, required=True, many=True)
        needs = "a duration of at least 3s, such as 30d or 12h"
        lifetime = _limit(read, LIFETIME, "duration", 30 * DAY, needs)
        if lifetime < 3:  # renewed every third of it
            raise SettingError(f"Invalid {LIFETIME}={read.raw(LIFETIME)}: needs to be {needs}")
        return cls(
            url=url,
            secret=read.secret("CITYHUB_NATS_SECRET", min_length=32, needs=NEW_SECRET_HINT).encode(),
            public_url=read.url("CITYHUB_NATS_PUBLIC_URL", url, schemes=schemes, many=True),
            timeout=read.number("CITYHUB_NATS_TIMEOUT", 5.0, minimum=0.0, exclusive=True),
            replicas=read.integer("CITYHUB_NATS_REPLICAS", 1, minimum=1, maximum=5),
            credentials_lifetime=lifetime,
            limits=DepartmentLimits.from_env(env),
            edge=EdgeSettings.from_env(env),
        )

    @property
    def servers(self) -> list[str]:
        """Every nats-server URL of the hub the operator may connect to."""
        return [u.strip() for u in self.url.split(",")]

    @property
    def lifetime(self) -> Lifetime:
        return Lifetime(self.credentials_lifetime)

    @property
    def leaf_nodes(self) -> int:
        """The leaf node connections each served department's account admits (DepartmentLimits.account)."""
        return LEAF_NODES_ON_EDGE if self.edge is not None else 0
