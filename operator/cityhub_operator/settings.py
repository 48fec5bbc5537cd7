"""Operator settings: loaded once at startup from CITYHUB_* environment variables through the one settings
idiom (cityhub_api.settings.Env), validated with messages that say what a value needs to be. Driver settings
(CITYHUB_NATS_*, …) belong to their drivers.

Watch timeouts: kopf leaves them unset by default, and a watch that dies silently then stops all reconciling
(kopf #1276); with them, the API server ends every watch after `watch_server_timeout` and kopf reconnects,
so a healthy watch restarts at least that often — what the watchdog (watchdog.py) checks for /healthz.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api.settings import Env, SettingError


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
    api_writers: int = 0
    """CITYHUB_API_WRITERS: threads, and connections to the API server, for the operator's own Secret writes;
    0 sizes them like asyncio's default pool (CPUs + 4, at most 32). Measured on 2 cores (300 requests, A/B
    twice): 32 writers were slower than 6 (26.6 and 16.7 s to all Ready against 22.8 and 11.7 s) — the
    handlers wait on CPU there, not on the pool; a host with more cores may want more."""
    watch_server_timeout: int = 120
    """CITYHUB_WATCH_SERVER_TIMEOUT: seconds after which the API server ends each watch request (kopf
    reconnects at once, resuming from the last resourceVersion)."""
    watch_client_timeout: float = 150.0
    """CITYHUB_WATCH_CLIENT_TIMEOUT: seconds after which the operator itself abandons a watch request, in case
    the server's end never arrives (a silently dropped connection); at least CITYHUB_WATCH_SERVER_TIMEOUT,
    30 more by default."""
    api_connect_timeout: float = 10.0
    """CITYHUB_API_CONNECT_TIMEOUT: seconds any request (a watch or a call) may take to connect to the API
    server."""
    api_timeout: float = 60.0
    """CITYHUB_API_TIMEOUT: seconds an API call other than a watch may take (kopf's listings, patches and
    events, the operator's Secret writes): a call stuck on a dead connection fails and is retried instead of
    holding its request's reconcile for ever."""
    watch_grace: float = 30.0
    """CITYHUB_WATCH_GRACE: /healthz fails when a watch has not (re)started for
    CITYHUB_WATCH_CLIENT_TIMEOUT plus this many seconds (reconnect backoff, a slow listing)."""
    peering: str = ""
    """CITYHUB_PEERING: name of the ClusterKopfPeering object the operator's replicas elect their leader in;
    empty runs one standalone operator (the embedded default). The stack sets it for its Deployment."""
    peering_priority: int = 0
    """CITYHUB_PEERING_PRIORITY: this replica's priority (the highest live one leads); 0 derives one from the
    start time, so the oldest replica leads and replicas never tie. A larger one (up to 2⁶³-1) takes over,
    e.g. a developer's operator."""
    peering_lifetime: int = 20
    """CITYHUB_PEERING_LIFETIME: seconds a replica's keep-alive counts; a standby takes over at most this long
    after the leader's last keep-alive (keep-alives go every lifetime minus 5-10 seconds)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        e = Env(env)
        # Whole seconds: the API server's timeoutSeconds parameter is an integer.
        server_timeout = e.integer("CITYHUB_WATCH_SERVER_TIMEOUT", cls.watch_server_timeout, minimum=1)
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
            api_writers=e.integer("CITYHUB_API_WRITERS", cls.api_writers, minimum=0, maximum=256),
            watch_server_timeout=server_timeout,
            watch_client_timeout=e.number(
                "CITYHUB_WATCH_CLIENT_TIMEOUT",
                server_timeout + (cls.watch_client_timeout - cls.watch_server_timeout),
                minimum=server_timeout,
            ),
            api_connect_timeout=e.number(
                "CITYHUB_API_CONNECT_TIMEOUT", cls.api_connect_timeout, minimum=0, exclusive=True
            ),
            api_timeout=e.number("CITYHUB_API_TIMEOUT", cls.api_timeout, minimum=1.0),
            watch_grace=e.number("CITYHUB_WATCH_GRACE", cls.watch_grace, minimum=1.0),
            peering=_peering_name(e),
            peering_priority=e.integer("CITYHUB_PEERING_PRIORITY", cls.peering_priority, maximum=2**63 - 1),
            peering_lifetime=e.integer("CITYHUB_PEERING_LIFETIME", cls.peering_lifetime, minimum=10),
        )

    @property
    def watch_stale_after(self) -> float:
        """Seconds without a (re)started watch after which /healthz reports the watch dead."""
        return self.watch_client_timeout + self.watch_grace


def _peering_name(e: Env) -> str:
    names = e.names("CITYHUB_PEERING")
    if len(names) > 1:
        raise SettingError(f"Invalid CITYHUB_PEERING={','.join(names)}: needs to be one object name")
    return names[0] if names else ""
