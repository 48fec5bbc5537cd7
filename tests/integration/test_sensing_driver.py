"""The sensing driver against a real MQTT gateway (nats-server's MQTT listener) and the relay: devices publish
over MQTT with their own credentials, departments' apps read the fleet's stream; other departments, revoked
devices, over-size and over-rate messages are refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import paho.mqtt.client as mqtt
import pytest
from cityhub_operator.driver import PermanentBackendError, Request, Result
from nats.aio.client import RawCredentials

from cityhub_api.settings import SettingError
from cityhub_nats.client.capacity import jetstream_accounts
from component_types.sensing.driver import SensingSettings, create_driver
from component_types.sensing.local import Gateway

pytestmark = pytest.mark.integration
LIMITS = {"maxDevices": 5, "maxMessageBytes": 256, "messagesPerSecond": 3, "maxAge": 3600, "maxBytes": 2**20}


def fleet(dept: str, name: str, devices: list[str], uid: str = "u1", **limits: int) -> Request:
    return Request(
        namespace=dept,
        name=name,
        uid=f"{dept}-{name}-{uid}",
        department=dept,
        spec={"devices": devices},
        limits={**LIMITS, **limits},
        plan="standard",
        created_at=1_700_000_000,
    )


class Device:
    """An MQTT device (paho) with a fleet's credential: publishes, and hears why a message was refused."""

    def __init__(self, mqtt_url: str, name: str, token: str, client_id: str | None = None) -> None:
        url = urlsplit(mqtt_url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}-{time.monotonic_ns()}"
        )
        self.client.username_pw_set(name, token)
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.disconnected = threading.Event()
        self.received: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.connect(url.hostname or "", url.port or 1883)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        self.connected.set()

    @property
    def ok(self) -> bool:
        return self.connected.is_set() and not self.refused and not self.disconnected.is_set()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic, qos=1)
        done.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    made: list[Device] = []
    yield made
    for d in made:
        d.close()


def device(made: list[Device], env: dict[str, str], result: Result, name: str) -> Device:
    d = Device(env["CITYHUB_SENSING_MQTT_URL"], name, result.credentials[f"device-{name}"])
    made.append(d)
    return d


async def read_stream(env: dict[str, str], result: Result, count: int, timeout: float = 5) -> list[Any]:
    """What the department's app reads from the fleet's stream with the Secret's reader credentials."""
    conn = await nats.connect(
        env["CITYHUB_SENSING_URL"], user_credentials=RawCredentials(result.credentials["creds"])
    )
    try:
        sub = await conn.jetstream().pull_subscribe(
            result.endpoints["subjects"], stream=result.endpoints["stream"]
        )
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                out += await sub.fetch(count - len(out), timeout=1)
            except TimeoutError:  # nats' own, or asyncio's when the server answers late
                continue
        for m in out:
            await m.ack()
        return out
    finally:
        await conn.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ensure(env: dict[str, str], request: Request) -> Result:
    driver = create_driver(env)
    try:
        return await driver.ensure(request)
    finally:
        await driver.close()


def wait(predicate: Any, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_a_device_publishes_and_the_departments_app_reads_the_stream(
    sensing_env: dict[str, str], devices: list[Device]
) -> None:
    result = run(ensure(sensing_env, fleet("dept-yingji", "water", ["w1", "w2"])))
    assert set(result.credentials) == {"device-w1", "device-w2", "creds"}
    assert (
        result.endpoints["topic"] == "ingest/water/<device>/<anything>" and result.backend["devices"] == "2"
    )
    w1 = device(devices, sensing_env, result, "w1")
    assert w1.ok
    w1.publish("ingest/water/w1/level", b'{"m": 3.2}')
    (msg,) = run(read_stream(sensing_env, result, 1))
    assert msg.subject == "telemetry.water.w1.level" and msg.data == b'{"m": 3.2}'
    again = run(ensure(sensing_env, fleet("dept-yingji", "water", ["w1", "w2"])))
    assert again == result, "a reconcile issues the same credentials"


def test_another_departments_devices_never_reach_the_fleet(
    sensing_env: dict[str, str], devices: list[Device]
) -> None:
    victim = run(ensure(sensing_env, fleet("dept-yingji", "river", ["r1"])))
    # Same fleet and device names in another department: its own account, its own stream.
    attacker = run(ensure(sensing_env, fleet("dept-jiaotong", "river", ["r1", "r2"])))
    intruder = device(devices, sensing_env, attacker, "r1")
    intruder.publish("ingest/river/r1/level", b"forged")
    intruder.publish("ingest/river/r2/level", b"not my device")  # another device's topic: dropped
    assert len(run(read_stream(sensing_env, attacker, 2, timeout=3))) == 1, "only its own device's topic"
    assert run(read_stream(sensing_env, victim, 1, timeout=2)) == [], "nothing reaches the victim's stream"
    # The attacker's device credential used with the victim's fleet is still the attacker's account.
    owner = device(devices, sensing_env, victim, "r1")
    owner.publish("ingest/river/r1/level", b"real")
    (msg,) = run(read_stream(sensing_env, victim, 1))
    assert msg.data == b"real", "the victim keeps working"


def test_a_removed_device_is_refused_and_the_others_keep_working(
    sensing_env: dict[str, str], devices: list[Device]
) -> None:
    first = run(ensure(sensing_env, fleet("dept-chengguan", "lamps", ["l1", "l2"])))
    l1, l2 = device(devices, sensing_env, first, "l1"), device(devices, sensing_env, first, "l2")
    assert l1.ok and l2.ok
    second = run(ensure(sensing_env, fleet("dept-chengguan", "lamps", ["l1"])))
    assert "device-l2" not in second.credentials
    assert wait(lambda: l2.disconnected.is_set()), "the revoked device's live connection is closed"
    retry = Device(sensing_env["CITYHUB_SENSING_MQTT_URL"], "l2", first.credentials["device-l2"])
    devices.append(retry)
    assert retry.refused, "a revoked credential is refused at connect"
    l1.publish("ingest/lamps/l1/on", b"1")
    assert len(run(read_stream(sensing_env, second, 1))) == 1
    third = run(ensure(sensing_env, fleet("dept-chengguan", "lamps", ["l1", "l2"])))
    assert third.credentials["device-l2"] != first.credentials["device-l2"], "listed again: a new credential"
    assert device(devices, sensing_env, third, "l2").ok


def test_over_size_and_over_rate_messages_are_refused_with_a_reason(
    sensing_env: dict[str, str], devices: list[Device]
) -> None:
    result = run(ensure(sensing_env, fleet("dept-jiaotong", "counters", ["c1"])))
    c1 = device(devices, sensing_env, result, "c1")
    c1.subscribe("rejected/counters/c1")
    c1.publish("ingest/counters/c1/big", b"x" * 300)
    assert wait(lambda: c1.received)
    reason = json.loads(c1.received[0][1])
    assert reason["reason"] == "MessageTooLarge" and "256" in reason["message"]
    for i in range(10):
        c1.publish("ingest/counters/c1/n", str(i).encode())
    assert wait(lambda: any(json.loads(p)["reason"] == "RateLimited" for _, p in c1.received))
    accepted = run(read_stream(sensing_env, result, 10, timeout=3))
    assert 3 <= len(accepted) < 10, "a burst of one second's worth passes, the rest is refused"


def test_bad_specs_and_settings_name_the_field(sensing_env: dict[str, str]) -> None:
    with pytest.raises(PermanentBackendError) as e:
        run(ensure(sensing_env, fleet("dept-yingji", "big", [f"d{i}" for i in range(6)])))
    assert e.value.reason == "TooManyDevices" and "spec.limits.maxDevices" in str(e.value)
    with pytest.raises(SettingError, match="CITYHUB_SENSING_URL is not set"):
        SensingSettings.from_env({})
    with pytest.raises(SettingError, match="Invalid CITYHUB_SENSING_MQTT_URL=http://x"):
        SensingSettings.from_env({**sensing_env, "CITYHUB_SENSING_MQTT_URL": "http://x"})


def test_probe_and_delete(
    sensing_env: dict[str, str], sensing_gateway: Gateway, devices: list[Device]
) -> None:
    request = fleet("dept-yingji", "probe-me", ["p1"])

    async def scenario() -> Result:
        driver = create_driver(sensing_env)
        try:
            result = await driver.ensure(request)
            await driver.probe(request, {**result.endpoints, **result.credentials})
            assert (await driver.observe(request)).in_sync
            await driver.delete(request)
            seen = await driver.observe(request)
            assert not seen.in_sync and any("stream" in d for d in seen.drift)
            await driver.delete(request)  # already gone: fine
            return result
        finally:
            await driver.close()

    result = run(scenario())
    assert device(devices, sensing_env, result, "p1").refused, "deleting the fleet revokes its devices"


def test_a_fleet_the_gateway_has_no_room_for_is_refused_naming_both_fixes(tmp_path: Path) -> None:
    """The gateway keeps an account's old limits (or JetStream off for a new one) when its store has no
    room for the new ones: every stream call then failed as 'service unavailable', retried for ever. Now
    BackendRefused says so, and a fleet that fits still works after the refusal."""
    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(48))
    gateway = Gateway(tmp_path, secret, max_file_store="64M").start()
    try:
        env = {**gateway.operator_env(), "CITYHUB_SENSING_TIMEOUT": "5"}
        # Reserves twice (48Mi + a message) and the 16Mi of MQTT sessions: past the 64M store.
        with pytest.raises(PermanentBackendError) as refused:
            run(ensure(env, fleet("dept-room", "river", ["g1"], maxBytes=48 * 2**20)))
        assert refused.value.reason == "BackendRefused", refused.value
        message = str(refused.value)
        assert "spec.limits.maxBytes=48Mi" in message and "cityhub:backends.sensing.maxFileStore" in message
        assert "unreserved" in message, message
        small = run(ensure(env, fleet("dept-room", "river", ["g1"], maxBytes=4 * 2**20)))
        assert small.backend["stream"], small
        # How the driver told "JetStream off for the account" from "JetStream not answering": now it is on.
        assert small.backend["account"] in run(jetstream_on(env))
    finally:
        gateway.stop()


async def jetstream_on(env: dict[str, str]) -> set[str]:
    driver = create_driver(env)
    try:
        found = await jetstream_accounts(await driver.connections.system(), 5)
        assert found is not None
        return found
    finally:
        await driver.close()
