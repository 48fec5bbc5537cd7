"""The reconciler with a fake driver and Secret store: outcomes, conditions, events, rollback, retries."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest
from cityhub_operator import conditions
from cityhub_operator.driver import (
    Observation,
    PermanentBackendError,
    Request,
    Result,
    TemporaryBackendError,
)
from cityhub_operator.reconcile import Reconciler, RetryLater
from cityhub_operator.settings import OperatorSettings

from cityhub_api import registry

OFFERING = {
    "componentType": "messaging",
    "defaultPlan": "standard",
    "plans": [
        {
            "name": "standard",
            "limits": {"maxAge": "7d", "maxBytes": "1Gi", "maxMessages": 1000},
            "defaults": {"maxAge": "1d", "maxBytes": "16Mi"},
        },
        {"name": "large", "limits": {"maxAge": "30d", "maxBytes": "20Gi"}},
    ],
}


class FakeDriver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Request]] = []
        self.fail: Exception | None = None
        self.in_sync = True

    async def ensure(self, request: Request) -> Result:
        self.calls.append(("ensure", request))
        if self.fail:
            raise self.fail
        return Result(
            endpoints={"url": "nats://x", "stream": request.name},
            credentials={"user.creds": "SECRET"},
            backend={"stream": request.name},
        )

    async def observe(self, request: Request) -> Observation:
        self.calls.append(("observe", request))
        return Observation(self.in_sync, () if self.in_sync else ("stream x is missing",))

    async def delete(self, request: Request) -> None:
        self.calls.append(("delete", request))

    async def close(self) -> None:
        pass


class FakeSecrets:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, str]] = {}

    async def apply(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        owner: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> bool:
        changed = self.data.get((namespace, name)) != dict(data)
        self.data[(namespace, name)] = dict(data)
        return changed

    async def delete(self, namespace: str, name: str, owner_uid: str) -> None:
        self.data.pop((namespace, name), None)


@pytest.fixture
def parts() -> tuple[Reconciler, FakeDriver, FakeSecrets]:
    driver, secrets = FakeDriver(), FakeSecrets()
    settings = OperatorSettings(retry_base_delay=2, retry_max_delay=30)
    return Reconciler(registry.component_types()["messaging"], driver, secrets, settings), driver, secrets


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {
            "name": "alerts",
            "namespace": "yingji",
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": "2026-11-21T10:00:00Z",
        },
        "spec": {"offering": "messaging", "deletionPolicy": "Delete", **spec},
    }


def lookup(name: str) -> tuple[dict[str, Any] | None, list[str]]:
    return (copy.deepcopy(OFFERING) if name == "messaging" else None), ["messaging"]


def ensure(rec: Reconciler, obj: dict[str, Any], retry: int = 0) -> tuple[str, dict[str, Any], list[tuple]]:
    status: dict[str, Any] = {}
    events: list[tuple[str, str, str]] = []
    result = asyncio.run(rec.ensure(obj, lookup, status, lambda *e: events.append(e), retry=retry))
    return result, status, events


def test_a_met_request_is_ready_with_its_secret(parts: tuple[Reconciler, FakeDriver, FakeSecrets]) -> None:
    rec, driver, secrets = parts
    result, status, events = ensure(rec, body(limits={"maxMessages": 500}))
    assert result == "success"
    ((_, request),) = driver.calls
    assert request.limits == {"maxAge": 86400, "maxBytes": 16 * 2**20, "maxMessages": 500}
    assert request.department == "yingji" and request.created_at > 0
    assert secrets.data[("yingji", "alerts-connection")] == {
        "url": "nats://x",
        "stream": "alerts",
        "user.creds": "SECRET",
    }
    assert conditions.is_true(status["conditions"], "Ready", 1) and conditions.is_true(
        status["conditions"], "Synced", 1
    )
    assert status["limits"] == {"maxAge": "1d", "maxBytes": "16Mi", "maxMessages": 500}
    assert "SECRET" not in repr(status) and "SECRET" not in repr(events)
    assert [e[1] for e in events] == ["Provisioned"]
    # Reconciling again changes nothing and emits nothing.
    again = body(limits={"maxMessages": 500})
    again["status"] = status
    _, status2, events2 = ensure(rec, again)
    assert events2 == [] and status2["conditions"] == status["conditions"]


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        ({"offering": "gone"}, "OfferingNotFound", "spec.offering: ComponentOffering 'gone' does not exist"),
        ({"plan": "gold"}, "PlanNotFound", "choose one of large, standard"),
        ({"limits": {"maxBytes": "2Gi"}}, "OverPlanLimits", "choose a plan that allows it (large)"),
        ({"limits": {"maxAge": "60d"}}, "OverPlanLimits", "no plan of this offering does"),
    ],
)
def test_unmet_requests_are_not_ready_and_touch_no_backend(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets], spec: dict[str, Any], reason: str, text: str
) -> None:
    rec, driver, secrets = parts
    result, status, events = ensure(rec, body(**spec))
    assert result == "unmet" and driver.calls == [] and secrets.data == {}
    ready = conditions.get(status["conditions"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason) and text in ready["message"]
    assert events == [("Warning", reason, ready["message"])]
    # The same unmet request again does not repeat the event (no event storm, no crash loop).
    obj = body(**spec)
    obj["status"] = status
    assert ensure(rec, obj)[2] == []


def test_backend_refusal_rolls_back_a_first_attempt(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    rec, driver, _ = parts
    driver.fail = PermanentBackendError("BackendRefused", "no room: lower spec.limits.maxBytes")
    result, status, _ = ensure(rec, body())
    assert result == "unmet"
    assert [c[0] for c in driver.calls] == ["ensure", "delete"]  # nothing half-created is left
    assert conditions.get(status["conditions"], "Ready")["reason"] == "BackendRefused"


def test_refusal_after_provisioning_keeps_ready(parts: tuple[Reconciler, FakeDriver, FakeSecrets]) -> None:
    rec, driver, _ = parts
    _, status, _ = ensure(rec, body())
    obj = body(limits={"maxBytes": "512Mi"})
    obj["metadata"]["generation"] = 2
    obj["status"] = status
    driver.fail = PermanentBackendError("BackendRefused", "no")
    _, status2, _ = ensure(rec, obj)
    assert "delete" not in [c[0] for c in driver.calls]  # the working backend stays
    assert conditions.get(status2["conditions"], "Ready")["status"] == "True"
    synced = conditions.get(status2["conditions"], "Synced")
    assert (synced["status"], synced["reason"], synced["observedGeneration"]) == (
        "False",
        "BackendRefused",
        2,
    )


def test_backend_errors_retry_with_capped_exponential_backoff(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    rec, driver, _ = parts
    driver.fail = TemporaryBackendError("cannot connect to NATS")
    delays = []
    for retry in range(8):
        with pytest.raises(RetryLater) as e:
            ensure(rec, body(), retry=retry)
        delays.append(e.value.delay)
    assert 1.6 <= delays[0] <= 2.4 and 3.2 <= delays[1] <= 4.8
    assert all(d <= 36 for d in delays) and delays[-1] >= 24


def test_a_driver_bug_is_reported_on_the_request_and_retried(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    """An exception the driver did not expect (here a NUL byte reaching the file system) leaves the request
    with conditions saying what happens, not silently without status, and nothing of its text."""
    rec, driver, secrets = parts
    driver.fail = ValueError("embedded null byte in /var/lib/models/secret-path")
    status: dict[str, Any] = {}
    events: list[tuple[str, str, str]] = []
    with pytest.raises(RetryLater) as e:
        asyncio.run(rec.ensure(body(), lookup, status, lambda *ev: events.append(ev), retry=0))
    ready = conditions.get(status["conditions"], "Ready")
    assert ready and ready["status"] == "False" and ready["reason"] == "InternalError"
    assert "ValueError" in ready["message"] and "/var/lib/models" not in ready["message"]
    assert events == [("Warning", "InternalError", ready["message"])] and e.value.delay > 0
    assert not secrets.data


def test_delete_policies(parts: tuple[Reconciler, FakeDriver, FakeSecrets]) -> None:
    rec, driver, secrets = parts
    ensure(rec, body())
    events: list[tuple] = []
    asyncio.run(rec.delete(body(deletionPolicy="Orphan"), {}, lambda *e: events.append(e)))
    assert "delete" not in [c[0] for c in driver.calls] and events[0][1] == "Orphaned"
    assert secrets.data == {}
    asyncio.run(rec.delete(body(), {}, lambda *e: events.append(e)))
    assert driver.calls[-1][0] == "delete" and events[-1][1] == "Deleted"


class OrphaningDriver(FakeDriver):
    async def orphan(self, request: Request) -> None:
        self.calls.append(("orphan", request))
        if self.fail:
            raise self.fail


def test_orphan_revokes_credentials_when_the_driver_can(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    """deletionPolicy Orphan keeps the backend objects; a driver that implements Orphaner revokes what the
    request granted, and its failure holds the finalizer like a failed delete."""
    rec, _, secrets = parts
    driver = OrphaningDriver()
    rec.driver = driver
    ensure(rec, body())
    events: list[tuple] = []
    driver.fail = TemporaryBackendError("nats: connection refused")
    with pytest.raises(RetryLater):
        asyncio.run(rec.delete(body(deletionPolicy="Orphan"), {}, lambda *e: events.append(e)))
    assert secrets.data, "the Secret stays until the credentials are revoked"
    driver.fail = None
    asyncio.run(rec.delete(body(deletionPolicy="Orphan"), {}, lambda *e: events.append(e), retry=1))
    assert [c[0] for c in driver.calls] == ["ensure", "orphan", "orphan"]
    assert [e[1] for e in events] == ["DeleteFailed", "Orphaned"] and "credentials revoked" in events[-1][2]
    assert secrets.data == {}


def test_drift_is_repaired_only_for_settled_requests(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    rec, driver, _ = parts
    events: list[tuple] = []
    assert not asyncio.run(rec.repair_drift(body(), lookup, {}, lambda *e: events.append(e)))
    assert driver.calls == []  # never provisioned: nothing to repair
    _, status, _ = ensure(rec, body())
    obj = body()
    obj["status"] = status
    assert not asyncio.run(rec.repair_drift(obj, lookup, {}, lambda *e: events.append(e)))
    driver.in_sync = False
    assert asyncio.run(rec.repair_drift(obj, lookup, {}, lambda *e: events.append(e)))
    assert [e[1] for e in events] == ["DriftDetected", "DriftRepaired"]
    assert "stream x is missing" in events[0][2]


def test_a_repair_interrupted_by_an_unavailable_backend_is_retried_by_the_timer(
    parts: tuple[Reconciler, FakeDriver, FakeSecrets],
) -> None:
    rec, driver, _ = parts
    _, status, _ = ensure(rec, body())
    obj = body()
    obj["status"] = status
    driver.in_sync, driver.fail = False, TemporaryBackendError("nats: connection refused")
    repair_status: dict[str, Any] = {}
    assert not asyncio.run(rec.repair_drift(obj, lookup, repair_status, lambda *e: None))
    obj["status"] = {**status, **repair_status}
    assert conditions.get(obj["status"]["conditions"], "Synced")["reason"] == "BackendUnavailable"
    driver.fail = None
    after: dict[str, Any] = {}
    assert asyncio.run(rec.repair_drift(obj, lookup, after, lambda *e: None))
    assert conditions.is_true(after["conditions"], "Synced", 1) and conditions.is_true(
        after["conditions"], "Ready", 1
    )


def test_kopf_state_written_by_a_department_neither_stops_nor_bloats_the_operator() -> None:
    """kopf's annotations on a request are the department's to write: garbage reads as absent, and the
    request's own annotations stay out of the diff base (150 KB of them would push the object past the API
    server's 256 KiB annotation limit once kopf stored its copy)."""
    import kopf
    from cityhub_operator.persistence import DiffBaseStorage, ProgressStorage

    forged = {"hub.cityhub.io/last-handled-configuration": "{not json", "hub.cityhub.io/ensure": "{"}
    obj = body()
    obj["metadata"]["annotations"] = {**forged, "note": "x" * 150_000}
    view = kopf.Body(obj)
    assert DiffBaseStorage().fetch(body=view) is None
    assert ProgressStorage().fetch(key=kopf.HandlerId("ensure"), body=view) is None
    essence = DiffBaseStorage().build(body=view)
    assert "annotations" not in essence.get("metadata", {}) and essence["spec"] == obj["spec"]
