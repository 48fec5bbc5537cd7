"""Outcome metrics: component states, incidents and their time to resolve, probes, Apdex and feedback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from cityhub_operator import probes
from cityhub_operator.driver import Request, TemporaryBackendError
from cityhub_operator.outcomes import Feedback, Outcomes
from cityhub_operator.probes import ProbeRunner, ProbeSettings, apdex_zone
from prometheus_client import REGISTRY

from cityhub_api.registry import component_types


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def body(
    namespace: str, name: str = "events", ready: bool = True, offering: str = "messaging"
) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "generation": 1},
        "spec": {"offering": offering},
        "status": {
            "connectionSecret": f"{name}-connection",
            "conditions": [{"type": "Ready", "status": status, "observedGeneration": 1}],
        },
    }


def labels(department: str, **extra: str) -> dict[str, str]:
    return {"department": department, "component_type": "messaging", "offering": "messaging", **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ready_component_that_fails_its_probe_opens_an_incident_resolved_when_it_passes() -> None:
    clock = Clock()
    outcomes, dept = Outcomes(clock), "od-incident"
    assert outcomes.condition("messaging", body(dept, ready=False), {}) == "pending"
    assert sample("cityhub_components", **labels(dept, state="pending")) == 1
    assert outcomes.condition("messaging", body(dept), {}) == "ready"
    assert outcomes.probed("messaging", body(dept), ok=False) == "down"
    assert sample("cityhub_incidents_opened_total", **labels(dept)) == 1
    assert sample("cityhub_components", **labels(dept, state="down")) == 1
    assert sample("cityhub_components", **labels(dept, state="ready")) == 0
    clock.now += 95
    assert outcomes.probed("messaging", body(dept), ok=False) == "down"  # still the same incident
    assert outcomes.probed("messaging", body(dept), ok=True) == "ready"
    assert sample("cityhub_incidents_opened_total", **labels(dept)) == 1
    assert sample("cityhub_incidents_resolved_total", **labels(dept)) == 1
    assert sample("cityhub_incident_resolution_seconds_sum", **labels(dept)) == 95
    assert sample("cityhub_components", **labels(dept, state="ready")) == 1


def test_a_request_that_never_was_ready_is_pending_not_an_incident() -> None:
    outcomes, dept = Outcomes(), "od-pending"
    outcomes.condition("messaging", body(dept, ready=False), {})
    outcomes.condition("messaging", body(dept, ready=False), {})
    assert sample("cityhub_incidents_opened_total", **labels(dept)) == 0
    # its zero-valued series exist from the start, so ratios and increase() see the first event
    assert REGISTRY.get_sample_value("cityhub_probe_total", labels(dept, result="failure")) == 0
    outcomes.forget("messaging", body(dept))
    assert sample("cityhub_components", **labels(dept, state="pending")) == 0


def test_losing_ready_after_being_ready_is_an_incident_and_status_in_the_patch_wins() -> None:
    outcomes, dept = Outcomes(), "od-lost"
    outcomes.condition("messaging", body(dept), {})
    patch = {"conditions": [{"type": "Ready", "status": "False"}]}
    assert outcomes.condition("messaging", body(dept), patch) == "down"
    assert sample("cityhub_incidents_opened_total", **labels(dept)) == 1


def test_apdex_zones_follow_the_offerings_thresholds() -> None:
    offering = {"apdex": {"thresholdSeconds": 0.1}}
    assert [apdex_zone(s, offering) for s in (0.05, 0.1, 0.3, 0.41)] == [
        "satisfied",
        "satisfied",
        "tolerating",
        "frustrated",
    ]
    assert apdex_zone(0.3, {"apdex": {"thresholdSeconds": 0.1, "toleratingSeconds": 0.2}}) == "frustrated"
    assert apdex_zone(0.4, None) == "satisfied"  # default T = 0.5 s
    assert apdex_zone(None, offering) == "frustrated"  # a failed probe


def test_feedback_counts_served_types_only_and_follows_edits_and_deletes() -> None:
    feedback = Feedback(["messaging"])
    assert feedback.record("a", "fb-dept", {"componentType": "messaging", "rating": 4})
    assert feedback.record("b", "fb-dept", {"componentType": "messaging", "rating": 2})
    assert not feedback.record("c", "fb-dept", {"componentType": "teleporter", "rating": 5})
    assert sample("cityhub_feedback_ratings", department="fb-dept", component_type="messaging") == 2
    assert sample("cityhub_feedback_rating_sum", department="fb-dept", component_type="messaging") == 6
    feedback.record("b", "fb-dept", {"componentType": "messaging", "rating": 5})
    feedback.remove("a")
    assert sample("cityhub_feedback_rating_sum", department="fb-dept", component_type="messaging") == 5
    assert (
        REGISTRY.get_sample_value(
            "cityhub_feedback_ratings", {"department": "fb-dept", "component_type": "teleporter"}
        )
        is None
    )


class FakeProber:
    """A unit-test stand-in for a driver (the real messaging probe runs in the integration test)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.seen = error, []

    async def ensure(self, request: Request) -> Any: ...
    async def observe(self, request: Request) -> Any: ...
    async def delete(self, request: Request) -> None: ...
    async def close(self) -> None: ...

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        self.seen.append(dict(secret))
        if self.error:
            raise self.error


def runner(
    driver: FakeProber,
    secrets: dict[tuple[str, str], dict[str, str]],
    outcomes: Outcomes,
    settings: ProbeSettings | None = None,
) -> ProbeRunner:
    ctype = component_types()["messaging"]

    def request_of(b: Mapping[str, Any]) -> Request:
        meta = b["metadata"]
        return Request(meta["namespace"], meta["name"], meta["uid"], meta["namespace"], b["spec"], {})

    return ProbeRunner(
        ctype,
        driver,
        request_of,
        settings or ProbeSettings(1, 1),
        lambda ns, n: secrets.get((ns, n)),
        outcomes,
    )


def test_the_probe_uses_the_requests_own_secret_and_records_success_latency_and_apdex() -> None:
    driver, outcomes, dept = FakeProber(), Outcomes(), "pr-ok"
    run = runner(driver, {(dept, "events-connection"): {"user.creds": "c"}}, outcomes)
    assert asyncio.run(run.probe(body(dept), {"apdex": {"thresholdSeconds": 5}})) == "ready"
    assert driver.seen == [{"user.creds": "c"}]
    assert sample("cityhub_probe_total", **labels(dept, result="success")) == 1
    assert sample("cityhub_probe_duration_seconds_count", **labels(dept)) == 1
    assert sample("cityhub_probe_apdex_total", **labels(dept, zone="satisfied")) == 1
    assert (
        sample("cityhub_probe_apdex_threshold_seconds", component_type="messaging", offering="messaging") == 5
    )


def test_a_failing_probe_or_missing_secret_marks_the_component_down_and_not_ready_ones_are_skipped() -> None:
    driver, outcomes, dept = FakeProber(TemporaryBackendError("connection refused")), Outcomes(), "pr-fail"
    run = runner(driver, {(dept, "events-connection"): {"user.creds": "c"}}, outcomes)
    outcomes.condition("messaging", body(dept), {})
    assert asyncio.run(run.probe(body(dept), None)) == "down"
    assert sample("cityhub_probe_total", **labels(dept, result="failure")) == 1
    assert sample("cityhub_probe_apdex_total", **labels(dept, zone="frustrated")) == 1
    nosecret = runner(FakeProber(), {}, outcomes)
    assert asyncio.run(nosecret.probe(body(dept, name="other"), None)) == "pending"
    assert asyncio.run(run.probe(body(dept, name="new", ready=False), None)) is None


def test_probe_settings_say_what_a_bad_value_needs() -> None:
    assert ProbeSettings.from_env({}) == ProbeSettings(30.0, 10.0)
    assert ProbeSettings.from_env({"CITYHUB_PROBE_INTERVAL": "0"}).interval == 0
    with pytest.raises(ValueError, match=r"CITYHUB_PROBE_INTERVAL=soon: needs to be a number of seconds"):
        ProbeSettings.from_env({"CITYHUB_PROBE_INTERVAL": "soon"})
    with pytest.raises(ValueError, match=r"CITYHUB_PROBE_TIMEOUT=0: needs to be a number of seconds"):
        ProbeSettings.from_env({"CITYHUB_PROBE_TIMEOUT": "0"})
    assert probes.DEFAULT_APDEX_THRESHOLD == 0.5


class SlowProber(FakeProber):
    """Counts how many of its probes are under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        self.seen.append(request.name)
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.02)
        self.running -= 1


def test_probes_of_many_components_take_turns_and_start_spread_over_an_interval() -> None:
    """Thousands of Ready requests must not probe all at once: that starved the reconciles of new requests
    and NATS refused the connection storm (bench/operator-scale.md)."""
    driver, outcomes, dept = SlowProber(), Outcomes(), "pr-turns"
    secrets = {(dept, f"c{i}-connection"): {"user.creds": "c"} for i in range(12)}
    run = runner(driver, secrets, outcomes, ProbeSettings(30, 1, concurrency=3))

    async def all_at_once() -> list[str | None]:
        return await asyncio.gather(*(run.probe(body(dept, name=f"c{i}"), None) for i in range(12)))

    assert asyncio.run(all_at_once()) == ["ready"] * 12
    assert driver.most == 3
    delays = [ProbeSettings(30, 1).first_delay() for _ in range(200)]
    assert min(delays) >= 15 and max(delays) <= 45 and max(delays) - min(delays) > 15
    with pytest.raises(ValueError, match=r"CITYHUB_PROBE_CONCURRENCY=0: needs to be"):
        ProbeSettings.from_env({"CITYHUB_PROBE_CONCURRENCY": "0"})


class Flag:
    """Stands in for kopf's `stopped` flag of a timer."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


def test_a_probe_waiting_for_its_turn_gives_up_when_its_request_is_deleted() -> None:
    """kopf keeps a deleted request's finalizer until its timers return: a queued probe must not hold it."""
    driver, outcomes, dept = SlowProber(), Outcomes(), "pr-stop"
    secrets = {(dept, f"c{i}-connection"): {"user.creds": "c"} for i in range(3)}
    run = runner(driver, secrets, outcomes, ProbeSettings(30, 1, concurrency=1))

    async def scenario() -> list[str | None]:
        flag = Flag()
        first = asyncio.ensure_future(run.probe(body(dept, name="c0"), None))
        queued = asyncio.ensure_future(run.probe(body(dept, name="c1"), None, flag))
        await asyncio.sleep(0)
        flag.event.set()  # the request of the queued probe is deleted while c0 is probed
        results = list(await asyncio.gather(first, queued))
        return [*results, await run.probe(body(dept, name="c2"), None)]  # the turn was not lost

    assert asyncio.run(scenario()) == ["ready", None, "ready"]
    assert driver.seen == ["c0", "c2"] and driver.most == 1


def test_the_department_sees_a_failing_probe_as_ready_false_and_its_recovery_as_ready_true() -> None:
    driver, outcomes, dept = FakeProber(TemporaryBackendError("connection refused")), Outcomes(), "pr-status"
    run = runner(driver, {(dept, "events-connection"): {"user.creds": "c"}}, outcomes)
    ready = body(dept)
    outcomes.condition("messaging", ready, {})
    patch: dict[str, Any] = {}
    assert asyncio.run(run.probe(ready, None, patch=patch)) == "down"
    cond = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (cond["status"], cond["reason"]) == ("False", "ProbeFailed")
    assert "connection refused" in cond["message"] and "Secret events-connection" in cond["message"]
    # Still failing: probed again, no second status write.
    failing = {**ready, "status": {**ready["status"], "conditions": patch["conditions"]}}
    again: dict[str, Any] = {}
    assert asyncio.run(run.probe(failing, None, patch=again)) == "down" and again == {}
    # The backend is back: the next probe turns Ready to True.
    driver.error = None
    back: dict[str, Any] = {}
    assert asyncio.run(run.probe(failing, None, patch=back)) == "ready"
    cond = next(c for c in back["conditions"] if c["type"] == "Ready")
    assert (cond["status"], cond["reason"]) == ("True", "Available")
    # A request that is not Ready for another reason (not provisioned yet, refused) is not probed.
    assert asyncio.run(run.probe(body(dept, name="new", ready=False), None, patch={})) is None
