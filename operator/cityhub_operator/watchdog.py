"""Watch liveness for /healthz: a watch that died must make the operator unhealthy (kopf #1276).

With the operator's watch timeouts (settings.py) a healthy watch never lasts long: the API server ends each
watch request after CITYHUB_WATCH_SERVER_TIMEOUT, the operator abandons one after
CITYHUB_WATCH_CLIENT_TIMEOUT, kopf itself after 70 s without even a bookmark, and kopf then reconnects at
once. So every watched resource sees a new watch request answered at least once per client timeout. The
login handler hands kopf an HTTP session of our own (kopf.AiohttpSession, kopf's documented way to bring a
session) whose aiohttp trace tells the Watchdog each time a watch request is answered; the probe handler
(kopf.on.probe, served at /healthz) fails when a resource's last answered watch is older than the client
timeout plus CITYHUB_WATCH_GRACE — its watch task is gone, or cannot reach the API server.

A standby replica (peering: a live peer with a priority at least ours) is paused by kopf, which closes its
resource watches on purpose; only the peering watch keeps running. Its health then needs only that watch,
and when it takes over every resource gets a fresh grace period to reconnect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import kopf
from yarl import URL

from cityhub_operator.settings import OperatorSettings

PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL = "kopf.dev", "v1", "clusterkopfpeerings"
PEERING_KEY = f"{PEERING_PLURAL}.{PEERING_GROUP}"
"""The watch a standby keeps: the ClusterKopfPeering objects, through which it learns the leader is gone."""

STANDALONE, LEADER, STANDBY = "standalone", "leader", "standby"


def watch_key(url: URL) -> str | None:
    """`<plural>.<group>` (`<plural>` for the core group), `@<namespace>` appended for a namespaced watch, for
    a watch request's URL; None for any other request."""
    if url.query.get("watch") != "true":
        return None
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1] if len(parts) > 1 else "", parts[3:]
    else:
        return None
    if len(rest) == 1:
        namespace, plural = "", rest[0]
    elif len(rest) == 3 and rest[0] == "namespaces":
        namespace, plural = rest[1], rest[2]
    else:
        return None  # one object's path, not a collection
    key = f"{plural}.{group}" if group else plural
    return f"{key}@{namespace}" if namespace else key


@dataclass(frozen=True)
class Report:
    """What /healthz shows: the replica's role and, per watched resource, seconds since its watch
    restarted."""

    role: str
    ages: Mapping[str, float]
    stale: tuple[str, ...]
    stale_after: float

    @property
    def healthy(self) -> bool:
        return not self.stale

    @property
    def problem(self) -> str:
        if self.stale == ("*",):
            return f"no watch has started within {self.stale_after:g}s of the operator's start"
        return (
            f"watches dead: {', '.join(self.stale)} not restarted for over {self.stale_after:g}s "
            "(the API server unreachable, or a watch task gone)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "staleAfterSeconds": self.stale_after,
            "watchAgeSeconds": {k: round(v, 1) for k, v in sorted(self.ages.items())},
        }


@dataclass
class Watchdog:
    """The last time each watched resource's watch request was answered, and the verdict on them."""

    stale_after: float
    """Seconds a healthy watch can go without restarting (client timeout + grace)."""
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _since: float = field(init=False)
    _role: str = STANDALONE

    def __post_init__(self) -> None:
        self._since = self.clock()

    def started(self, key: str) -> None:
        """A watch request of `key` was answered: its watch is (re)established."""
        self._last[key] = self.clock()

    def check(self, role: str | None = STANDALONE) -> Report:
        """The verdict now, for a replica in `role` (None: unknown, as last seen). A standby (paused by kopf)
        needs only its peering watch; on taking over, every resource gets a fresh `stale_after`."""
        now = self.clock()
        role = role or self._role
        standby = role == STANDBY
        if self._role == STANDBY and not standby:
            self._since = now
            self._last = {k: now for k in self._last}
        self._role = role
        ages = {k: now - t for k, t in self._last.items()}
        needed = {k: a for k, a in ages.items() if not standby or k == PEERING_KEY}
        stale = tuple(sorted(k for k, a in needed.items() if a > self.stale_after))
        if not ages and now - self._since > self.stale_after:
            stale = ("*",)
        return Report(role, ages, stale, self.stale_after)

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp trace that reports every answered watch request to `started`."""

        async def on_request_end(
            session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            key = watch_key(params.url)
            if key is not None and params.response.status == 200:
                self.started(key)

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        return trace


def traced_session(info: kopf.ConnectionInfo, watchdog: Watchdog) -> kopf.AiohttpSession:
    """kopf's own session for `info` (the same connector, TLS, headers and proxy), with the watchdog's trace.

    Must be called in the operator's event loop (the session binds to it); kopf owns and closes it.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        trace_configs=[watchdog.trace_config()],
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )


# -- peering: who leads ------------------------------------------------------------------------------


class PeeringMissing(Exception):
    """The ClusterKopfPeering object does not exist: kopf stays paused until it does."""


@dataclass(frozen=True)
class Peering:
    """This replica in its leader election (kopf peering: the live replica of highest priority leads, the
    others are paused), or a standalone operator when `name` is empty."""

    name: str
    """The ClusterKopfPeering object (CITYHUB_PEERING); empty: standalone."""
    identity: str
    """This replica's key in the object's status: POD_ID (kopf's convention) or host/pid — in a pod the host
    name is the pod's name."""
    priority: int
    lifetime: int
    """Seconds each keep-alive counts (CITYHUB_PEERING_LIFETIME)."""

    @classmethod
    def standalone(cls) -> Peering:
        return cls(name="", identity="", priority=0, lifetime=0)

    @classmethod
    def of(
        cls, settings: OperatorSettings, env: Mapping[str, str] | None = None, started: float | None = None
    ) -> Peering:
        """From the settings. A priority of 0 is derived from the start time (`started`, now): the oldest
        replica leads, so a replica that (re)starts joins as a standby instead of taking over from a working
        leader, and a rollout's new pods wait for the old ones to leave. Random low bits break ties between
        replicas started in the same millisecond (a tie pauses them all). Fits in the int64 Kubernetes
        keeps the number in until the year 2109."""
        env = os.environ if env is None else env
        me = env.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"
        started_ms = int((time.time() if started is None else started) * 1000)
        derived = ((1 << 42) - started_ms) << 20 | random.SystemRandom().getrandbits(20)
        return cls(settings.peering, me, settings.peering_priority or derived, settings.peering_lifetime)

    def role(self, peers: Mapping[str, Any], now: dt.datetime) -> str:
        """standby when kopf pauses this replica: another live peer (keep-alive within its lifetime) has a
        priority at least ours; `peers` is the ClusterKopfPeering's status (identity → priority, lifetime,
        lastseen)."""
        if not self.name:
            return STANDALONE
        for peer, info in peers.items():
            if peer == self.identity or not isinstance(info, Mapping):
                continue
            try:
                seen = dt.datetime.fromisoformat(str(info["lastseen"]))
                lifetime = int(info.get("lifetime", 60))
                rank = int(info.get("priority", 0))
            except (KeyError, TypeError, ValueError):
                continue
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=dt.UTC)
            if seen + dt.timedelta(seconds=lifetime) > now and rank >= self.priority:
                return STANDBY
        return LEADER

    def read_peers(self) -> Mapping[str, Any]:
        """The ClusterKopfPeering's status (the peers' keep-alives), read with a short timeout."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        from cityhub_operator.kube import api_client

        global _custom
        if _custom is None:
            _custom = client.CustomObjectsApi(api_client())
        try:
            obj = _custom.get_cluster_custom_object(
                PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, self.name, _request_timeout=3
            )
        except ApiException as e:
            if e.status == 404:
                raise PeeringMissing(
                    f"ClusterKopfPeering {self.name} does not exist, so no replica may lead: create it "
                    "(the stack does) or unset CITYHUB_PEERING"
                ) from e
            raise
        return dict(obj.get("status") or {})


_custom: Any = None


# -- kopf: settings, login, probe ----------------------------------------------------------------------


def configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings, peering: Peering) -> None:
    """API and watch timeouts, and the peering's scope and keep-alive lifetime (called at startup)."""
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_client_timeout
    kopf_settings.watching.connect_timeout = settings.api_connect_timeout
    kopf_settings.networking.connect_timeout = settings.api_connect_timeout
    kopf_settings.networking.request_timeout = settings.api_timeout
    if peering.name:
        # One ClusterKopfPeering whatever namespaces this replica serves (kopf documents the mismatch).
        kopf_settings.peering.clusterwide = True
        kopf_settings.peering.lifetime = peering.lifetime
        kopf_settings.peering.stealth = True  # keep-alives every few seconds would flood the log


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings, peering: Peering) -> Watchdog:
    """The login handler (a traced session) and the `watches` probe of /healthz; returns the watchdog."""
    watchdog = Watchdog(settings.watch_stale_after)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
        """In a pod: the service account; elsewhere: $KUBECONFIG (via the kubernetes client)."""
        info = kopf.login_via_client(**kwargs)
        return traced_session(info, watchdog) if info is not None else None

    @kopf.on.probe(registry=registry, id="watches", errors=kopf.ErrorsMode.PERMANENT)
    async def watches(**_: Any) -> dict[str, Any]:
        """The replica's role and its watches' ages; fails (HTTP 500) when a watch is dead."""
        role: str | None = STANDALONE
        if peering.name:
            try:
                role = peering.role(await asyncio.to_thread(peering.read_peers), dt.datetime.now(dt.UTC))
            except PeeringMissing as e:
                raise kopf.PermanentError(str(e)) from e
            except Exception:  # the API server is unreachable: the watches' ages tell
                role = None
        report = watchdog.check(role)
        if not report.healthy:
            raise kopf.PermanentError(report.problem)
        return report.as_dict()

    return watchdog
