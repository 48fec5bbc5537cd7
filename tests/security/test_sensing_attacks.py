"""Attacks on sensing's data path: department A, holding only its own Secret (its devices' MQTT credentials
and its apps' reader credentials), against department B, on a real MQTT gateway (nats-server) and relay
(component_types/sensing/fixtures.py) with the real driver.

Each attack asserts the refusal and that B still works afterwards (`b_still_works`: B's device publishes
over MQTT, B's app reads the message from B's stream).

    subscribe    '#', '+/+/#', '$SYS/#', B's and A's other topics, '$share/…', '$JS/…' from A's device
    publish      B's topics, A's other devices' topics, telemetry (around the relay), forged rejections,
                 the probe device's topic, JetStream and system subjects, odd topic levels
    client id    A's device connecting with B's device's MQTT client id
    retained     retained and will messages aimed at B or at A's other devices; a retained-message flood
                 (before the fix unbounded: 600 x 60KB stored in A's account, past every plan limit)
    flood        oversized messages and a message storm beyond the relay's limits; connections and
                 persistent sessions without end (before the fix: unbounded)
    credentials  a removed device, a deleted fleet's reader, a device JWT with widened permissions, the
                 reader credentials on other fleets, the raw ingest queue and the JetStream API
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
import paho.mqtt.client as mqtt
import pytest
from cityhub_operator.driver import Request, Result
from nats.aio.client import RawCredentials

from cityhub.testkit import settled
from component_types.sensing.driver import SensingDriver, create_driver
from component_types.sensing.local import Gateway

pytestmark = pytest.mark.integration
A, B = "dept-a", "dept-b"
FLEET = "gauges"  # the same fleet name in both departments
CREATED = int(time.time())
CONNECTIONS = 30
"""The departments' connection and session limit here (CITYHUB_SENSING_ACCOUNT_CONNECTIONS)."""
LIMITS = {"maxDevices": 5, "maxMessageBytes": 256, "messagesPerSecond": 3, "maxAge": 3600, "maxBytes": 2**20}


def fleet(dept: str, devices: list[str], name: str = FLEET, uid: str = "u1") -> Request:
    return Request(
        namespace=dept,
        name=name,
        uid=f"{dept}-{name}-{uid}",
        department=dept,
        spec={"devices": devices},
        limits=LIMITS,
        plan="standard",
        created_at=CREATED,
    )


@dataclass
class Device:
    """An MQTT device (paho): what the gateway granted its subscriptions, what it received, whether it is
    still connected."""

    client: mqtt.Client
    granted: dict[str, bool] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    refused: str = ""
    disconnected: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def connect(
        cls, url: str, name: str, token: str, client_id: str = "", will: str = "", clean: bool = True
    ) -> Device:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex, clean_session=clean
        )
        client.username_pw_set(name, token)
        if will:
            client.will_set(will, b"will of " + name.encode(), qos=1)
        d = cls(client)
        connected = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            d.refused = str(reason) if reason.is_failure else ""
            connected.set()

        client.on_connect = on_connect
        client.on_disconnect = lambda *_: d.disconnected.set()
        client.on_message = lambda _c, _u, m: d.received.append((m.topic, m.payload))
        parts = urlsplit(url)
        client.connect(parts.hostname or "", parts.port or 1883)
        client.loop_start()
        connected.wait(5)
        return d

    @property
    def ok(self) -> bool:
        return not self.refused and not self.disconnected.is_set()

    def subscribe(self, topic: str) -> bool:
        done = threading.Event()

        def on_subscribe(_c: Any, _u: Any, _m: Any, codes: list[Any], _p: Any) -> None:
            self.granted[topic] = not codes[0].is_failure
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), topic
        return self.granted[topic]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def die(self) -> None:
        """Lost without a DISCONNECT (a power cut): the gateway publishes the will, if it may."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


@dataclass
class City:
    env: dict[str, str]
    results: dict[str, Result]
    devices: list[Device] = field(default_factory=list)

    @property
    def mqtt(self) -> str:
        return self.env["CITYHUB_SENSING_MQTT_URL"]

    def ensure(self, request: Request) -> Result:
        result = run(self.env, lambda d: d.ensure(request))
        self.results[request.department] = result
        return result

    def device(self, dept: str, name: str, **how: str) -> Device:
        d = Device.connect(self.mqtt, name, self.results[dept].credentials[f"device-{name}"], **how)
        self.devices.append(d)
        return d

    def read(self, dept: str, count: int = 100, timeout: float = 3) -> list[tuple[str, bytes]]:
        """What the department's app reads from its fleet's stream with the Secret's reader credentials."""
        return asyncio.run(read_stream(self.env["CITYHUB_SENSING_URL"], self.results[dept], count, timeout))


def run(env: dict[str, str], body: Any) -> Any:
    async def main() -> Any:
        driver: SensingDriver = create_driver(env)
        try:
            return await body(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


async def read_stream(url: str, result: Result, count: int, timeout: float) -> list[tuple[str, bytes]]:
    conn = await nats.connect(
        url, user_credentials=RawCredentials(result.credentials["creds"]), allow_reconnect=False
    )
    try:
        sub = await conn.jetstream().pull_subscribe(
            result.endpoints["subjects"], stream=result.endpoints["stream"]
        )
        out: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            try:
                batch = await sub.fetch(count - len(out), timeout=0.5)
            except TimeoutError:  # nats-py raises its own and asyncio's
                continue
            for m in batch:
                await m.ack()
                out.append((m.subject, m.data))
        return out
    finally:
        await conn.close()


def wait(predicate: Any, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture(scope="module")
def city(sensing_env: dict[str, str], sensing_gateway: Gateway) -> Iterator[City]:
    c = City({**sensing_env, "CITYHUB_SENSING_ACCOUNT_CONNECTIONS": str(CONNECTIONS)}, {})
    c.ensure(fleet(A, ["a1", "a2"]))
    c.ensure(fleet(B, ["b1", "b2"]))
    yield c
    for d in c.devices:
        d.close()


def b_still_works(city: City) -> None:
    """B's device publishes; B's app reads exactly that from B's stream (and nothing of A's)."""
    token = uuid.uuid4().hex.encode()
    device = city.device(B, "b1")
    assert device.ok, device.refused
    device.publish(f"ingest/{FLEET}/b1/level", token)
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + 10
    while (f"telemetry.{FLEET}.b1.level", token) not in got and time.monotonic() < deadline:
        got += city.read(B, count=1000, timeout=1)
    assert (f"telemetry.{FLEET}.b1.level", token) in got, got
    assert all(subject.startswith(f"telemetry.{FLEET}.b") for subject, _ in got), got
    device.close()


def test_as_device_subscribes_to_nothing_but_its_own_rejections(city: City) -> None:
    a1 = city.device(A, "a1")
    for topic in (
        *("#", "+/+/#", "+", "$SYS/#", "$SYS/+/+", "ingest/#", f"ingest/{FLEET}/#", f"ingest/{FLEET}/a2/#"),
        *("telemetry/#", f"telemetry/{FLEET}/#", f"rejected/{FLEET}/a2", f"rejected/{FLEET}/+", "rejected/#"),
        *("$share/g/#", f"$share/g/telemetry/{FLEET}/#", "$JS/API/#", "$JS/#", "$MQTT/#", "_INBOX/#"),
        *(f"probe/{FLEET}", "$KV/fleets/#", f"{B}/#"),
    ):
        assert not a1.subscribe(topic), topic
    assert a1.subscribe(f"rejected/{FLEET}/a1")
    assert a1.ok
    b_still_works(city)
    assert a1.received == [], "nothing of B's (nor of A's other devices) reached A's device"


def test_as_device_publishes_nowhere_but_its_own_topic(city: City) -> None:
    a1, a2 = city.device(A, "a1"), city.device(A, "a2")
    assert a2.subscribe(f"rejected/{FLEET}/a2")
    forged = b"forged-" + uuid.uuid4().hex.encode()
    for topic in (
        *(
            f"ingest/{FLEET}/a2/level",
            f"ingest/{FLEET}/b1/level",
            f"ingest/{FLEET}/_probe/x",
            f"ingest/{FLEET}",
        ),
        *(
            f"telemetry/{FLEET}/a1/level",
            f"telemetry/{FLEET}/b1/level",
            f"rejected/{FLEET}/a2",
            f"probe/{FLEET}",
        ),
        *(f"$JS/API/STREAM/DELETE/{FLEET}", f"$JS/API/STREAM/PURGE/{FLEET}", "$SYS/REQ/CLAIMS/UPDATE"),
        *(
            f"$KV/fleets/{A}/{FLEET}",
            f"$MQTT/sess/{FLEET}",
            f"ingest//{FLEET}/a2",
            f"ingest/{FLEET}/a1.x/../a2",
        ),
        *(f"ingest/{FLEET}/a2 ", f"ingest/{FLEET}/a1/../../{FLEET}/a2/x", "ingest/other/a1/x"),
    ):
        # The gateway drops a forbidden publish, or closes the connection over it: a new one each time.
        attacker = Device.connect(city.mqtt, "a1", city.results[A].credentials["device-a1"])
        with contextlib.suppress(RuntimeError, ValueError):
            attacker.publish(topic, forged)
        attacker.close()
    a1.publish(f"ingest/{FLEET}/a1/level", b"mine")
    got = city.read(A)
    # A topic a1 may publish on arrives as a1's, however its levels read ('..' is just a level).
    assert all(s.startswith(f"telemetry.{FLEET}.a1.") for s, p in got if p == forged), got
    assert (f"telemetry.{FLEET}.a1.level", b"mine") in got
    time.sleep(0.3)
    assert a2.received == [], "no forged rejection reached A's other device"
    b_still_works(city)


def test_as_device_with_bs_client_id_does_not_disconnect_b(city: City) -> None:
    """MQTT sessions are per account: the same client id in A's account is another session."""
    b1 = city.device(B, "b1", client_id="gauge-b1-session")
    assert b1.ok
    a1 = city.device(A, "a1", client_id="gauge-b1-session")
    assert a1.ok
    time.sleep(0.5)
    assert b1.ok, "A's device took over B's session"
    b1.publish(f"ingest/{FLEET}/b1/x", b"still-here")
    assert (f"telemetry.{FLEET}.b1.x", b"still-here") in city.read(B)
    b_still_works(city)


def test_retained_and_will_messages_reach_neither_b_nor_as_other_devices(city: City) -> None:
    a2 = city.device(A, "a2")
    assert a2.subscribe(f"rejected/{FLEET}/a2")
    for will in (
        f"ingest/{FLEET}/b1/x",
        f"ingest/{FLEET}/a2/x",
        f"rejected/{FLEET}/a2",
        f"telemetry/{FLEET}/a2/x",
    ):
        doomed = city.device(A, "a1", will=will)
        if doomed.ok:  # the gateway may also refuse the connection outright
            doomed.die()
    a1 = city.device(A, "a1")
    for topic in (f"ingest/{FLEET}/a2/x", f"rejected/{FLEET}/a2", f"ingest/{FLEET}/b1/x"):
        a1.publish(topic, b"retained", retain=True)
    late = city.device(A, "a2")
    assert late.subscribe(f"rejected/{FLEET}/a2")
    time.sleep(0.5)
    assert a2.received == [] and late.received == [], (a2.received, late.received)
    assert not [
        p for s, p in city.read(A) if p.startswith(b"will of") or s.startswith(f"telemetry.{FLEET}.a2")
    ]
    b_still_works(city)


def test_a_retained_message_flood_is_bounded_by_as_account(city: City) -> None:
    """Retained messages are kept by the gateway, not the relay: before the fix nothing bounded them (600
    messages of 60KB, far beyond the plan's 256-byte messages and 1MiB stream, were all stored)."""
    a1 = city.device(A, "a1")
    for i in range(600):
        a1.publish(f"ingest/{FLEET}/a1/r{i}", b"x" * 60_000, retain=True)

    async def usage(driver: SensingDriver) -> tuple[int, int, int]:
        claims = await driver.accounts.nats_claims(A) or {}
        admin = await driver.connections.admin(A)
        stored = sum(s.state.bytes for s in await admin.jetstream().streams_info())
        return claims["limits"]["disk_storage"], stored, await driver.account_storage(fleet(A, ["a1", "a2"]))

    limit, stored, wanted = run(city.env, usage)
    assert limit == wanted < 600 * 60_000 and stored <= limit, (limit, stored)
    b_still_works(city)
    # A full account hurts A alone, and A frees it the MQTT way: an empty retained message per topic.
    for i in range(600):
        a1.publish(f"ingest/{FLEET}/a1/r{i}", b"", retain=True)
    assert run(city.env, usage)[1] < 2**20


def test_oversized_messages_and_a_storm_beyond_the_relays_limits_leave_b_served(city: City) -> None:
    a1 = city.device(A, "a1")
    assert a1.subscribe(f"rejected/{FLEET}/a1")
    a1.publish(f"ingest/{FLEET}/a1/big", b"x" * 100_000)
    assert wait(lambda: any(b"MessageTooLarge" in p for _, p in a1.received))
    over = city.device(A, "a2")
    over.client.publish(f"ingest/{FLEET}/a2/huge", b"x" * (2**20 + 1), qos=0)
    assert wait(lambda: over.disconnected.is_set()), "the gateway drops a connection over its max payload"
    for i in range(3000):
        a1.client.publish(f"ingest/{FLEET}/a1/storm", str(i).encode(), qos=0)
    started = time.monotonic()
    b_still_works(city)
    assert time.monotonic() - started < 10
    accepted = [p for s, p in city.read(A, count=3000, timeout=3) if s.endswith(".storm")]
    assert len(accepted) < 100, "the relay passes on a few per second, not the storm"


def test_connection_and_session_floods_stop_at_as_limits(city: City) -> None:
    """Before the fix a department's account had no connection or consumer limit: one device credential
    opened connections without end, and persistent sessions (a consumer each) piled up at 300 a second."""
    held: list[Device] = []
    try:
        while len(held) <= CONNECTIONS:
            d = Device.connect(city.mqtt, "a1", city.results[A].credentials["device-a1"])
            held.append(d)
            if not d.ok:
                break
        assert not held[-1].ok and len(held) <= CONNECTIONS, (len(held), held[-1].refused)
        b_still_works(city)
    finally:
        for d in held:
            d.close()
    ids = [uuid.uuid4().hex for _ in range(2 * CONNECTIONS)]
    subscribed = 0
    for client_id in ids:
        d = Device.connect(city.mqtt, "a1", city.results[A].credentials["device-a1"], client_id, clean=False)
        subscribed += d.ok and d.subscribe(f"rejected/{FLEET}/a1")
        d.close()

    async def consumers(driver: SensingDriver) -> int:
        """The most consumers on one of A's streams (nats-server applies the limit per stream: the MQTT
        sessions' consumers are all on one)."""
        admin = await driver.connections.admin(A)
        return max(s.state.consumer_count for s in await admin.jetstream().streams_info())

    assert subscribed < len(ids) and run(city.env, consumers) <= CONNECTIONS
    b_still_works(city)
    for client_id in ids:  # A ends its sessions the MQTT way (a clean session with the same id)
        Device.connect(city.mqtt, "a1", city.results[A].credentials["device-a1"], client_id).close()
    assert run(city.env, consumers) < CONNECTIONS


def test_revoked_widened_and_misused_credentials_are_refused(city: City) -> None:
    old = city.results[A].credentials["device-a2"]
    a = city.ensure(fleet(A, ["a1"]))  # a2 removed
    removed = Device.connect(city.mqtt, "a2", old)
    assert removed.refused or wait(lambda: removed.disconnected.is_set(), 2), "a removed device connected"
    # A device JWT whose permissions A widened: its signature no longer matches.
    head, body, sig = a.credentials["device-a1"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["nats"]["pub"] = {"allow": [">"]}
    widened = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = Device.connect(city.mqtt, "a1", f"{head}.{widened}.{sig}")
    assert forged.refused or wait(lambda: forged.disconnected.is_set(), 2), "a forged JWT connected"

    async def misuse(url: str, creds: str) -> list[str]:
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        conn = await nats.connect(url, user_credentials=RawCredentials(creds), error_cb=on_error)
        for subject in ("telemetry.>", "ingest.>", f"ingest.{FLEET}.>", "rejected.>", "$SYS.>", ">"):
            await conn.subscribe(subject)
        for subject in (f"telemetry.{FLEET}.a1.x", f"ingest.{FLEET}.a1.x", f"$JS.API.STREAM.DELETE.{FLEET}"):
            await conn.publish(subject, b"{}")
        await conn.flush()
        js = conn.jetstream(timeout=2)
        for attempt in (
            js.add_stream(name="mine", subjects=["mine.>"]),
            js.purge_stream(FLEET),
            js.pull_subscribe(f"ingest.{FLEET}.>", stream=f"{FLEET}_ingest"),
        ):
            try:
                await attempt
                errors.append("ALLOWED")
            except (nats.errors.Error, nats.js.errors.Error):
                pass
        await settled(lambda: sum("permissions violation" in e.lower() for e in errors) >= 9)
        await conn.close()
        return errors

    errors = asyncio.run(misuse(city.env["CITYHUB_SENSING_URL"], a.credentials["creds"]))
    assert "ALLOWED" not in errors and sum("permissions violation" in e.lower() for e in errors) >= 9, errors
    # A deleted fleet's reader and devices are refused.
    gone = fleet(A, ["g1"], name="gone")
    result = run(city.env, lambda d: d.ensure(gone))
    run(city.env, lambda d: d.delete(gone))
    dead = Device.connect(city.mqtt, "g1", result.credentials["device-g1"])
    assert dead.refused or wait(lambda: dead.disconnected.is_set(), 2)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(read_stream(city.env["CITYHUB_SENSING_URL"], result, 1, 1))
    for d in (removed, forged, dead):
        d.close()
    b_still_works(city)


def test_the_stack_of_attacks_left_b_whole(city: City) -> None:
    b_still_works(city)
    seen = run(city.env, lambda d: d.observe(fleet(B, ["b1", "b2"])))
    assert seen.in_sync, seen.drift
