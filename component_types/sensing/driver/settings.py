"""The sensing driver's settings, from CITYHUB_SENSING_* variables (README.md, "设置 Settings")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api.settings import Env

NEEDS_SECRET = "random text (the same master secret the gateway's configuration was rendered from)"


@dataclass(frozen=True)
class SensingSettings:
    url: str
    """CITYHUB_SENSING_URL: where the operator reaches the gateway's NATS port, e.g. nats://127.0.0.1:4222.
    Required."""
    secret: bytes
    """CITYHUB_SENSING_SECRET_FILE (or CITYHUB_SENSING_SECRET): the gateway's master secret, at least 32
    characters; every account, device and reader key derives from it. Required."""
    mqtt_url: str
    """CITYHUB_SENSING_MQTT_URL: the MQTT address written into departments' Secrets and used by the probe,
    e.g. mqtt://127.0.0.1:1883 or mqtts://iot.city.gov.cn:8883. Required."""
    public_url: str
    """CITYHUB_SENSING_PUBLIC_URL: the NATS address apps read telemetry from; default CITYHUB_SENSING_URL."""
    timeout: float = 5.0
    """CITYHUB_SENSING_TIMEOUT: seconds to wait for one NATS request or MQTT exchange."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SensingSettings:
        read = Env(env)
        url = read.url("CITYHUB_SENSING_URL", schemes=("nats", "tls"), required=True)
        return cls(
            url=url,
            secret=read.secret("CITYHUB_SENSING_SECRET", min_length=32, needs=NEEDS_SECRET).encode(),
            mqtt_url=read.url("CITYHUB_SENSING_MQTT_URL", schemes=("mqtt", "mqtts"), required=True),
            public_url=read.url("CITYHUB_SENSING_PUBLIC_URL", url, schemes=("nats", "tls")),
            timeout=read.number("CITYHUB_SENSING_TIMEOUT", 5.0, minimum=0.0, exclusive=True),
        )
