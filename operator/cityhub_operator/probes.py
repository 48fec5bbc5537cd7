"""Black-box probes: every Ready request of a driver that implements `Prober` is used, on a timer, the way
its department uses it — with the credentials in the request's own Secret. The Secret is the department's to
write, so a driver takes only credentials from it, never an endpoint (driver.Prober.probe: no SSRF).

Each probe yields success or failure (cityhub_probe_total), its duration (cityhub_probe_duration_seconds),
an Apdex zone against the offering's thresholds (catalog spec.apdex), and moves the component between
ready and down (outcomes.py: incidents). The department sees it too, with `kubectl get` alone: a failed
probe turns Ready to False with reason ProbeFailed and the error (only on that change: one status write per
transition), and the next passing probe turns it back to True — a ProbeFailed request keeps being probed.
Settings, from the environment:

    CITYHUB_PROBE_INTERVAL     seconds between probes of one component (default 30; 0 turns probes off)
    CITYHUB_PROBE_TIMEOUT      seconds a probe may take before it counts as failed (default 10)
    CITYHUB_PROBE_CONCURRENCY  most probes under way at once (default 4)

Probes are paced so that thousands of requests cannot starve their own reconciles: each request's first
probe comes a random 0.5-1.5 intervals after it is seen (a request just reconciled was just proven, and
requests created or resumed together do not probe together ever after), and at most
CITYHUB_PROBE_CONCURRENCY run at once; the rest wait their turn, which stretches the interval when there are
more components than the probes can visit. Measured (bench/operator-scale.md): unpaced, 1000 new requests
drew 3200 probe timer runs in the time of their 565 first reconciles, and NATS refused the connection storm.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import kopf

from cityhub_api.api import FEEDBACK_PLURAL, GROUP, VERSION
from cityhub_api.registry import ComponentType
from cityhub_api.settings import Env
from cityhub_operator import conditions, metrics
from cityhub_operator.conditions import READY
from cityhub_operator.driver import BackendError, Driver, Prober, Request
from cityhub_operator.outcomes import OUTCOMES, Outcomes, labels_of

log = logging.getLogger("cityhub_operator.probes")
DEFAULT_APDEX_THRESHOLD = 0.5
"""Seconds; used when an offering sets no spec.apdex.thresholdSeconds."""
PROBE_FAILED = "ProbeFailed"
"""Ready's reason while the component fails its probe (it was provisioned, and is probed again)."""


@dataclass(frozen=True)
class ProbeSettings:
    interval: float = 30.0
    """CITYHUB_PROBE_INTERVAL: seconds between probes of one component; 0 turns probes off."""
    timeout: float = 10.0
    """CITYHUB_PROBE_TIMEOUT: seconds a probe may take before it counts as failed."""
    concurrency: int = 4
    """CITYHUB_PROBE_CONCURRENCY: most probes under way at once (each is a backend connection and a Secret
    read); the others wait their turn."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProbeSettings:
        e = Env(env)
        return cls(
            interval=e.number("CITYHUB_PROBE_INTERVAL", cls.interval, minimum=0.0),
            timeout=e.number("CITYHUB_PROBE_TIMEOUT", cls.timeout, minimum=0.0, exclusive=True),
            concurrency=e.integer("CITYHUB_PROBE_CONCURRENCY", cls.concurrency, minimum=1, maximum=1024),
        )

    def first_delay(self, **_: object) -> float:
        """Seconds before a request's first probe: 0.5-1.5 intervals, at random (kopf's initial_delay)."""
        return self.interval * random.uniform(0.5, 1.5)


def apdex_zone(seconds: float | None, offering: Mapping[str, Any] | None) -> str:
    """satisfied (<= T), tolerating (<= the tolerating bound, default 4T) or frustrated (slower or failed)."""
    if seconds is None:
        return "frustrated"
    apdex = (offering or {}).get("apdex") or {}
    threshold = float(apdex.get("thresholdSeconds") or DEFAULT_APDEX_THRESHOLD)
    tolerating = float(apdex.get("toleratingSeconds") or 4 * threshold)
    if seconds <= threshold:
        return "satisfied"
    return "tolerating" if seconds <= tolerating else "frustrated"


SecretReader = Callable[[str, str], Mapping[str, str] | None]


def read_secret(namespace: str, name: str) -> Mapping[str, str] | None:
    """The Secret's data, decoded; None if it does not exist."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from cityhub_operator.kube import api_client

    global _core
    if _core is None:
        _core = client.CoreV1Api(api_client())
    try:
        # Bounded: the probe's own timeout covers only the driver's part.
        secret = _core.read_namespaced_secret(name, namespace, _request_timeout=(10, 10))
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


_core: Any = None


@dataclass
class ProbeRunner:
    ctype: ComponentType
    driver: Driver
    request_of: Callable[[Mapping[str, Any]], Request]
    settings: ProbeSettings
    secrets: SecretReader = read_secret
    outcomes: Outcomes = OUTCOMES

    def __post_init__(self) -> None:
        self._turns = asyncio.Semaphore(self.settings.concurrency)

    async def _turn(self, stopped: Any) -> bool:
        """Wait for a turn to probe; False when `stopped` (kopf's flag of the timer: its request is being
        deleted) comes first. kopf removes a deleted request's finalizer only once its timers have returned,
        and looks again only a minute later (settings.background.cancellation_polling)."""
        if stopped is None:
            await self._turns.acquire()
            return True
        turn = asyncio.ensure_future(self._turns.acquire())
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait((turn, stop), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the operator stops: no turn may be left taken
            stop.cancel()
            if not turn.cancel() and not turn.cancelled() and turn.exception() is None:
                self._turns.release()
            raise
        stop.cancel()
        if not turn.done():
            turn.cancel()  # Semaphore.acquire passes a turn it was woken for on to the next waiter
            return False
        if stopped:
            self._turns.release()
            return False
        return True

    async def probe(
        self,
        body: Mapping[str, Any],
        offering: Mapping[str, Any] | None,
        stopped: Any = None,
        patch: MutableMapping[str, Any] | None = None,
    ) -> str | None:
        """Probe one request if it is Ready (or failed its last probe); returns its state afterwards, or
        None when not probed (also when `stopped`, kopf's stop flag of the timer, is set before its turn
        comes). A change of Ready goes to `patch` (the request's status patch)."""
        status, meta = body.get("status") or {}, body["metadata"]
        ready = conditions.get(status.get("conditions"), READY) or {}
        failing = ready.get("status") == "False" and ready.get("reason") == PROBE_FAILED
        if meta.get("deletionTimestamp") or not (ready.get("status") == "True" or failing):
            return None
        if not isinstance(self.driver, Prober):
            return None
        labels = labels_of(self.ctype.name, body)
        secret_name = status.get("connectionSecret") or f"{meta['name']}-connection"
        apdex = (offering or {}).get("apdex") or {}
        metrics.APDEX_THRESHOLD.labels(labels[1], labels[2]).set(
            float(apdex.get("thresholdSeconds") or DEFAULT_APDEX_THRESHOLD)
        )
        if not await self._turn(stopped):
            return None
        try:  # the wait for a turn is not the component's latency: timed from here
            started = time.perf_counter()
            error: str | None = None
            try:
                secret = await asyncio.to_thread(self.secrets, labels[0], secret_name)
                if secret is None:
                    raise BackendError(f"Secret {secret_name} is missing")
                probe = self.driver.probe(self.request_of(body), secret)
                await asyncio.wait_for(probe, self.settings.timeout)
            except (BackendError, TimeoutError) as e:
                error = str(e) or f"no answer within {self.settings.timeout:g}s"
            except Exception as e:  # a probe must never take the timer down; the failure is what we measure
                error = f"{type(e).__name__}: {e}"
            elapsed = time.perf_counter() - started
        finally:
            self._turns.release()
        if error is None:
            metrics.PROBES.labels(*labels, "success").inc()
            metrics.PROBE_TIME.labels(*labels).observe(elapsed)
            metrics.APDEX.labels(*labels, apdex_zone(elapsed, offering)).inc()
        else:
            metrics.PROBES.labels(*labels, "failure").inc()
            metrics.APDEX.labels(*labels, "frustrated").inc()
        before = self.outcomes.state(self.ctype.name, labels[0], meta["name"])
        after = self.outcomes.probed(self.ctype.name, body, error is None)
        if patch is not None and (error is None) == failing:
            patch["conditions"] = self._ready_condition(body, secret_name, error)
        if error is not None and before != after:
            log.warning("probe of %s %s/%s failed: %s", self.ctype.kind, labels[0], meta["name"], error)
        elif error is None and before != after and before is not None:
            log.info("probe of %s %s/%s passes again", self.ctype.kind, labels[0], meta["name"])
        return after

    def _ready_condition(
        self, body: Mapping[str, Any], secret: str, error: str | None
    ) -> list[dict[str, Any]]:
        generation = int(body["metadata"].get("generation") or 0)
        old = (body.get("status") or {}).get("conditions")
        kind = self.ctype.kind
        if error is None:
            message = f"{kind} is ready; endpoints and credentials are in Secret {secret}"
            return conditions.with_condition(old, READY, True, "Available", message, generation)
        message = (
            f"{kind} does not work with the credentials in Secret {secret}: {error}. The operator probes it "
            f"again every {self.settings.interval:g}s; Ready returns when a probe passes."
        )
        return conditions.with_condition(old, READY, False, PROBE_FAILED, message[:1024], generation)


def register(
    registry: kopf.OperatorRegistry,
    ctype: ComponentType,
    driver: Driver,
    request_of: Callable[[Mapping[str, Any]], Request],
    settings: ProbeSettings | None = None,
) -> ProbeRunner | None:
    """Add a probe timer for `ctype` if its driver implements Prober and probes are on."""
    settings = settings or ProbeSettings.from_env()
    if settings.interval <= 0 or not isinstance(driver, Prober):
        return None
    runner = ProbeRunner(ctype, driver, request_of, settings)

    @kopf.timer(
        GROUP,
        VERSION,
        ctype.plural,
        registry=registry,
        id="probe",
        interval=settings.interval,
        initial_delay=settings.first_delay,
    )
    async def probe(
        body: kopf.Body,
        patch: kopf.Patch,
        offerings: kopf.Index[str, Any],
        stopped: kopf.DaemonStopped,
        **_: Any,
    ) -> None:
        """Use the component as its department does; the outcome goes to metrics, a change of Ready to
        the status."""
        offering = next(iter(offerings.get((body.get("spec") or {}).get("offering", ""), [])), None)
        await runner.probe(body, offering, stopped, patch.status)

    return runner


def register_feedback(registry: kopf.OperatorRegistry, component_types: list[str]) -> None:
    """Aggregate ComponentFeedback ratings into cityhub_feedback_* (no finalizer: nothing to clean up)."""
    from cityhub_operator.outcomes import Feedback

    feedback = Feedback(component_types)

    @kopf.on.event(GROUP, VERSION, FEEDBACK_PLURAL, registry=registry, id="feedback")
    def seen(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        """Count the rating (again when it changes; not at all once deleted)."""
        uid = body["metadata"]["uid"]
        if event.get("type") == "DELETED" or body["metadata"].get("deletionTimestamp"):
            feedback.remove(uid)
        else:
            feedback.record(uid, body["metadata"]["namespace"], body.get("spec") or {})
