"""Outcome metrics: what departments experience, not what the operator does.

    readiness     every request's state (ready, down, pending) counted by department x type x offering
    incidents     a component that was ready and becomes down opens an incident; ready again resolves it,
                  and the time to resolve is observed
    provisioning  request → Ready latency, observed once per request
    feedback      ComponentFeedback ratings, aggregated per department and component type

State lives in this process: on a restart the operator rebuilds it from the requests' status (kopf resumes
every object), so gauges are right again within one pass; an incident open across a restart is counted
again as opened by the new process only if its component is still down when it is probed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cityhub_operator import conditions, metrics
from cityhub_operator.conditions import READY

READY_STATE, DOWN, PENDING = "ready", "down", "pending"
STATES = (READY_STATE, DOWN, PENDING)
Labels = tuple[str, str, str]
"""(department, component_type, offering): the only dimensions outcome metrics have."""


@dataclass
class _Component:
    labels: Labels
    condition_ready: bool = False
    probe_ok: bool = True
    was_ready: bool = False
    down_since: float | None = None

    @property
    def state(self) -> str:
        if self.condition_ready and self.probe_ok:
            return READY_STATE
        return DOWN if self.was_ready else PENDING


def labels_of(component_type: str, body: Mapping[str, Any]) -> Labels:
    meta, spec = body["metadata"], body.get("spec") or {}
    return (str(meta["namespace"]), component_type, str(spec.get("offering") or ""))


def _key(component_type: str, body: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = body["metadata"]
    return (component_type, str(meta["namespace"]), str(meta["name"]))


class Outcomes:
    """In-memory state of every request this process serves, mirrored into the outcome metrics."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._components: dict[tuple[str, str, str], _Component] = {}
        self._known: set[Labels] = set()

    def _initialise(self, labels: Labels) -> None:
        """Create every series of a new label set at zero, so rules never divide by a missing series."""
        if labels in self._known:
            return
        self._known.add(labels)
        for state in STATES:
            metrics.COMPONENTS.labels(*labels, state)
        for result in ("success", "failure"):
            metrics.PROBES.labels(*labels, result)
        for zone in ("satisfied", "tolerating", "frustrated"):
            metrics.APDEX.labels(*labels, zone)
        metrics.INCIDENTS_OPENED.labels(*labels)
        metrics.INCIDENTS_RESOLVED.labels(*labels)
        # Histograms too: increase() cannot see a series' first sample, so the first incident resolved
        # (or probe timed) would be lost to the SLIs if its series appeared with it.
        metrics.INCIDENT_RESOLUTION_TIME.labels(*labels)
        metrics.PROBE_TIME.labels(*labels)
        metrics.PROVISIONING_TIME.labels(*labels)

    def _update(self, key: tuple[str, str, str], labels: Labels, change: Callable[[_Component], None]) -> str:
        self._initialise(labels)
        component = self._components.get(key)
        if component is None:
            component = self._components[key] = _Component(labels)
            before = None
        else:
            before = component.state
            metrics.COMPONENTS.labels(*component.labels, before).dec()
            if component.labels != labels:  # the offering changed: its history moves with it
                component.labels = labels
        change(component)
        after = component.state
        if after == READY_STATE:
            component.was_ready = True
        metrics.COMPONENTS.labels(*labels, after).inc()
        now = self.clock()
        if before == READY_STATE and after == DOWN:
            component.down_since = now
            metrics.INCIDENTS_OPENED.labels(*labels).inc()
        elif before == DOWN and after == READY_STATE:
            if component.down_since is not None:
                metrics.INCIDENT_RESOLUTION_TIME.labels(*labels).observe(now - component.down_since)
            component.down_since = None
            metrics.INCIDENTS_RESOLVED.labels(*labels).inc()
        return after

    def condition(self, component_type: str, body: Mapping[str, Any], status: Mapping[str, Any]) -> str:
        """After a reconcile (or on resume): the Ready condition in `status`, else in the body's status."""
        conds = status.get("conditions") or (body.get("status") or {}).get("conditions")
        ready = conditions.is_true(conds, READY)

        def change(c: _Component) -> None:
            c.condition_ready = ready
            if not ready:
                c.probe_ok = True  # a request that is not Ready is not probed; its next probe decides

        return self._update(_key(component_type, body), labels_of(component_type, body), change)

    def probed(self, component_type: str, body: Mapping[str, Any], ok: bool) -> str:
        """After a black-box probe of a Ready request."""

        def change(c: _Component) -> None:
            c.condition_ready = True
            c.probe_ok = ok

        return self._update(_key(component_type, body), labels_of(component_type, body), change)

    def provisioned(self, component_type: str, body: Mapping[str, Any], created_at: int) -> None:
        """The request became Ready for the first time: observe request → Ready latency."""
        self._initialise(labels_of(component_type, body))
        if created_at > 0:
            elapsed = max(0.0, time.time() - created_at)
            metrics.PROVISIONING_TIME.labels(*labels_of(component_type, body)).observe(elapsed)

    def forget(self, component_type: str, body: Mapping[str, Any]) -> None:
        """The request is gone: it no longer counts in any state (an open incident ends unresolved)."""
        component = self._components.pop(_key(component_type, body), None)
        if component is not None:
            metrics.COMPONENTS.labels(*component.labels, component.state).dec()

    def state(self, component_type: str, namespace: str, name: str) -> str | None:
        component = self._components.get((component_type, namespace, name))
        return component.state if component else None


class Feedback:
    """ComponentFeedback ratings, kept per object (uid) and summed per department and component type.

    Only served component types are counted, so a department cannot add label values at will.
    """

    def __init__(self, component_types: Iterable[str]) -> None:
        self.component_types = frozenset(component_types)
        self._ratings: dict[str, tuple[str, str, int]] = {}

    def _publish(self, department: str, component_type: str) -> None:
        ratings = [r for d, t, r in self._ratings.values() if (d, t) == (department, component_type)]
        metrics.FEEDBACK_COUNT.labels(department, component_type).set(len(ratings))
        metrics.FEEDBACK_SUM.labels(department, component_type).set(sum(ratings))

    def record(self, uid: str, department: str, spec: Mapping[str, Any]) -> bool:
        """Count one feedback object (again, if it changed); returns whether it counts."""
        old = self._ratings.pop(uid, None)
        if old:
            self._publish(old[0], old[1])
        component_type, rating = spec.get("componentType"), spec.get("rating")
        if component_type not in self.component_types or not isinstance(rating, int) or not 1 <= rating <= 5:
            return False
        self._ratings[uid] = (department, str(component_type), rating)
        self._publish(department, str(component_type))
        return True

    def remove(self, uid: str) -> None:
        old = self._ratings.pop(uid, None)
        if old:
            self._publish(old[0], old[1])


OUTCOMES = Outcomes()
"""The process's tracker: reconcile.py, handlers.py and probes.py report to it."""
