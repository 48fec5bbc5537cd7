"""Attacks on messaging's data path: department A, holding only its own Secret's credentials (and asking for
channels as it may), against department B. Each attack fails and B keeps publishing and consuming.

A real nats-server (component_types/messaging/fixtures.py, 1G of JetStream file store) and the real driver,
with small department limits so exhausting them is quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import nats.js.errors
import nkeys
import pytest
from cityhub_operator.driver import PermanentBackendError, Request

from cityhub import supervisor
from cityhub.testkit import settled
from cityhub_nats import jwt
from component_types.messaging.driver import MessagingDriver, NatsSettings
from component_types.messaging.driver.settings import DepartmentLimits
from component_types.messaging.local import NatsServer
from tests.security.messaging_apps import App, keeps_working

pytestmark = pytest.mark.integration
Ki, Mi = 2**10, 2**20
LIMITS = DepartmentLimits(
    file_store=64 * Mi,
    memory_store=8 * Mi,
    streams=250,
    consumers=20,
    connections=6,
    subscriptions=50,
    payload=64 * Ki,
    shares=20,
    shares_per_source=15,
)


def request(
    dept: str, name: str, *, share: tuple[str, ...] = (), memory: bool = False, size: int = Mi
) -> Request:
    spec = {"storage": "memory" if memory else "file", "shareWith": [{"department": d} for d in share]}
    return Request(
        namespace=dept,
        name=name,
        uid=str(uuid.uuid4()),
        department=dept,
        spec=spec,
        limits={"maxAge": 3600, "maxBytes": size, "maxMessages": 100_000},
        plan="standard",
        offering="messaging",
        created_at=int(time.time()),
    )


def run(server: NatsServer, body: Callable[[MessagingDriver], Awaitable[Any]], **over: Any) -> Any:
    settings = NatsSettings(
        url=server.url, secret=server.secret, public_url=server.url, timeout=3.0, **{"limits": LIMITS, **over}
    )

    async def main() -> Any:
        driver = MessagingDriver(settings)
        try:
            return await body(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


async def refused(url: str, creds: str) -> str:
    with pytest.raises(Exception) as caught:  # nats-py reports a refused login several ways
        app = await App.connect(url, creds)
        await app.conn.flush(timeout=2)
    return str(caught.value)


def test_connection_subscription_and_payload_limits(nats_server: NatsServer) -> None:
    a, b = request("atk-conn", "feed"), request("vic-conn", "feed")

    async def body(driver: MessagingDriver) -> None:
        creds_a = (await driver.ensure(a)).credentials["user.creds"]
        creds_b = (await driver.ensure(b)).credentials["user.creds"]
        url = nats_server.url
        # Connections: the account's limit (the operator's own connection counts) is reached, then refused.
        opened, refusal = [], ""
        for _ in range(LIMITS.connections + 1):
            try:
                opened.append(await App.connect(url, creds_a))
            except Exception as e:
                refusal = str(e)
                break
        assert "maximum account active connections exceeded" in refusal, refusal
        assert len(opened) < LIMITS.connections
        await keeps_working(creds_b, url, "vic-conn", "feed")
        for app in opened:
            await app.close()
        # Subscriptions: past the limit the server refuses and drops the connection. On a loaded machine the
        # client may notice the close only as an unanswered flush; what the server told it is what counts.
        app = await App.connect(url, creds_a)
        with pytest.raises((nats.errors.ConnectionClosedError, nats.errors.FlushTimeoutError)):
            for i in range(LIMITS.subscriptions + 5):
                await app.conn.subscribe(f"city.atk-conn.feed.s{i}")
                await app.conn.flush(timeout=10)
        for _ in range(50):
            if app.told("maximum subscriptions exceeded"):
                break
            await asyncio.sleep(0.1)
        assert app.told("maximum subscriptions exceeded")
        # Payload: one byte over the limit is a violation.
        app = await App.connect(url, creds_a)
        with contextlib.suppress(nats.errors.Error):
            await app.conn.publish("city.atk-conn.feed.big", b"x" * (LIMITS.payload + 1))
            await app.conn.flush(timeout=2)
        await settled(lambda: app.told("maximum payload") and app.conn.is_closed)
        assert app.told("maximum payload") and app.conn.is_closed
        # The limits are in the JWTs the server enforces them from: account and user alike.
        limits = (await driver.accounts.nats_claims("atk-conn"))["limits"]
        assert (limits["conn"], limits["subs"], limits["payload"], limits["leaf"]) == (6, 50, 64 * Ki, 0)
        assert limits["max_bytes_required"] and limits["disallow_bearer"]
        user = jwt.decode(creds_a.split("\n")[1])
        assert (user["nats"]["subs"], user["nats"]["payload"]) == (50, 64 * Ki) and user["exp"] > time.time()
        # B publishes messages up to the limit and consumes them.
        big = await App.connect(url, creds_b)
        ack = await big.conn.jetstream().publish("city.vic-conn.feed.big", b"y" * (60 * Ki))
        assert ack.stream == "feed"
        await big.close()
        await keeps_working(creds_b, url, "vic-conn", "feed")

    run(nats_server, body)


def test_storage_streams_and_consumers_are_bounded(nats_server: NatsServer) -> None:
    async def body(driver: MessagingDriver) -> None:
        b = await driver.ensure(request("vic-store", "feed", size=4 * Mi))
        # A fills its quota with channels; the next one is refused naming what is left.
        bigs = [request("atk-store", f"big-{i}", size=30 * Mi) for i in range(2)]
        for big in bigs:
            await driver.ensure(big)
        with pytest.raises(PermanentBackendError) as over:
            await driver.ensure(request("atk-store", "big-2", size=30 * Mi))
        assert over.value.reason == "OverDepartmentLimits"
        assert "reserve 60Mi of its JetStream file store 64Mi (CITYHUB_NATS_ACCOUNT_FILE_STORE)" in str(
            over.value
        )
        with pytest.raises(PermanentBackendError, match="JetStream memory store 8Mi"):
            await driver.ensure(request("atk-store", "mem", memory=True, size=16 * Mi))
        mem = await driver.ensure(request("atk-store", "mem-ok", memory=True, size=2 * Mi))
        # The account's JetStream limits are what its channels reserve, and room for one message each.
        limits = (await driver.accounts.nats_claims("atk-store"))["limits"]
        message = LIMITS.payload + 4 * Ki
        assert (limits["disk_storage"], limits["mem_storage"]) == (60 * Mi + 2 * message, 2 * Mi + message)
        # Publishing more than a stream holds discards the oldest: the reservation is never passed.
        app = await App.connect(nats_server.url, mem.credentials["user.creds"])
        js = app.conn.jetstream(timeout=3)
        for _ in range(60):
            await js.publish("city.atk-store.mem-ok.flood", b"z" * (60 * Ki))
        assert (await js.stream_info("mem-ok")).state.bytes <= 2 * Mi
        # A's credentials cannot make streams of their own (an unbounded one least of all).
        with pytest.raises(
            (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.APIError)
        ):
            await js.add_stream(name="mine", subjects=["city.atk-store.mine.>"])
        # Consumers: the account's limit.
        with pytest.raises(nats.js.errors.APIError) as consumers:
            for i in range(LIMITS.consumers + 1):
                await js.add_consumer("mem-ok", durable_name=f"c{i}")
        assert consumers.value.err_code == 10026, consumers.value
        await app.close()
        # A department whose quota is larger than the server's room is refused naming the server's room;
        # a quota lowered below what a department holds still renews its channels (they do not grow).
        roomy = MessagingDriver(
            dataclasses.replace(driver.settings, limits=DepartmentLimits(file_store=2**40))
        )
        lowered = dataclasses.replace(driver.settings, limits=dataclasses.replace(LIMITS, file_store=16 * Mi))
        smaller = MessagingDriver(lowered)
        try:
            with pytest.raises(PermanentBackendError) as server_full:
                await roomy.ensure(request("atk-store-2", "huge", size=3 * 2**30))
            await smaller.ensure(bigs[0])
        finally:
            await roomy.close()
            await smaller.close()
        assert server_full.value.reason == "BackendRefused"
        text = str(server_full.value)
        assert "JetStream file store (maxFileStore)" in text and "unreserved" in text, text
        # B still creates channels, publishes and consumes.
        more = await driver.ensure(request("vic-store", "more", size=30 * Mi))
        await keeps_working(b.credentials["user.creds"], nats_server.url, "vic-store", "feed")
        await keeps_working(more.credentials["user.creds"], nats_server.url, "vic-store", "more")

    run(nats_server, body)


def test_a_share_flood_is_capped_and_the_reader_keeps_working(nats_server: NatsServer) -> None:
    async def body(driver: MessagingDriver) -> None:
        own = await driver.ensure(request("vic-share", "feed"))
        accepted, refusals = 0, []
        for i in range(200):
            try:
                await driver.ensure(request("atk-share", f"ch-{i}", share=("vic-share",), size=64 * Ki))
                accepted += 1
            except PermanentBackendError as e:
                refusals.append(e)
        assert accepted == LIMITS.shares_per_source and len(refusals) == 200 - accepted
        assert {e.reason for e in refusals} == {"TooManyShares"}
        assert "department vic-share already receives 15 channels from atk-share" in str(refusals[0])
        # Refused before anything changed: no stream, no export for the refused channels.
        admin = await driver.connections.admin("atk-share")
        names = {s.config.name for s in await admin.jetstream().streams_info()}
        assert names == {f"ch-{i}" for i in range(accepted)}
        exports = (await driver.accounts.nats_claims("atk-share")).get("exports") or []
        assert len(exports) == accepted
        # Another department still has room to share with B, up to B's total.
        others = [request("other-share", f"ch-{i}", share=("vic-share",), size=64 * Ki) for i in range(5)]
        for other in others:
            await driver.ensure(other)
        with pytest.raises(PermanentBackendError, match="vic-share already receives 20 shared channels"):
            await driver.ensure(request("third-share", "one", share=("vic-share",), size=64 * Ki))
        account = await driver.accounts.lookup("vic-share")
        assert len(account["nats"]["imports"]) == LIMITS.shares
        assert len(json.dumps(account)) < 64 * Ki  # far below what a NATS message may hold
        # B's own updates go through: a new channel, shared with A, and both work.
        created = await driver.ensure(request("vic-share", "after-flood", share=("atk-share",)))
        await keeps_working(created.credentials["user.creds"], nats_server.url, "vic-share", "after-flood")
        await keeps_working(own.credentials["user.creds"], nats_server.url, "vic-share", "feed")
        reader = await App.connect(nats_server.url, own.credentials["user.creds"])
        got: list[bytes] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.data)

        await reader.conn.subscribe("shared.other-share.ch-0.>", cb=on_msg)
        await reader.conn.flush()
        src = await driver.ensure(others[0])
        pub = await App.connect(nats_server.url, src.credentials["user.creds"])
        await pub.conn.publish("city.other-share.ch-0.x", b"shared")
        await pub.conn.flush()
        await settled(lambda: bool(got))
        await asyncio.sleep(0.3)  # and nothing more
        assert got == [b"shared"]
        for app in (reader, pub):
            await app.close()

    run(nats_server, body)


def test_deleted_or_orphaned_channels_credentials_are_refused(nats_server: NatsServer) -> None:
    url = nats_server.url

    async def body(driver: MessagingDriver) -> None:
        victim = await driver.ensure(request("vic-rev", "feed"))
        deleted = request("atk-rev", "gone", share=("vic-rev",))
        orphaned = request("atk-rev", "kept", share=("vic-rev",))
        creds_deleted = (await driver.ensure(deleted)).credentials["user.creds"]
        creds_orphaned = (await driver.ensure(orphaned)).credentials["user.creds"]
        live = await App.connect(url, creds_orphaned)
        await live.conn.jetstream().publish("city.atk-rev.kept.x", b"kept")
        await driver.delete(deleted)
        await driver.orphan(orphaned)  # deletionPolicy: Orphan
        await settled(lambda: live.conn.is_closed or not live.conn.is_connected)
        assert live.conn.is_closed or not live.conn.is_connected  # the server dropped the revoked user
        for creds in (creds_deleted, creds_orphaned):
            assert "authorization" in (await refused(url, creds)).lower()
        # Orphan keeps the stream and its messages for the department; its shares are withdrawn.
        names = {
            s.config.name
            for s in await (await driver.connections.admin("atk-rev")).jetstream().streams_info()
        }
        assert names == {"kept"}
        assert not (await driver.accounts.nats_claims("vic-rev")).get("imports")
        assert not (await driver.accounts.nats_claims("atk-rev")).get("exports")
        other = await driver.ensure(request("atk-rev", "other"))
        reader = await App.connect(url, other.credentials["user.creds"])
        assert (await reader.conn.jetstream().stream_info("kept")).state.messages == 1
        await reader.close()
        await keeps_working(victim.credentials["user.creds"], url, "vic-rev", "feed")

    run(nats_server, body)


def test_credentials_are_renewed_and_revocations_pruned_after_their_lifetime(nats_server: NatsServer) -> None:
    """CITYHUB_NATS_CREDENTIALS_LIFETIME=12s: renewed every 4s; a revocation older than 12s is dropped."""
    url, lifetime = nats_server.url, 12

    async def body(driver: MessagingDriver) -> None:
        victim = request("vic-prune", "feed")
        await driver.ensure(victim)
        feed = request("atk-prune", "feed", share=("vic-prune",))
        first = (await driver.ensure(feed)).credentials["user.creds"]
        claims = jwt.decode(first.split("\n")[1])
        assert claims["exp"] - claims["iat"] == lifetime
        dead = request("atk-prune", "dead")
        dead_creds = (await driver.ensure(dead)).credentials["user.creds"]
        withdrawn = request("atk-prune", "shared", share=("vic-prune", "third-prune"))
        await driver.ensure(withdrawn)
        revoked_at = time.time()
        await driver.delete(dead)
        await driver.ensure(dataclasses.replace(withdrawn, spec={"shareWith": [{"department": "vic-prune"}]}))
        account = await driver.accounts.nats_claims("atk-prune")
        assert driver.user(dead).public in account["revocations"]
        (export,) = [e for e in account["exports"] if e["name"] == "channel/shared"]
        assert driver.keys.account("third-prune").public in export["revocations"]
        # A renewal period later the drift check asks for new credentials and a new activation.
        await asyncio.sleep(max(0.0, feed.created_at + lifetime / 3 + 0.5 - time.time()))
        drift = " ".join((await driver.observe(feed)).drift)
        assert (
            "credentials are due for renewal" in drift and "import atk-prune/feed is due for renewal" in drift
        )
        second = (await driver.ensure(feed)).credentials["user.creds"]
        assert second != first and jwt.decode(second.split("\n")[1])["exp"] > claims["exp"]
        assert (await driver.observe(feed)).in_sync
        # Once a lifetime has passed since the revocations, every token they refused has expired: pruned.
        await asyncio.sleep(max(0.0, revoked_at + lifetime + 1.5 - time.time()))
        latest = (await driver.ensure(feed)).credentials["user.creds"]  # any change tidies the account
        account = await driver.accounts.nats_claims("atk-prune")
        assert driver.user(dead).public not in (account.get("revocations") or {})
        (export,) = [e for e in account["exports"] if e["name"] == "channel/shared"]
        assert "revocations" not in export
        for old in (dead_creds, first):  # the server says "authorization violation" for an expired JWT too
            assert "authorization" in (await refused(url, old)).lower()
        await keeps_working(latest, url, "atk-prune", "feed")

    run(nats_server, body, credentials_lifetime=lifetime)


def test_snooping_on_another_department_is_refused(nats_server: NatsServer) -> None:
    url = nats_server.url

    async def body(driver: MessagingDriver) -> None:
        victim = await driver.ensure(request("vic-snoop", "secret"))
        mine = await driver.ensure(request("atk-snoop", "secret"))  # the same stream name, in A's account
        app = await App.connect(url, mine.credentials["user.creds"])
        subscriptions = (
            "city.vic-snoop.>",
            "$JS.API.>",
            "$JS.API.STREAM.INFO.secret",
            "$SYS.>",
            ">",
        )
        publishes = (
            "city.vic-snoop.secret.forged",
            "$JS.API.STREAM.DELETE.secret",
            "$JS.API.STREAM.PURGE.secret",
            "$JS.API.STREAM.CREATE.stolen",
            "$SYS.REQ.CLAIMS.UPDATE",
            "$SYS.REQ.ACCOUNT.PING.CONNZ",
        )
        for subject in subscriptions:
            await app.conn.subscribe(subject)
        for subject in publishes:
            await app.conn.publish(subject, b"{}")
        await app.conn.flush()
        await settled(
            lambda: (
                all(app.told(f'subscription to "{s}"') for s in subscriptions)
                and all(app.told(f'publish to "{s}"') for s in publishes)
            )
        )
        for subject in subscriptions:
            assert app.told(f'subscription to "{subject}"'), (subject, app.errors)
        for subject in publishes:
            assert app.told(f'publish to "{subject}"'), (subject, app.errors)
        # The JetStream API A may use answers for A's account only: "secret" is A's own stream there.
        info = await app.conn.jetstream(timeout=3).stream_info("secret")
        assert info.config.subjects == ["city.atk-snoop.secret", "city.atk-snoop.secret.>"]
        # Every inbox of A's account: nothing of B's replies arrives while B talks to JetStream.
        snooped: list[bytes] = []

        async def on_msg(msg: Any) -> None:
            snooped.append(msg.data)

        await app.conn.subscribe("_INBOX.>", cb=on_msg)
        await app.conn.subscribe("shared.vic-snoop.>", cb=on_msg)  # allowed, but B shares nothing with A
        await app.conn.flush()
        await keeps_working(victim.credentials["user.creds"], url, "vic-snoop", "secret")
        await asyncio.sleep(0.2)
        assert snooped == []
        await app.close()
        # Forged credentials: a user JWT signed with A's own user key, and A's JWT with another seed.
        seed = mine.credentials["user.creds"].split("BEGIN USER NKEY SEED-----\n")[1].split("\n")[0]
        a_user = jwt.Key(seed, nkeys.from_seed(seed.encode()).public_key.decode())
        everything = {"allow": [">"]}
        forged = jwt.user_jwt(a_user, a_user, "forged", everything, everything)
        assert "authorization" in (await refused(url, jwt.creds(forged, a_user))).lower()
        other_seed = nkeys.encode_seed(uuid.uuid4().bytes * 2, nkeys.PREFIX_BYTE_USER).decode()
        stolen = mine.credentials["user.creds"].replace(seed, other_seed)
        assert "authorization" in (await refused(url, stolen)).lower()
        await keeps_working(victim.credentials["user.creds"], url, "vic-snoop", "secret")

    run(nats_server, body)


def test_the_probe_never_dials_the_url_in_the_secret(nats_server: NatsServer) -> None:
    """SSRF: whoever can write the Secret can change its url; the probe takes only the credentials."""

    async def body(driver: MessagingDriver) -> None:
        req = request("ssrf-a", "feed")
        result = await driver.ensure(req)
        dialled: list[int] = []

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            dialled.append(1)
            writer.close()

        port = supervisor.free_port()
        trap = await asyncio.start_server(on_connection, supervisor.HOST, port)
        secret = {**result.endpoints, **result.credentials, "url": f"nats://{supervisor.HOST}:{port}"}
        try:
            await driver.probe(req, secret)  # succeeds: on the operator's own server
            other = (await driver.ensure(request("ssrf-b", "feed"))).credentials["user.creds"]
            with pytest.raises(PermanentBackendError, match="not this channel's"):
                await driver.probe(req, {**secret, "user.creds": other})
        finally:
            trap.close()
            await trap.wait_closed()
        assert dialled == []

    run(nats_server, body)


def test_names_never_collide_across_departments(nats_server: NatsServer) -> None:
    """Accounts are per department (the namespace), streams per account, subjects and import names join
    with characters no namespace or name may hold: `dept-x`/`y-z` and `dept-x-y`/`z` stay apart, and so do
    two departments' channels of the same name."""
    reqs = [
        request("dept-x", "y-z", share=("nm-reader",)),
        request("dept-x-y", "z", share=("nm-reader",)),
        request("nm-a", "alerts"),
        request("nm-b", "alerts"),
    ]

    async def body(driver: MessagingDriver) -> None:
        results = [await driver.ensure(r) for r in reqs]
        for key in ("account", "user"):
            assert len({r.backend[key] for r in results}) == 4, key
        assert len({r.endpoints["subjects"] for r in results}) == 4
        imports = (await driver.accounts.nats_claims("nm-reader"))["imports"]
        assert sorted((i["name"], i["local_subject"]) for i in imports) == [
            ("dept-x-y/z", "shared.dept-x-y.z.>"),
            ("dept-x/y-z", "shared.dept-x.y-z.>"),
        ]
        for req, result in zip(reqs, results, strict=True):
            admin = await driver.connections.admin(req.department)
            info = await admin.jetstream().stream_info(req.name)
            assert info.config.metadata["cityhub.io/uid"] == req.uid
            await keeps_working(result.credentials["user.creds"], nats_server.url, req.department, req.name)
            assert info.state.messages == 0  # nothing another department published landed here
        await driver.delete(reqs[2])
        await keeps_working(results[3].credentials["user.creds"], nats_server.url, "nm-b", "alerts")
        assert (
            "authorization" in (await refused(nats_server.url, results[2].credentials["user.creds"])).lower()
        )

    run(nats_server, body)
