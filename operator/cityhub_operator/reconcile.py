"""Reconciling one component request: the operator's logic, independent of kopf.

The kopf handlers (handlers.py) call `Reconciler.ensure`, `.delete` and `.repair_drift` with the object's
body, a status patch to fill and an event emitter. Outcomes:

    met           backend objects ensured, Secret written, Ready=True/Available, Synced=True
    unmet         the request cannot be met as written (unknown offering, over the plan, backend refuses):
                  Ready=False (or, once provisioned, Synced=False while the last good state keeps serving)
                  with a reason and a message saying what to change; a Warning event; no retry until the
                  spec changes; anything the failed attempt created is removed
    backend down  Synced=False/BackendUnavailable, RetryLater with exponential backoff (kopf retries)
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from cityhub_api import labels
from cityhub_api.registry import ComponentType
from cityhub_operator import conditions, metrics, outcomes, plans
from cityhub_operator.conditions import READY, SYNCED
from cityhub_operator.driver import (
    BackendError,
    Driver,
    Orphaner,
    PermanentBackendError,
    Request,
    Result,
    TemporaryBackendError,
)
from cityhub_operator.kube import SecretConflict
from cityhub_operator.settings import OperatorSettings

LOG = logging.getLogger("cityhub_operator")
Emit = Callable[[str, str, str], None]
"""emit(type, reason, message): posts a Kubernetes Event about the request (Normal or Warning)."""
OfferingLookup = Callable[[str], tuple[Mapping[str, Any] | None, list[str]]]
"""lookup(name) → (the ComponentOffering's spec or None, names of offerings of this component type)."""


class SecretStore(Protocol):
    async def apply(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        owner: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> bool: ...

    async def delete(self, namespace: str, name: str, owner_uid: str) -> None: ...


class RetryLater(Exception):
    """Try the same reconcile again after `delay` seconds (the handler raises kopf.TemporaryError)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def secret_name(body: Mapping[str, Any]) -> str:
    return body.get("spec", {}).get("secretName") or f"{body['metadata']['name']}-connection"


def _created_at(meta: Mapping[str, Any]) -> int:
    stamp = meta.get("creationTimestamp")
    if not stamp:
        return 0
    return int(dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())


@dataclass
class Reconciler:
    ctype: ComponentType
    driver: Driver
    secrets: SecretStore
    settings: OperatorSettings
    log: logging.Logger = LOG

    @property
    def controller(self) -> str:
        return self.ctype.kind

    def backoff(self, retry: int) -> float:
        base = self.settings.retry_base_delay * (2 ** min(retry, 16))
        return min(self.settings.retry_max_delay, base) * random.uniform(0.8, 1.2)

    def request(self, body: Mapping[str, Any], resolved: plans.Resolved | None = None) -> Request:
        meta = body["metadata"]
        spec = body.get("spec") or {}
        return Request(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            department=meta["namespace"],
            spec=spec,
            limits=resolved.limits if resolved else {},
            plan=resolved.plan if resolved else "",
            offering=spec.get("offering", ""),
            created_at=_created_at(meta),
        )

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        finally:
            metrics.BACKEND_TIME.labels(self.controller, operation).observe(time.perf_counter() - started)

    # -- create / update / resume ------------------------------------------------------------------

    async def ensure(
        self,
        body: Mapping[str, Any],
        lookup: OfferingLookup,
        status: MutableMapping[str, Any],
        emit: Emit,
        *,
        retry: int = 0,
    ) -> str:
        """Reconcile the request; fills `status` (a patch). Returns the result label; may raise RetryLater."""
        started = time.perf_counter()
        metrics.IN_FLIGHT.labels(self.controller).inc()
        result = "error"
        try:
            result = await self._ensure(body, lookup, status, emit, retry)
            return result
        except RetryLater:
            result = "retry"
            metrics.RETRIES.labels(self.controller).inc()
            raise
        finally:
            metrics.IN_FLIGHT.labels(self.controller).dec()
            metrics.RECONCILE_TOTAL.labels(self.controller, result).inc()
            metrics.RECONCILE_TIME.labels(self.controller).observe(time.perf_counter() - started)
            outcomes.OUTCOMES.condition(self.ctype.name, body, status)

    async def _ensure(
        self,
        body: Mapping[str, Any],
        lookup: OfferingLookup,
        status: MutableMapping[str, Any],
        emit: Emit,
        retry: int,
    ) -> str:
        meta, spec = body["metadata"], body.get("spec") or {}
        old = body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        provisioned = bool(old.get("backend"))
        offering, known = lookup(spec.get("offering", ""))
        try:
            resolved = plans.resolve(self.ctype, spec, spec.get("offering", ""), offering, known)
        except plans.Unmet as e:
            self._unmet(old, status, emit, generation, provisioned, e.reason, str(e))
            return "unmet"
        request = self.request(body, resolved)
        try:
            outcome: Result = await self._timed("ensure", self.driver.ensure(request))
        except TemporaryBackendError as e:
            delay = self.backoff(retry)
            message = f"{e}; retrying in {delay:.0f}s"
            conds = conditions.with_condition(
                old.get("conditions"), SYNCED, False, "BackendUnavailable", message, generation
            )
            if not provisioned:
                conds = conditions.with_condition(
                    conds, READY, False, "BackendUnavailable", message, generation
                )
            status["conditions"] = conds
            if retry == 0:
                emit("Warning", "BackendUnavailable", message)
            self.log.warning("backend unavailable for %s: %s", request.key, message)
            raise RetryLater(message, delay) from e
        except PermanentBackendError as e:
            if not provisioned:
                await self._rollback(request, retry)
            self._unmet(old, status, emit, generation, provisioned, e.reason, str(e))
            return "unmet"
        except Exception as e:  # a driver bug: the department sees it on its request, ops in the log
            delay = self.backoff(retry)
            message = (
                f"the operator failed on this request ({type(e).__name__}); retrying in {delay:.0f}s. "
                "Nothing to change on your side: the platform team sees the error in the operator's log"
            )
            conds = conditions.with_condition(
                old.get("conditions"), SYNCED, False, "InternalError", message, generation
            )
            if not provisioned:
                conds = conditions.with_condition(conds, READY, False, "InternalError", message, generation)
            status["conditions"] = conds
            if retry == 0:
                emit("Warning", "InternalError", message)
            self.log.exception("driver failed on %s", request.key)
            raise RetryLater(message, delay) from e
        name = secret_name(body)
        secret_labels = {labels.COMPONENT_TYPE: self.ctype.name, labels.REQUEST: meta["name"]}
        started = time.perf_counter()
        try:
            secret_changed = await self.secrets.apply(
                request.namespace, name, {**outcome.endpoints, **outcome.credentials}, body, secret_labels
            )
        except SecretConflict as e:
            self._unmet(old, status, emit, generation, provisioned, "SecretConflict", str(e))
            return "unmet"
        finally:
            metrics.KUBERNETES_TIME.labels(self.controller, "secret").observe(time.perf_counter() - started)
        was_ready = conditions.is_true(old.get("conditions"), READY, generation) and conditions.is_true(
            old.get("conditions"), SYNCED, generation
        )
        conds = conditions.with_condition(
            old.get("conditions"),
            READY,
            True,
            "Available",
            f"{self.ctype.kind} is ready; endpoints and credentials are in Secret {name}",
            generation,
        )
        conds = conditions.with_condition(
            conds, SYNCED, True, "ReconcileSuccess", f"generation {generation} applied", generation
        )
        status.update(
            {
                "observedGeneration": generation,
                "conditions": conds,
                "plan": resolved.plan,
                "limits": resolved.shown,
                "connectionSecret": name,
                "endpoints": dict(outcome.endpoints),
                "backend": dict(outcome.backend),
            }
        )
        if not was_ready:
            verb = "Updated" if provisioned else "Provisioned"
            if not provisioned:
                outcomes.OUTCOMES.provisioned(self.ctype.name, body, request.created_at)
            emit(
                "Normal",
                verb,
                f"{self.ctype.kind} ready on plan {resolved.plan}; credentials in Secret {name}",
            )
            self.log.info("%s %s %s (plan %s)", verb.lower(), self.ctype.kind, request.key, resolved.plan)
        elif secret_changed:
            emit("Normal", "SecretUpdated", f"Secret {name} was rewritten to match the backend")
        return "success"

    async def _rollback(self, request: Request, retry: int) -> None:
        """Remove whatever a failed first attempt created, so nothing half-made is left behind."""
        try:
            await self._timed("delete", self.driver.delete(request))
        except BackendError as e:
            raise RetryLater(f"cleaning up after a refused request: {e}", self.backoff(retry)) from e

    def _unmet(
        self,
        old: Mapping[str, Any],
        status: MutableMapping[str, Any],
        emit: Emit,
        generation: int,
        provisioned: bool,
        reason: str,
        message: str,
    ) -> None:
        conds = conditions.with_condition(old.get("conditions"), SYNCED, False, reason, message, generation)
        if not provisioned:
            conds = conditions.with_condition(conds, READY, False, reason, message, generation)
        before = conditions.get(old.get("conditions"), SYNCED) or {}
        status["conditions"] = conds
        status["observedGeneration"] = generation
        if (before.get("reason"), before.get("message"), before.get("observedGeneration")) != (
            reason,
            message,
            generation,
        ):
            emit("Warning", reason, message)
            self.log.warning("cannot meet %s: %s: %s", self.ctype.kind, reason, message)

    # -- delete ------------------------------------------------------------------------------------

    async def delete(
        self, body: Mapping[str, Any], status: MutableMapping[str, Any], emit: Emit, *, retry: int = 0
    ) -> None:
        """deletionPolicy Delete: the driver deletes the backend objects. Orphan: they are kept, and a driver
        that implements Orphaner revokes the request's credentials (nothing it granted outlives it)."""
        meta, spec = body["metadata"], body.get("spec") or {}
        request = self.request(body)
        policy = spec.get("deletionPolicy", "Delete")
        kept = dict((body.get("status") or {}).get("backend") or {})
        if policy != "Orphan":
            await self._release("delete", self.driver.delete(request), body, status, emit, retry)
            emit("Normal", "Deleted", "backend objects deleted and credentials revoked")
        elif isinstance(self.driver, Orphaner):
            await self._release("orphan", self.driver.orphan(request), body, status, emit, retry)
            emit(
                "Normal",
                "Orphaned",
                f"deletionPolicy Orphan: backend objects {kept} are kept, credentials revoked",
            )
        else:
            emit("Normal", "Orphaned", f"deletionPolicy Orphan: backend objects {kept} are kept")
        await self.secrets.delete(request.namespace, secret_name(body), meta["uid"])
        outcomes.OUTCOMES.forget(self.ctype.name, body)
        self.log.info("deleted %s %s (deletionPolicy %s)", self.ctype.kind, request.key, policy)

    async def _release(
        self,
        operation: str,
        call: Any,
        body: Mapping[str, Any],
        status: MutableMapping[str, Any],
        emit: Emit,
        retry: int,
    ) -> None:
        """Await the driver's delete (or orphan); on a backend error the finalizer stays, retried later."""
        try:
            await self._timed(operation, call)
        except BackendError as e:
            delay = self.backoff(retry)
            message = f"cannot delete the backend objects yet: {e}; retrying in {delay:.0f}s"
            status["conditions"] = conditions.with_condition(
                (body.get("status") or {}).get("conditions"),
                READY,
                False,
                "DeleteFailed",
                message,
                int(body["metadata"].get("generation") or 0),
            )
            if retry == 0:
                emit("Warning", "DeleteFailed", message)
            metrics.RETRIES.labels(self.controller).inc()
            raise RetryLater(message, delay) from e

    # -- drift -------------------------------------------------------------------------------------

    async def repair_drift(
        self, body: Mapping[str, Any], lookup: OfferingLookup, status: MutableMapping[str, Any], emit: Emit
    ) -> bool:
        """For a Ready, Synced request: compare the backend with it and re-ensure if they differ."""
        meta, old = body["metadata"], body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        synced = conditions.get(old.get("conditions"), SYNCED) or {}
        # A repair that met an unavailable backend left Synced=False/BackendUnavailable and no kopf handler
        # retries it (the spec did not change): the timer keeps trying until the backend is back.
        interrupted = synced.get("status") == "False" and synced.get("reason") == "BackendUnavailable"
        if not (
            old.get("backend")
            and (interrupted or conditions.is_true(old.get("conditions"), SYNCED, generation))
        ):
            return False  # failing or in-progress requests are retried by their own handlers
        if meta.get("deletionTimestamp"):
            return False
        offering, known = lookup((body.get("spec") or {}).get("offering", ""))
        try:
            resolved = plans.resolve(
                self.ctype, body.get("spec") or {}, body["spec"]["offering"], offering, known
            )
        except plans.Unmet:
            return False  # the next spec change reports it; the backend keeps its last good state
        if not interrupted:
            try:
                seen = await self._timed("observe", self.driver.observe(self.request(body, resolved)))
            except BackendError as e:
                self.log.warning("drift check of %s/%s skipped: %s", meta["namespace"], meta["name"], e)
                return False
            if seen.in_sync:
                return False
            metrics.DRIFT_REPAIRS.labels(self.controller).inc()
            emit("Warning", "DriftDetected", "; ".join(seen.drift) + " — repairing")
            self.log.warning("drift on %s/%s: %s", meta["namespace"], meta["name"], "; ".join(seen.drift))
        try:
            await self.ensure(body, lookup, status, emit)
        except RetryLater as e:
            self.log.warning("drift repair of %s/%s postponed: %s", meta["namespace"], meta["name"], e)
            return False
        emit("Normal", "DriftRepaired", "backend objects recreated to match the request")
        return True
