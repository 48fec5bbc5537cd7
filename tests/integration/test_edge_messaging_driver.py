"""The messaging driver in edge mode (issue 18, 多级贯通): an operator serving edge cluster `xihu-edge`
(CITYHUB_NATS_EDGE) provisions a street office's MessagingChannel with real nats-servers.

The hub's nats-server (operator mode, JetStream domain `hub`, a leafnode listener) and the edge's (a leaf node
of the hub, JetStream domain `xihu-edge`) are joined through a TcpProxy that can go silent, as in
test_edge_leafnode.py. The edge driver is made from environment variables, as the operator makes it; a hub
driver serves the city bureau the channel is shared with. What a user would notice:

- the Secret's url is the edge's; an app publishes there with the Secret's credentials, acked by the edge;
  the bureau on the hub receives every message through its share; observe is in sync, the probe passes;
- the department's account on the hub admits its edge's leaf node (`leaf` 1), the bureau's none (0), and
  neither cluster's driver undoes the other's;
- uplink cut: ensuring another channel fails, temporarily, naming the edge; observe reports "edge xihu-edge
  uplink down for N s" once the edge has been silent CITYHUB_NATS_EDGE_SILENCE (3 s here); the app keeps
  publishing on the edge and the probe (on the edge) passes;
- uplink back: in sync again, every message reaches the bureau in order, the other channel is made;
- delete removes the hub's and the edge's streams; while the edge is cut off it fails temporarily naming the
  edge, after the hub's part, and succeeds once retried.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import pytest
from cityhub_operator.driver import Observation, Request, Result, TemporaryBackendError
from nats.aio.client import Client, RawCredentials

from cityhub import supervisor
from cityhub.supervisor import ProcessFailed
from cityhub.testkit import TcpProxy, settled
from component_types.messaging import edges, naming
from component_types.messaging.driver import MessagingDriver, NatsSettings, create_driver
from component_types.messaging.fixtures import TEST_SECRET
from component_types.messaging.local import NatsServer, nats_server_binary
from component_types.messaging.local_edge import EdgeNatsServer

pytestmark = pytest.mark.integration

EDGE = "xihu-edge"
STREET = "xihu-hubin"  # 湖滨街道, on the edge
BUREAU = "jiaotong"  # a city bureau on the hub
CHANNEL, OTHER = "water-level", "pump-status"
SILENCE = 3.0
TIMEOUT = 2.0
T = TypeVar("T")


def request(department: str, name: str, share_with: tuple[str, ...] = ()) -> Request:
    return Request(
        namespace=department,
        name=name,
        uid=str(uuid.uuid4()),
        department=department,
        spec={
            "offering": "messaging",
            "storage": "file",
            "shareWith": [{"department": d} for d in share_with],
        },
        limits={"maxAge": 3600, "maxBytes": 32 * 2**20, "maxMessages": 100_000},
        plan="standard",
        offering="messaging",
        created_at=int(time.time()),
    )


async def connect(url: str, result: Result, name: str) -> Client:
    async def quiet(e: Exception) -> None:
        pass

    creds = RawCredentials(result.credentials["user.creds"])
    return await nats.connect(url, user_credentials=creds, name=name, connect_timeout=3, error_cb=quiet)


async def eventually(call: Callable[[], Awaitable[T]], within: float) -> T:
    """What the operator's retries do: call again while the backend is temporarily unavailable."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except TemporaryBackendError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def observed(
    driver: MessagingDriver, req: Request, until: Callable[[Observation], bool]
) -> Observation:
    deadline = time.monotonic() + 30
    while True:
        seen = await driver.observe(req)
        if until(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


async def stream_exists(admin: Client, name: str, domain: str | None) -> bool:
    try:
        await admin.jetstream(timeout=TIMEOUT, domain=domain).stream_info(name)
    except nats.js.errors.NotFoundError:
        return False
    return True


def test_an_edge_operator_serves_a_street_office_channel_through_its_uplink(tmp_path: Path) -> None:
    try:
        nats_server_binary()
    except ProcessFailed as e:
        pytest.fail(str(e), pytrace=False)
    hub = NatsServer(
        tmp_path / "hub", TEST_SECRET, max_file_store="1G", leafnode_port=0, jetstream_domain="hub"
    )
    proxy: TcpProxy | None = None
    edge: EdgeNatsServer | None = None
    try:
        hub.start()
        proxy = TcpProxy(supervisor.HOST, hub.leafnode_port or 0)
        leaf_url = f"nats-leaf://{supervisor.HOST}:{proxy.port}"
        edge = EdgeNatsServer(tmp_path / EDGE, TEST_SECRET, EDGE, [STREET], [leaf_url], max_file_store="2G")
        edge.start()
        asyncio.run(scenario(hub, edge, proxy))
    finally:
        # Every process by its PID, through the supervisor.
        if edge is not None:
            edge.stop()
        if proxy is not None:
            proxy.close()
        hub.stop()


async def scenario(hub: NatsServer, edge: EdgeNatsServer, proxy: TcpProxy) -> None:
    env = {
        "CITYHUB_NATS_URL": hub.url,
        "CITYHUB_NATS_SECRET": TEST_SECRET.decode(),
        "CITYHUB_NATS_TIMEOUT": str(TIMEOUT),
        "CITYHUB_NATS_EDGE": EDGE,
        "CITYHUB_NATS_EDGE_URL": edge.url,
        "CITYHUB_NATS_EDGE_SILENCE": str(SILENCE),
    }
    on_edge = create_driver(env)
    on_hub = MessagingDriver(
        NatsSettings(url=hub.url, secret=TEST_SECRET, public_url=hub.url, timeout=TIMEOUT)
    )
    channel = request(STREET, CHANNEL, share_with=(BUREAU,))
    other = request(STREET, OTHER)
    dispatch = request(BUREAU, "dispatch")
    clients: list[Client] = []
    assert await on_edge.uplinks() == {}  # nothing on the edge yet: nothing to judge the uplink by
    try:
        # 1. The edge's operator provisions the channel; the first tries wait for the edge's leaf node to be
        #    admitted by the account and to connect (retried, as the operator would).
        started = time.monotonic()
        made = await eventually(lambda: on_edge.ensure(channel), within=30)
        print(f"\nchannel ensured on edge {EDGE} after {time.monotonic() - started:.1f} s")
        assert made.endpoints["url"] == edge.url
        assert made == await on_edge.ensure(channel)  # idempotent, byte-identical
        bureau_made = await on_hub.ensure(dispatch)
        assert bureau_made.endpoints["url"] == hub.url

        async def leaf_limit(department: str) -> int:
            return int(((await on_hub.accounts.nats_claims(department)) or {})["limits"]["leaf"])

        # Each driver sets the leaf limit of its own departments only, and keeps the other's.
        assert (await leaf_limit(STREET), await leaf_limit(BUREAU)) == (1, 0)

        app = await connect(edge.url, made, "street-app")
        bureau = await connect(hub.url, bureau_made, "bureau-app")
        clients += [app, bureau]
        received: list[bytes] = []

        async def on_shared(msg: Any) -> None:
            received.append(msg.data)

        await bureau.subscribe(naming.shared_subject(STREET, CHANNEL), cb=on_shared)
        await bureau.flush()
        app_js = app.jetstream(timeout=TIMEOUT)
        published: list[bytes] = []

        async def publish(n: int) -> None:
            ack = await app_js.publish(f"city.{STREET}.{CHANNEL}.gauge-1", f"level-{n}".encode())
            assert (ack.stream, ack.domain) == (CHANNEL, EDGE), ack
            published.append(f"level-{n}".encode())

        for n in range(10):
            await publish(n)
        assert await settled(lambda: len(received) >= 10, timeout=15), received
        seen = await observed(on_edge, channel, lambda s: s.in_sync)
        assert seen.in_sync, seen.drift
        await on_edge.probe(channel, made.credentials)
        assert (await on_hub.observe(dispatch)).drift == ()
        # What cityhub_edge_uplink_up{edge} (the hub's CityhubEdgeUplinkDown) reads; a hub driver: nothing.
        assert await on_edge.uplinks() == {EDGE: True}
        assert await on_hub.uplinks() == {}

        # 2. The uplink is cut: the edge keeps working alone; what needs the hub's reach into it fails.
        proxy.blackhole()
        cut = time.monotonic()
        with pytest.raises(TemporaryBackendError, match=EDGE):
            await on_edge.ensure(other)
        for n in range(10, 30):
            await publish(n)
        await on_edge.probe(channel, made.credentials)  # on the edge: devices and apps there still work
        seen = await observed(on_edge, channel, lambda s: any("uplink down" in d for d in s.drift))
        print(f"observe after {time.monotonic() - cut:.1f} s of cut: {seen.drift}")
        assert not seen.in_sync
        assert any(d.startswith(f"edge {EDGE} uplink down for ") for d in seen.drift), seen.drift
        assert await on_edge.uplinks() == {EDGE: False}
        assert len(received) == 10

        # 3. The uplink is back: in sync again, every message reaches the bureau, in order.
        proxy.restore()
        restored = time.monotonic()
        seen = await observed(on_edge, channel, lambda s: s.in_sync)
        assert seen.in_sync, seen.drift
        assert await settled(lambda: len(received) >= len(published), timeout=30), (len(received), 30)
        print(f"in sync and caught up {time.monotonic() - restored:.1f} s after the uplink returned")
        await asyncio.sleep(0.5)  # anything extra would have arrived by now
        assert received == published
        assert await on_edge.uplinks() == {EDGE: True}
        await eventually(lambda: on_edge.ensure(other), within=30)
        assert (await on_edge.observe(other)).in_sync

        # 4. Delete: the hub's part at once, the edge's once it answers.
        admin = await on_edge.connections.admin(STREET)
        proxy.blackhole()
        with pytest.raises(TemporaryBackendError, match=EDGE):
            await on_edge.delete(other)
        assert not await stream_exists(admin, OTHER, None)
        proxy.restore()
        await eventually(lambda: on_edge.delete(other), within=30)
        assert app.is_connected
        await on_edge.delete(channel)
        # Its credentials stop working on the edge at once (revoked in the edge's copy of the account too, not
        # at the edge's next configuration): the live connection is closed and a new one is refused.
        assert await settled(lambda: not app.is_connected, timeout=10)
        creds = RawCredentials(made.credentials["user.creds"])
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(edge.url, user_credentials=creds, allow_reconnect=False, connect_timeout=3)
        domain = edges.domain(EDGE)
        for name in (CHANNEL, OTHER):
            assert not await stream_exists(admin, name, None)
            assert not await stream_exists(admin, name, domain)
        imports = ((await on_hub.accounts.nats_claims(BUREAU)) or {}).get("imports") or []
        assert [i for i in imports if i.get("name") == naming.import_name(STREET, CHANNEL)] == []
        assert (await leaf_limit(STREET), await leaf_limit(BUREAU)) == (1, 0)
    finally:
        for client in clients:
            await client.close()
        await on_edge.close()
        await on_hub.close()
