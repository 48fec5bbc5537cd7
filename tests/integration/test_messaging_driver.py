"""The messaging driver alone against a real nats-server (JetStream, decentralized JWT auth)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import RawCredentials

from cityhub import supervisor
from cityhub.local_backends import LocalContext
from cityhub.supervisor import Supervisor
from cityhub.testkit import settled
from cityhub_api.settings import cache_dir
from cityhub_nats import jwt
from component_types.messaging import local
from component_types.messaging.driver import MessagingDriver, NatsSettings, create_driver
from component_types.messaging.driver.settings import DepartmentLimits
from component_types.messaging.local import NatsServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(nats_server: NatsServer) -> NatsServer:
    """component_types/messaging/fixtures.py: 1G of JetStream file store, which refusals rely on."""
    return nats_server


def settings(server: NatsServer, **over: Any) -> NatsSettings:
    return NatsSettings(url=server.url, secret=server.secret, public_url=server.url, timeout=3.0, **over)


def request(department: str, name: str, *, share: tuple[str, ...] = (), **limits: int) -> Request:
    spec = {"offering": "messaging", "storage": "file", "shareWith": [{"department": d} for d in share]}
    limits = {"maxAge": 3600, "maxBytes": 64 * 2**20, "maxMessages": 10_000, **limits}
    return Request(
        namespace=department,
        name=name,
        uid=str(uuid.uuid4()),
        department=department,
        spec=spec,
        limits=limits,
        plan="standard",
        offering="messaging",
        created_at=int(time.time()),
    )


def run(server: NatsServer, body: Callable[[MessagingDriver], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        driver = MessagingDriver(settings(server))
        try:
            return await body(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


class Client:
    """A department application connected with the credentials a Secret would hold."""

    def __init__(self, conn: nats.aio.client.Client, errors: list[Exception]) -> None:
        self.conn, self.errors = conn, errors

    @classmethod
    async def connect(cls, url: str, creds: str) -> Client:
        errors: list[Exception] = []

        async def on_error(e: Exception) -> None:
            errors.append(e)

        conn = await nats.connect(
            url,
            user_credentials=RawCredentials(creds),
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=3,
        )
        return cls(conn, errors)

    def violations(self) -> list[str]:
        return [str(e) for e in self.errors if "permissions violation" in str(e).lower()]

    async def receives(
        self, subject: str, publish: Callable[[], Awaitable[None]], *, expect: int = 0
    ) -> list[bytes]:
        """What arrives on `subject` after `publish`: waits up to 5 s for `expect` messages (a loaded CI
        host delivered a granted message after the old fixed 0.3 s), then 0.3 s more for any extra."""
        got: list[bytes] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.data)

        sub = await self.conn.subscribe(subject, cb=on_msg)
        await self.conn.flush()
        await publish()
        deadline = time.monotonic() + 5.0
        while len(got) < expect and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await sub.unsubscribe()
        return got


def test_credentials_publish_and_consume_only_on_the_departments_subjects(server: NatsServer) -> None:
    req = request("jiaotong", "traffic-events", maxMessages=500)

    async def body(driver: MessagingDriver) -> None:
        result = await driver.ensure(req)
        assert result.endpoints["subjects"] == "city.jiaotong.traffic-events.>"
        assert result.backend["stream"] == "traffic-events"
        assert set(result.credentials) == {"user.creds"}
        app = await Client.connect(result.endpoints["url"], result.credentials["user.creds"])
        js = app.conn.jetstream()
        ack = await js.publish("city.jiaotong.traffic-events.cam-17", b"congestion")
        assert ack.stream == "traffic-events"
        sub = await js.pull_subscribe("city.jiaotong.traffic-events.>", durable="dashboard")
        (msg,) = await sub.fetch(1, timeout=3)
        assert msg.data == b"congestion"
        await msg.ack()
        info = await js.stream_info("traffic-events")
        assert (info.config.max_msgs, info.config.max_bytes, round(info.config.max_age)) == (
            500,
            64 * 2**20,
            3600,
        )
        # The credentials expire (renewed by the operator); the account's JetStream limits are what its
        # streams reserve (and room for one message each), with the department's other limits.
        token = jwt.decode(result.credentials["user.creds"].split("\n")[1])
        assert token["exp"] - token["iat"] == 30 * 86400 and token["exp"] > time.time() + 20 * 86400
        limits = (await driver.accounts.nats_claims("jiaotong"))["limits"]
        assert limits["disk_storage"] == 64 * 2**20 + 2**20 + 4 * 2**10 and limits["mem_storage"] == 0
        assert (limits["conn"], limits["leaf"], limits["streams"]) == (100, 0, 100)
        # Another department's subjects: refused both ways.
        await app.conn.publish("city.yingji.alerts.x", b"spoof")
        await app.conn.subscribe("city.yingji.>")
        await app.conn.flush()
        await settled(lambda: len(app.violations()) >= 2)
        violations = app.violations()
        assert any('publish to "city.yingji.alerts.x"' in v for v in violations), violations
        assert any('subscription to "city.yingji.>"' in v for v in violations), violations
        # Streams belong to the operator: the department's credentials cannot delete or create them.
        with pytest.raises(
            (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.APIError)
        ):
            await js.delete_stream("traffic-events")
        assert (await js.stream_info("traffic-events")).config.name == "traffic-events"
        await app.conn.close()

    run(server, body)


def test_ensure_is_idempotent_and_deterministic(server: NatsServer) -> None:
    req = request("chengguan", "cases")

    async def body(driver: MessagingDriver) -> None:
        first = await driver.ensure(req)
        jwt_before = await driver.accounts.lookup("chengguan")
        second = await driver.ensure(req)
        assert first == second  # same credentials, byte for byte
        assert await driver.accounts.lookup("chengguan") == jwt_before  # nothing pushed the second time
        admin = await driver.connections.admin("chengguan")
        names = await admin.jetstream().streams_info()
        assert [s.config.name for s in names].count("cases") == 1
        observed = await driver.observe(req)
        assert observed.in_sync, observed.drift

    run(server, body)

    # A fresh driver (an operator restart) derives the same keys and credentials.
    async def again(driver: MessagingDriver) -> None:
        assert (await driver.ensure(req)).credentials == first_creds

    first_creds = run(server, lambda d: d.ensure(req)).credentials
    run(server, again)


def test_sharing_is_explicit_and_revocable(server: NatsServer) -> None:
    source = request("yingji", "alerts", share=("jiaotong",))
    reader = request("jiaotong", "inbox")
    outsider = request("weijian", "inbox")

    async def body(driver: MessagingDriver) -> None:
        src = await driver.ensure(source)
        granted = await Client.connect(server.url, (await driver.ensure(reader)).credentials["user.creds"])
        other = await Client.connect(server.url, (await driver.ensure(outsider)).credentials["user.creds"])
        pub = await Client.connect(server.url, src.credentials["user.creds"])

        async def publish() -> None:
            await pub.conn.publish("city.yingji.alerts.typhoon", b"signal 8")
            await pub.conn.flush()

        assert await granted.receives("shared.yingji.alerts.>", publish, expect=1) == [b"signal 8"]
        assert await other.receives("shared.yingji.alerts.>", publish) == []  # not granted: nothing arrives
        await other.conn.subscribe("city.yingji.>")  # nor may it read the source subjects
        await other.conn.flush()
        await settled(lambda: any("city.yingji.>" in v for v in other.violations()))
        assert any("city.yingji.>" in v for v in other.violations())

        # Withdraw the grant: the reader stops receiving.
        await driver.ensure(dataclasses.replace(source, spec={"shareWith": []}))
        assert await granted.receives("shared.yingji.alerts.>", publish) == []
        claims = await driver.accounts.lookup("jiaotong")
        assert not claims["nats"].get("imports")
        # Grant again, then delete the channel: imports and export go, readers get nothing.
        await driver.ensure(source)
        assert await granted.receives("shared.yingji.alerts.>", publish, expect=1) == [b"signal 8"]
        await driver.delete(source)
        assert not (await driver.accounts.lookup("jiaotong"))["nats"].get("imports")
        assert not (await driver.accounts.lookup("yingji"))["nats"].get("exports")
        for c in (granted, other, pub):
            await c.conn.close()

    run(server, body)


def test_delete_revokes_the_credentials_and_removes_the_stream(server: NatsServer) -> None:
    req = request("huanbao", "air-quality")

    async def body(driver: MessagingDriver) -> None:
        creds = (await driver.ensure(req)).credentials["user.creds"]
        app = await Client.connect(server.url, creds)
        await driver.delete(req)
        await settled(lambda: app.conn.is_closed or not app.conn.is_connected)
        assert app.conn.is_closed or not app.conn.is_connected  # the server dropped the revoked user
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await Client.connect(server.url, creds)
        admin = await driver.connections.admin("huanbao")
        with pytest.raises(nats.js.errors.NotFoundError):
            await admin.jetstream().stream_info("air-quality")
        await driver.delete(req)  # idempotent
        observed = await driver.observe(req)
        assert not observed.in_sync

    run(server, body)


def test_drift_is_observed_and_repaired(server: NatsServer) -> None:
    req = request("shuiwu", "levels", share=("yingji",))

    async def body(driver: MessagingDriver) -> None:
        await driver.ensure(req)
        admin = await driver.connections.admin("shuiwu")
        await admin.jetstream().delete_stream("levels")  # out of band
        await driver.accounts.modify("yingji", lambda c: c.update(imports=[]))
        observed = await driver.observe(req)
        assert not observed.in_sync
        assert any("stream levels is missing" in d for d in observed.drift), observed.drift
        assert any("lacks import shuiwu/levels" in d for d in observed.drift), observed.drift
        await driver.ensure(req)
        assert (await driver.observe(req)).in_sync
        # New department limits in the settings reach the account at the next repair.
        changed = dataclasses.replace(driver.settings, limits=DepartmentLimits(connections=50))
        other = MessagingDriver(changed)
        try:
            seen = await other.observe(req)
            assert seen.drift == (
                "the limits of department shuiwu's NATS account differ from its settings and streams",
            )
            await other.ensure(req)
            assert (await other.observe(req)).in_sync
            assert (await other.accounts.nats_claims("shuiwu"))["limits"]["conn"] == 50
        finally:
            await other.close()

    run(server, body)


def test_backend_refusal_is_permanent_and_leaves_nothing(server: NatsServer) -> None:
    req = request("ziranziyuan", "imagery", maxBytes=5 * 2**30)  # the server allows 1G of file store

    async def body(driver: MessagingDriver) -> None:
        with pytest.raises(PermanentBackendError) as refused:
            await driver.ensure(req)
        assert refused.value.reason == "BackendRefused"
        message = str(refused.value)
        assert "NATS has no room for spec.limits.maxBytes=5Gi" in message and "unreserved" in message, message
        admin = await driver.connections.admin("ziranziyuan")
        with pytest.raises(nats.js.errors.NotFoundError):
            await admin.jetstream().stream_info("imagery")
        # The account's limits went back to what its streams hold: a channel that fits is made.
        assert (await driver.accounts.nats_claims("ziranziyuan"))["limits"]["disk_storage"] == 1
        await driver.ensure(request("ziranziyuan", "small"))
        over = request("ziranziyuan", "over", maxBytes=9 * 2**30)  # the department's quota is 8Gi
        with pytest.raises(PermanentBackendError, match="CITYHUB_NATS_ACCOUNT_FILE_STORE") as quota:
            await driver.ensure(over)
        assert quota.value.reason == "OverDepartmentLimits"
        unbounded = dataclasses.replace(request("ziranziyuan", "unbounded"), limits={"maxAge": 60})
        with pytest.raises(PermanentBackendError, match=r"spec\.limits\.maxBytes is required"):
            await driver.ensure(unbounded)
        bad = request("ziranziyuan", "self", share=("ziranziyuan",))
        with pytest.raises(
            PermanentBackendError, match=r"spec\.shareWith lists the channel's own department"
        ):
            await driver.ensure(bad)

    run(server, body)


def test_unreachable_server_is_a_temporary_error(tmp_path: Path) -> None:
    down = NatsServer(tmp_path, b"s" * 32)  # never started: nothing listens on its port

    async def body(driver: MessagingDriver) -> None:
        with pytest.raises(TemporaryBackendError, match="cannot connect to NATS"):
            await driver.ensure(request("jiaotong", "x"))

    run(down, body)


def test_the_embedded_launcher_is_idempotent_and_its_settings_drive_the_driver(tmp_path: Path) -> None:
    records = Supervisor(tmp_path / "processes")
    ctx = LocalContext("messaging", tmp_path / "backends" / "messaging", records, cache_dir())
    first = local.start(ctx)
    try:
        assert first.summary.startswith("nats-server (JetStream) at nats://127.0.0.1:")
        assert local.start(ctx).processes == first.processes  # the running server is reused
        (rec,) = first.processes
        assert records.get("messaging-nats-server") == rec
        secret_file = Path(first.operator_env["CITYHUB_NATS_SECRET_FILE"])
        assert secret_file.stat().st_mode & 0o077 == 0  # only a path in the settings, the file private
        assert secret_file.read_text() not in "".join(first.operator_env.values())

        req = request("yingji", "launcher")

        async def provision(env: dict[str, str]) -> tuple[Any, Any]:
            driver = create_driver(env)
            try:
                return await driver.accounts.lookup("yingji"), await driver.ensure(req)
            finally:
                await driver.close()

        account, result = asyncio.run(provision(dict(first.operator_env)))
        assert account is None and result.endpoints["url"] == first.operator_env["CITYHUB_NATS_URL"]
        # A crashed server comes back on its port (the operator keeps its URL) with its accounts.
        supervisor.kill(rec)
        again = local.start(ctx)
        assert again.operator_env == first.operator_env and again.processes != first.processes
        account, repeated = asyncio.run(provision(dict(again.operator_env)))
        assert account is not None and repeated == result
    finally:
        records.stop_all()
