"""The sensing driver's settings, from CITYHUB_SENSING_* variables (README.md, "设置 Settings")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api import units
from cityhub_api.settings import Env, SettingError

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
    mqtt_store: int = 16 * 2**20
    """CITYHUB_SENSING_MQTT_STORE: JetStream file store (a quantity, e.g. 16Mi) each department's account has
    beyond what its fleets' streams reserve: the gateway keeps MQTT sessions and retained messages there, so
    no department's devices can fill the gateway's store."""
    account_connections: int = 2000
    """CITYHUB_SENSING_ACCOUNT_CONNECTIONS: most connections (devices, apps, the relay) one department holds
    on the gateway at once, and most MQTT sessions it keeps there (each session of a device subscribed with
    QoS 1 is a JetStream consumer): no department's devices can exhaust the gateway for the others."""

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
            mqtt_store=_quantity(read, "CITYHUB_SENSING_MQTT_STORE", cls.mqtt_store),
            account_connections=read.integer(
                "CITYHUB_SENSING_ACCOUNT_CONNECTIONS", cls.account_connections, minimum=10
            ),
        )


def _quantity(read: Env, name: str, default: int) -> int:
    raw = read.raw(name)
    if raw is None:
        return default
    try:
        value = units.parse("quantity", raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingError(f"Invalid {name}={raw}: needs to be a quantity such as 16Mi or 1Gi")
    return value
