"""An edge cluster's messaging with real nats-servers (issue 18, 多级贯通): a street office publishes to its
edge's leaf node while the edge's uplink to the hub is cut, and the hub catches up afterwards.

The hub's nats-server (operator mode, `full` resolver, JetStream domain `hub`, a leafnode listener) and the
edge's (component_types/messaging/edge_config.py: JetStream domain `xihu-edge`, a leaf remote for the street
office's account, accounts preloaded) are joined through a TcpProxy that can go silent. The street office's
account, the city bureau's share and the streams are made with the driver's own code (accounts, shares,
reservations, driver/edges.py): the edge's stream and its durable sourcing consumer from the hub through the
leaf node, the hub's stream sourcing it across domains. The uplink is cut for CUT_SECONDS (60 s, the issue's
figure, not shortened: the whole test takes about 70 s) while a device keeps publishing on the edge; then
every message published meanwhile reaches the hub's stream and the bureau's share, in order, none lost,
none twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from cityhub_operator.driver import Request, TemporaryBackendError
from nats.aio.client import Client, RawCredentials
from nats.js.api import StorageType

from cityhub import supervisor
from cityhub.supervisor import ProcessFailed
from cityhub.testkit import TcpProxy, settled
from cityhub_nats import jwt
from component_types.messaging import edges, naming
from component_types.messaging.driver import MessagingDriver, NatsSettings, shares
from component_types.messaging.driver import edges as edge_streams
from component_types.messaging.driver.reservations import Reserved, reserving
from component_types.messaging.driver.revocations import chain
from component_types.messaging.fixtures import TEST_SECRET
from component_types.messaging.local import NatsServer, nats_server_binary
from component_types.messaging.local_edge import EdgeNatsServer

pytestmark = pytest.mark.integration

CUT_SECONDS = 60.0
"""How long the uplink is cut (the issue's 60 s)."""
PUBLISH_EVERY = 0.1
"""A device's publishing interval on the edge: about 600 messages during the cut."""
EDGE = "xihu-edge"
HUB_DOMAIN = "hub"
STREET = "xihu-hubin"  # 湖滨街道, on the edge
BUREAU = "jiaotong"  # a city bureau on the hub, the channel shared with it
CHANNEL = "water-level"
MAX_BYTES = 64 * 2**20
TIMEOUT = 5.0


def channel_request() -> Request:
    return Request(
        namespace=STREET,
        name=CHANNEL,
        uid=str(uuid.uuid4()),
        department=STREET,
        spec={"offering": "messaging", "storage": "file", "shareWith": [{"department": BUREAU}]},
        limits={"maxAge": 3600, "maxBytes": MAX_BYTES, "maxMessages": 100_000},
        plan="standard",
        offering="messaging",
        created_at=int(time.time()),
    )


def department_creds(driver: MessagingDriver, department: str, label: str) -> str:
    """Credentials like a channel's Secret holds (the driver's permissions for the department)."""
    user, account = driver.keys.user(label), driver.keys.account(department)
    pub, sub = naming.user_permissions(department)
    return jwt.creds(jwt.user_jwt(user, account, label, pub, sub), user)


async def connect(url: str, creds: str, name: str) -> Client:
    async def quiet(e: Exception) -> None:
        pass

    return await nats.connect(
        url, user_credentials=RawCredentials(creds), name=name, connect_timeout=3, error_cb=quiet
    )


async def provision(driver: MessagingDriver, request: Request) -> None:
    """What the operator would do for a street office's channel on edge EDGE, with the driver's code."""
    now = int(time.time())
    window = driver.window(request, now)
    hub_stream = Reserved().plus(StorageType.FILE, MAX_BYTES)
    export = shares.export_change(driver.keys, STREET, CHANNEL, {BUREAU}, set(), now)
    # The street office's account on the hub: the hub stream's room, one leaf node (its edge), the export.
    await driver.accounts.modify(
        STREET, chain(reserving(driver.limits, hub_stream), edge_streams.admitting_leaf_nodes(1), export)
    )
    entry = shares.import_entry(driver.keys, STREET, CHANNEL, BUREAU, window)
    await driver.accounts.modify(BUREAU, shares.granting(driver.limits, BUREAU, entry, STREET))


async def ensure_edge_stream(driver: MessagingDriver, request: Request, issued: int) -> float:
    """The edge's stream, made from the hub through the leaf node once it is connected; seconds waited."""
    admin = await driver.connections.admin(STREET)
    started = time.monotonic()
    while True:
        try:
            await edge_streams.ensure_on_edge(admin, request, EDGE, issued, TIMEOUT)
            return time.monotonic() - started
        except TemporaryBackendError:
            if time.monotonic() - started > 30:
                raise
            await asyncio.sleep(0.5)


async def hub_messages(admin: Client) -> int:
    return (await admin.jetstream(timeout=TIMEOUT).stream_info(CHANNEL)).state.messages


def test_edge_keeps_publishing_while_its_uplink_is_cut_and_the_hub_catches_up(tmp_path: Path) -> None:
    try:
        nats_server_binary()
    except ProcessFailed as e:
        pytest.fail(str(e), pytrace=False)
    hub = NatsServer(
        tmp_path / "hub", TEST_SECRET, max_file_store="1G", leafnode_port=0, jetstream_domain=HUB_DOMAIN
    )
    proxy: TcpProxy | None = None
    edge: EdgeNatsServer | None = None
    try:
        hub.start()
        proxy = TcpProxy(supervisor.HOST, hub.leafnode_port or 0)
        edge = EdgeNatsServer(
            tmp_path / EDGE,
            TEST_SECRET,
            EDGE,
            [STREET],
            [f"nats-leaf://{supervisor.HOST}:{proxy.port}"],
            max_file_store="2G",
        )
        asyncio.run(scenario(hub, edge, proxy))
    finally:
        # Every process by its PID, through the supervisor.
        if edge is not None:
            edge.stop()
        if proxy is not None:
            proxy.close()
        hub.stop()


async def scenario(hub: NatsServer, edge: EdgeNatsServer, proxy: TcpProxy) -> None:
    settings = NatsSettings(url=hub.url, secret=TEST_SECRET, public_url=hub.url, timeout=TIMEOUT)
    driver = MessagingDriver(settings)
    request = channel_request()
    issued, _ = driver.window(request, int(time.time()))
    clients: list[Client] = []
    try:
        await provision(driver, request)
        edge.start()
        waited = await ensure_edge_stream(driver, request, issued)
        print(f"\nedge stream made through the leaf node after {waited:.1f} s")
        admin = await driver.connections.admin(STREET)
        await edge_streams.ensure_on_hub(admin, request, EDGE, 1, issued, TIMEOUT)

        # A device of the street office on the edge; the bureau's application and the street office's
        # own dashboard on the hub.
        device = await connect(edge.url, department_creds(driver, STREET, f"{STREET}/device/1"), "device")
        bureau = await connect(hub.url, department_creds(driver, BUREAU, f"{BUREAU}/app/1"), "bureau")
        dashboard = await connect(hub.url, department_creds(driver, STREET, f"{STREET}/hub/1"), "dashboard")
        clients += [device, bureau, dashboard]
        shared: list[tuple[str, bytes]] = []

        async def on_shared(msg: Any) -> None:
            shared.append((msg.subject, msg.data))

        await bureau.subscribe(naming.shared_subject(STREET, CHANNEL), cb=on_shared)
        await bureau.flush()

        device_js = device.jetstream(timeout=TIMEOUT)
        published: list[tuple[str, bytes]] = []

        async def publish(n: int) -> None:
            sensor = ("gauge-1", "gauge-2")[n % 2]
            subject, payload = f"city.{STREET}.{CHANNEL}.{sensor}", f"level-{n}".encode()
            ack = await device_js.publish(subject, payload)  # acked by the edge's own JetStream
            assert (ack.stream, ack.domain, ack.seq) == (CHANNEL, EDGE, n + 1), ack
            published.append((subject, payload))

        # 1. Uplink up: what the device publishes reaches the hub's stream and the bureau's share.
        before = 20
        started = time.monotonic()
        for n in range(before):
            await publish(n)
        assert await settled(lambda: len(shared) >= before, timeout=30), len(shared)
        print(f"{before} messages on the hub through the uplink in {time.monotonic() - started:.2f} s")
        assert await hub_messages(admin) == before
        # The uplink carries JetStream's sourcing, not the edge's way into the hub: even the operator's
        # own credentials on the edge cannot reach the hub's JetStream through it.
        edge_admin = await connect(edge.url, driver.keys.admin_creds(STREET), "edge-admin")
        clients.append(edge_admin)
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await edge_admin.request(f"$JS.{HUB_DOMAIN}.API.STREAM.INFO.{CHANNEL}", b"", timeout=2)

        # 2. Uplink cut: the edge keeps taking every message; nothing reaches the hub.
        proxy.blackhole()
        cut_at = time.monotonic()
        n = before
        while time.monotonic() - cut_at < CUT_SECONDS:
            await publish(n)
            n += 1
            await asyncio.sleep(PUBLISH_EVERY)
        during = n - before
        assert await hub_messages(admin) == before
        assert len(shared) == before
        # What the hub sees of the edge meanwhile (what an alert can watch): its source not heard from.
        (source,) = (await admin.jetstream(timeout=TIMEOUT).stream_info(CHANNEL)).sources or []
        print(
            f"{during} messages published and acked on the edge during the {CUT_SECONDS:.0f} s cut; "
            f"the hub's source last active {source.active / 1e9 if source.active else 0:.0f} s ago"
        )

        # 3. Uplink back: the hub's sourcing consumer resumes where it stopped.
        proxy.restore()
        restored = time.monotonic()
        total = before + during

        async def caught_up() -> bool:
            return await hub_messages(admin) >= total

        while not await caught_up():
            assert time.monotonic() - restored < 120, f"hub has {await hub_messages(admin)} of {total}"
            await asyncio.sleep(0.2)
        catch_up = time.monotonic() - restored
        assert await settled(lambda: len(shared) >= total, timeout=30), (len(shared), total)
        print(f"hub caught up with {during} messages {catch_up:.1f} s after the uplink returned")

        # In order, none lost, none twice: in the hub's stream …
        assert await hub_messages(admin) == total
        sub = await dashboard.jetstream(timeout=TIMEOUT).pull_subscribe(
            naming.channel_wildcard(STREET, CHANNEL), durable="dashboard", stream=CHANNEL
        )
        stored: list[tuple[str, bytes]] = []
        while len(stored) < total:
            for msg in await sub.fetch(min(500, total - len(stored)), timeout=TIMEOUT):
                stored.append((msg.subject, msg.data))
                await msg.ack()
        assert stored == published
        # … and on the bureau's share, under its shared.<department>.<channel> subjects.
        await asyncio.sleep(1.0)  # anything extra would have arrived by now
        prefix = f"shared.{STREET}."
        assert [(s.replace(prefix, f"city.{STREET}.", 1), d) for s, d in shared] == published
        info = await admin.jetstream(timeout=TIMEOUT).stream_info(CHANNEL)
        assert info.config.subjects in (None, [])
        assert [s.external.api for s in info.config.sources or [] if s.external] == [edges.api_prefix(EDGE)]
    finally:
        for client in clients:
            await client.close()
        await driver.close()
