"""kopf handlers: thin adapters from kopf's causes to the Reconciler (reconcile.py).

`register()` adds, for every served component type, create/update/resume and delete handlers (with a
finalizer) and a drift timer; plus an in-memory index of the catalog (ComponentOffering), so a reconcile
needs no API call to find its offering; and the watch timeouts, login and /healthz probe of watchdog.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
import prometheus_client

from cityhub_api.api import FINALIZER, GROUP, OFFERING_PLURAL, VERSION
from cityhub_api.registry import ComponentType
from cityhub_operator import conditions, outcomes, persistence, probes, uplinks, watchdog
from cityhub_operator.conditions import READY, SYNCED
from cityhub_operator.driver import Driver
from cityhub_operator.reconcile import Emit, OfferingLookup, Reconciler, RetryLater, SecretStore
from cityhub_operator.settings import OperatorSettings

log = logging.getLogger("cityhub_operator")


def _emitter(body: Mapping[str, Any]) -> Emit:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1024])  # type: ignore[arg-type]

    return emit


def _lookup(index: kopf.Index[str, dict[str, Any]], ctype: ComponentType) -> OfferingLookup:
    def lookup(name: str) -> tuple[Mapping[str, Any] | None, list[str]]:
        found = next(iter(index.get(name, [])), None)
        known = sorted(n for n, store in index.items() for s in store if s.get("componentType") == ctype.name)
        return found, known

    return lookup


def _settled(body: Mapping[str, Any]) -> bool:
    status, generation = body.get("status") or {}, int(body["metadata"].get("generation") or 0)
    conds = status.get("conditions")
    return conditions.is_true(conds, READY, generation) and conditions.is_true(conds, SYNCED, generation)


def register(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    drivers: Mapping[str, Driver],
    types: list[ComponentType],
    secrets: SecretStore | None = None,
    peering: watchdog.Peering | None = None,
) -> dict[str, Reconciler]:
    """Register every handler for `types` (each with its driver) on `registry`; returns the reconcilers.

    `peering`: this replica in its leader election (kopf.run must be given the same name, identity and
    priority); None: standalone."""
    reconcilers: dict[str, Reconciler] = {}
    peering = peering or watchdog.Peering.standalone()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        """Persist kopf's state under hub.cityhub.io; post only warnings as events; watch timeouts and
        peering; start /metrics."""
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = persistence.ProgressStorage()
        settings.persistence.diffbase_storage = persistence.DiffBaseStorage()
        settings.posting.level = logging.WARNING
        settings.batching.worker_limit = operator_settings.worker_limit or None
        if operator_settings.worker_limit:
            # kopf keeps an object's worker for idle_timeout (5 s) after its last event: under a limit, idle
            # workers would hold the slots (20 workers gave 3.8 Ready/s for 1000 requests).
            settings.batching.idle_timeout = 0.5
        watchdog.configure(settings, operator_settings, peering)
        store = secrets
        if store is None:
            from cityhub_operator.kube import Secrets

            store = Secrets(
                timeout=(operator_settings.api_connect_timeout, operator_settings.api_timeout),
                writers=operator_settings.api_writers,
            )
        for ctype in types:
            reconcilers[ctype.kind] = Reconciler(ctype, drivers[ctype.name], store, operator_settings)
        if operator_settings.metrics_port:
            prometheus_client.start_http_server(operator_settings.metrics_port)
        log.info("serving %s", ", ".join(f"{t.kind} ({t.module_name('driver')})" for t in types))

    operator_settings = settings

    watchdog.register(registry, settings, peering)

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        """Close the drivers' backend connections."""
        for driver in drivers.values():
            await driver.close()

    @kopf.index(GROUP, VERSION, OFFERING_PLURAL, registry=registry, id="offerings")
    def offerings(name: str, spec: Mapping[str, Any], **_: Any) -> dict[str, dict[str, Any]]:
        """The catalog in memory: offering name → spec."""
        return {name: dict(spec)}

    for ctype in types:
        _register_type(registry, ctype, reconcilers, settings)
        request_of = lambda b, k=ctype.kind: reconcilers[k].request(b)  # noqa: E731  (filled at startup)
        probes.register(registry, ctype, drivers[ctype.name], request_of)
    probes.register_feedback(registry, [t.name for t in types])
    uplinks.register(registry, drivers)
    return reconcilers


def _register_type(
    registry: kopf.OperatorRegistry,
    ctype: ComponentType,
    reconcilers: dict[str, Reconciler],
    settings: OperatorSettings,
) -> None:
    resource = (GROUP, VERSION, ctype.plural)

    async def ensure(
        body: kopf.Body, patch: kopf.Patch, retry: int, offerings: kopf.Index[str, Any], reason: str, **_: Any
    ) -> None:
        """Create or update the backend objects and the Secret (kopf retries on RetryLater)."""
        if reason == "resume" and _settled(body):
            outcomes.OUTCOMES.condition(ctype.name, body, {})
            return  # already Ready for this generation: the drift timer keeps checking it
        try:
            await reconcilers[ctype.kind].ensure(
                body, _lookup(offerings, ctype), patch.status, _emitter(body), retry=retry
            )
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay) from e

    kopf.on.create(*resource, registry=registry, id="ensure")(ensure)
    kopf.on.update(*resource, registry=registry, id="ensure", field="spec")(ensure)
    kopf.on.resume(*resource, registry=registry, id="ensure")(ensure)

    @kopf.on.delete(*resource, registry=registry, id="delete")
    async def delete(body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any) -> None:
        """Delete the backend objects (or keep them: deletionPolicy Orphan) and the Secret."""
        try:
            await reconcilers[ctype.kind].delete(body, patch.status, _emitter(body), retry=retry)
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay) from e

    @kopf.timer(
        *resource,
        registry=registry,
        id="drift",
        interval=settings.drift_interval,
        initial_delay=settings.drift_interval,
    )
    async def drift(body: kopf.Body, patch: kopf.Patch, offerings: kopf.Index[str, Any], **_: Any) -> None:
        """Recreate backend objects removed or changed out of band."""
        await reconcilers[ctype.kind].repair_drift(
            body, _lookup(offerings, ctype), patch.status, _emitter(body)
        )
