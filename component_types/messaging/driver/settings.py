"""The messaging driver's settings, from CITYHUB_NATS_* environment variables (README.md, "设置 Settings")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api.settings import Env

NEW_SECRET_HINT = "random text (python -m component_types.messaging.local new-secret)"


@dataclass(frozen=True)
class NatsSettings:
    url: str
    """CITYHUB_NATS_URL: where the operator reaches nats-server, e.g. nats://127.0.0.1:4222 (comma-separated
    for a cluster). Required."""
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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NatsSettings:
        read = Env(env)
        schemes = ("nats", "tls")
        url = read.url("CITYHUB_NATS_URL", schemes=schemes, required=True, many=True)
        return cls(
            url=url,
            secret=read.secret("CITYHUB_NATS_SECRET", min_length=32, needs=NEW_SECRET_HINT).encode(),
            public_url=read.url("CITYHUB_NATS_PUBLIC_URL", url, schemes=schemes, many=True),
            timeout=read.number("CITYHUB_NATS_TIMEOUT", 5.0, minimum=0.0, exclusive=True),
            replicas=read.integer("CITYHUB_NATS_REPLICAS", 1, minimum=1, maximum=5),
        )

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",")]
