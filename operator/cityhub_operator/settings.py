"""Operator settings: loaded once at startup from CITYHUB_* environment variables, validated with messages
that say what a value needs to be. Driver settings (CITYHUB_NATS_*, …) belong to their drivers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """CITYHUB_NAMESPACES: comma-separated namespaces (departments) to serve; empty serves every namespace."""
    components: tuple[str, ...] = ()
    """CITYHUB_COMPONENTS: comma-separated component types to serve (e.g. messaging); empty serves every
    type declared in schemas/components."""
    drift_interval: float = 60.0
    """CITYHUB_DRIFT_INTERVAL: seconds between drift checks of each Ready request (backend objects removed
    out of band are recreated)."""
    retry_base_delay: float = 2.0
    """CITYHUB_RETRY_BASE_DELAY: seconds before the first retry after a backend error; doubles each retry."""
    retry_max_delay: float = 300.0
    """CITYHUB_RETRY_MAX_DELAY: the longest wait between retries, in seconds."""
    log_format: str = "json"
    """CITYHUB_LOG_FORMAT: json (one object per line, for the log pipeline) or plain."""
    log_level: str = "INFO"
    """CITYHUB_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR."""
    metrics_port: int = 9464
    """CITYHUB_METRICS_PORT: TCP port of the Prometheus /metrics endpoint; 0 turns it off."""
    health_port: int = 8080
    """CITYHUB_HEALTH_PORT: TCP port of the /healthz liveness endpoint; 0 turns it off."""
    worker_limit: int = 0
    """CITYHUB_WORKER_LIMIT: most requests reconciled at once; 0 means no limit."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            namespaces=_names(env, "CITYHUB_NAMESPACES"),
            components=_names(env, "CITYHUB_COMPONENTS"),
            drift_interval=_number(env, "CITYHUB_DRIFT_INTERVAL", cls.drift_interval, minimum=1.0),
            retry_base_delay=_number(env, "CITYHUB_RETRY_BASE_DELAY", cls.retry_base_delay, minimum=0.1),
            retry_max_delay=_number(env, "CITYHUB_RETRY_MAX_DELAY", cls.retry_max_delay, minimum=1.0),
            log_format=_choice(env, "CITYHUB_LOG_FORMAT", cls.log_format, ("json", "plain")),
            log_level=_choice(env, "CITYHUB_LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
            metrics_port=_port(env, "CITYHUB_METRICS_PORT", cls.metrics_port),
            health_port=_port(env, "CITYHUB_HEALTH_PORT", cls.health_port),
            worker_limit=_integer(env, "CITYHUB_WORKER_LIMIT", cls.worker_limit),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _raw(env, name)
    if raw is None:
        return ()
    items = tuple(i.strip() for i in raw.split(",") if i.strip())
    bad = [i for i in items if not (i.replace("-", "").isalnum() and i.islower() and len(i) <= 63)]
    if bad:
        raise ValueError(f"Invalid {name}={raw}: needs to be a comma-separated list of lowercase names")
    return items


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also false for NaN
        raise ValueError(f"Invalid {name}={raw}: needs to be a number of seconds, at least {minimum:g}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValueError(f"Invalid {name}={raw}: needs to be a non-negative integer")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _integer(env, name, default)
    if value > 65535:
        raise ValueError(f"Invalid {name}={value}: needs to be a TCP port (1-65535) or 0 to turn it off")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ValueError(f"Invalid {name}={raw}: needs to be one of {', '.join(choices)}")
