"""Operator settings: loaded once at startup from CITYHUB_* environment variables through the one settings
idiom (cityhub_api.settings.Env), validated with messages that say what a value needs to be. Driver settings
(CITYHUB_NATS_*, …) belong to their drivers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api.settings import Env


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """CITYHUB_NAMESPACES: comma-separated namespaces (departments) to serve; empty serves every namespace."""
    components: tuple[str, ...] = ()
    """CITYHUB_COMPONENTS: comma-separated component types to serve (e.g. messaging); empty serves every
    registered type (component_types/)."""
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
        e = Env(env)
        return cls(
            namespaces=e.names("CITYHUB_NAMESPACES"),
            components=e.names("CITYHUB_COMPONENTS"),
            drift_interval=e.number("CITYHUB_DRIFT_INTERVAL", cls.drift_interval, minimum=1.0),
            retry_base_delay=e.number("CITYHUB_RETRY_BASE_DELAY", cls.retry_base_delay, minimum=0.1),
            retry_max_delay=e.number("CITYHUB_RETRY_MAX_DELAY", cls.retry_max_delay, minimum=1.0),
            log_format=e.choice("CITYHUB_LOG_FORMAT", cls.log_format, ("json", "plain")),
            log_level=e.choice("CITYHUB_LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
            metrics_port=e.port("CITYHUB_METRICS_PORT", cls.metrics_port),
            health_port=e.port("CITYHUB_HEALTH_PORT", cls.health_port),
            worker_limit=e.integer("CITYHUB_WORKER_LIMIT", cls.worker_limit),
        )
