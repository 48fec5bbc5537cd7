"""The operator end to end: embedded cluster + real nats-server + `python -m cityhub_operator`.

Apply a MessagingChannel → Ready + Secret; its credentials work on the department's subjects only; sharing is
explicit; bad requests say what to change; drift is repaired; delete removes stream, user and Secret; a
SIGKILLed operator with 100 requests in flight recovers without duplicates.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from kubernetes import client
from nats.aio.client import RawCredentials

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, channel, condition, wait_for
from component_types.messaging.driver import MessagingDriver, NatsSettings
from component_types.messaging.local import NatsServer

pytestmark = pytest.mark.integration
SECRET = b"operator-integration-secret-0123456789-abcdefghijkl"
OFFERING = {
    "apiVersion": "hub.cityhub.io/v1alpha1",
    "kind": "ComponentOffering",
    "metadata": {"name": "messaging"},
    "spec": {
        "componentType": "messaging",
        "displayName": "城市消息总线",
        "defaultPlan": "standard",
        "plans": [
            {
                "name": "standard",
                "limits": {"maxAge": "7d", "maxBytes": "1Gi", "maxMessages": 1000000},
                "defaults": {"maxAge": "1d", "maxBytes": "16Mi"},
            },
            {"name": "large", "limits": {"maxAge": "30d", "maxBytes": "20Gi", "maxMessages": 100000000}},
        ],
    },
}
DEPARTMENTS = ("yingji", "jiaotong", "weijian", "chengguan", "huanbao")


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [OFFERING])
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def nats_secret() -> bytes:
    """The secret of the `nats_server` fixture (component_types/messaging/fixtures.py)."""
    return SECRET


@pytest.fixture(scope="module")
def nats_max_file_store() -> str:
    """Room for the 100 channels of the SIGKILL test; "refused" asks for more (15Gi)."""
    return "10G"


DEPARTMENT_FILE_STORE = "16Gi"
"""Above the server's store: "refused" fits the department's quota, not the server."""


def operator_env(server: NatsServer, secret_file: Path, **extra: str) -> dict[str, str]:
    return {
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_NATS_URL": server.url,
        "CITYHUB_NATS_SECRET_FILE": str(secret_file),
        "CITYHUB_NATS_ACCOUNT_FILE_STORE": DEPARTMENT_FILE_STORE,
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "3",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        **extra,
    }


@pytest.fixture(scope="module")
def operator(
    cluster: Path, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("operator")
    (tmp / "secret").write_text(SECRET.decode())
    proc = OperatorProcess(cluster, operator_env(nats_server, tmp / "secret"), tmp / "operator.log").start()
    yield proc
    if not proc.alive():  # the SIGKILL test stops it to run its own
        proc.start()
    try:
        testing.delete_requests(cluster, "messagingchannels")
    finally:
        proc.stop()
    assert_no_secrets_in(tmp / "operator.log")


@pytest.fixture(scope="module")
def k8s(cluster: Path) -> client.ApiClient:
    return testing.api(cluster)


def assert_no_secrets_in(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "USER NKEY SEED" not in text and "-----BEGIN NATS USER JWT" not in text
    assert not re.search(r"\bS[UAO][A-Z2-7]{56}\b", text), "an nkey seed leaked into the operator log"


def get(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            "hub.cityhub.io", "v1alpha1", namespace, "messagingchannels", name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_condition(
    k8s: client.ApiClient, namespace: str, name: str, ctype: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(k8s, namespace, name)
        return obj if obj and condition(obj, ctype).get("status") == status else None

    return wait_for(check, timeout, f"{namespace}/{name} {ctype}={status}")


def secret_data(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def secret_exists(k8s: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.CoreV1Api(k8s).read_namespaced_secret(name, namespace)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


def events(k8s: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(k8s).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return list(found.items)


def streams(server: NatsServer, department: str) -> list[Any]:
    async def main() -> list[Any]:
        driver = MessagingDriver(NatsSettings(url=server.url, secret=SECRET, public_url=server.url))
        try:
            if await driver.accounts.lookup(department) is None:
                return []
            return list(await (await driver.connections.admin(department)).jetstream().streams_info())
        finally:
            await driver.close()

    return asyncio.run(main())


class App:
    """A department application using the credentials from its Secret."""

    def __init__(self, creds: str, url: str) -> None:
        self.creds, self.url = creds, url

    async def __aenter__(self) -> App:
        self.errors: list[str] = []

        async def on_error(e: Exception) -> None:
            self.errors.append(str(e))

        self.conn = await nats.connect(
            self.url,
            user_credentials=RawCredentials(self.creds),
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=3,
        )
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.conn.close()

    async def listen(self, subject: str) -> list[bytes]:
        got: list[bytes] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.data)

        await self.conn.subscribe(subject, cb=on_msg)
        await self.conn.flush()
        return got


def test_admission_rejects_invalid_requests_naming_the_field(cluster: Path) -> None:
    bad = [
        (channel("jiaotong", "bad-age", limits={"maxAge": "7 days"}), "spec.limits.maxAge"),
        (channel("jiaotong", "bad-bytes", limits={"maxBytes": "12 GB"}), "spec.limits.maxBytes"),
        (channel("jiaotong", "bad-policy", deletionPolicy="Keep"), "spec.deletionPolicy"),
        (channel("jiaotong", "bad.name"), "metadata.name"),
        (channel("jiaotong", "bad-memory", storage="memory"), "spec.limits.maxBytes is required"),
        (
            channel("jiaotong", "dup-share", shareWith=[{"department": "yingji"}, {"department": "yingji"}]),
            'spec.shareWith: duplicate entries for key [department="yingji"]',
        ),
    ]
    for doc, field in bad:
        proc = testing.apply(cluster, [doc], check=False)
        assert proc.returncode != 0, doc
        assert field in proc.stderr, proc.stderr
    no_offering = channel("jiaotong", "no-offering")
    del no_offering["spec"]["offering"]
    proc = testing.apply(cluster, [no_offering], check=False)
    assert proc.returncode != 0 and "spec.offering: Required value" in proc.stderr


def test_request_to_ready_credentials_sharing_and_delete(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, nats_server: NatsServer
) -> None:
    testing.apply(
        cluster,
        [
            channel(
                "yingji",
                "alerts",
                shareWith=[{"department": "jiaotong", "purpose": "事件流转"}],
                limits={"maxAge": "2d", "maxMessages": 5000},
            ),
            channel("jiaotong", "signals"),
            channel("weijian", "cases"),
        ],
    )
    alerts = wait_condition(k8s, "yingji", "alerts", "Ready", "True")
    for ns, name in (("jiaotong", "signals"), ("weijian", "cases")):
        wait_condition(k8s, ns, name, "Ready", "True")
    status = alerts["status"]
    assert condition(alerts, "Synced")["status"] == "True"
    assert status["observedGeneration"] == alerts["metadata"]["generation"]
    assert status["plan"] == "standard"
    assert status["limits"] == {"maxAge": "2d", "maxBytes": "16Mi", "maxMessages": 5000}
    assert status["connectionSecret"] == "alerts-connection"
    assert not any("creds" in k or "seed" in k for k in status["endpoints"])
    provisioned = wait_for(
        lambda: [e.reason for e in events(k8s, "yingji", "alerts")].count("Provisioned"),
        15,
        "a Provisioned event",
    )
    assert provisioned == 1
    secret = client.CoreV1Api(k8s).read_namespaced_secret("alerts-connection", "yingji")
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "MessagingChannel",
        "alerts",
        alerts["metadata"]["uid"],
        True,
    )
    (stream,) = [s for s in streams(nats_server, "yingji") if s.config.name == "alerts"]
    assert stream.config.max_msgs == 5000 and stream.config.max_bytes == 16 * 2**20
    assert round(stream.config.max_age) == 2 * 86400

    yingji = secret_data(k8s, "yingji", "alerts-connection")
    jiaotong = secret_data(k8s, "jiaotong", "signals-connection")
    weijian = secret_data(k8s, "weijian", "cases-connection")
    assert yingji["subjects"] == "city.yingji.alerts.>"

    async def exercise() -> None:
        async with (
            App(yingji["user.creds"], yingji["url"]) as src,
            App(jiaotong["user.creds"], jiaotong["url"]) as reader,
            App(weijian["user.creds"], weijian["url"]) as outsider,
        ):
            # Own subjects: publish into the stream and consume from it.
            js = src.conn.jetstream()
            assert (await js.publish("city.yingji.alerts.typhoon", b"signal 8")).stream == "alerts"
            sub = await js.pull_subscribe("city.yingji.alerts.>", durable="ops")
            (msg,) = await sub.fetch(1, timeout=5)
            assert msg.data == b"signal 8"
            # Another department's subjects are refused.
            await src.conn.publish("city.jiaotong.signals.x", b"spoof")
            await src.conn.subscribe("city.jiaotong.>")
            await src.conn.flush()
            # Granted share arrives; ungranted department gets nothing and may not read the source.
            granted = await reader.listen("shared.yingji.alerts.>")
            ungranted = await outsider.listen("shared.yingji.alerts.>")
            await outsider.conn.subscribe("city.yingji.>")
            await outsider.conn.flush()
            await src.conn.publish("city.yingji.alerts.flood", b"red")
            await src.conn.flush()
            await asyncio.sleep(0.5)
            assert granted == [b"red"]
            assert ungranted == []
            assert any('publish to "city.jiaotong.signals.x"' in e for e in src.errors), src.errors
            assert any('subscription to "city.jiaotong.>"' in e for e in src.errors), src.errors
            assert any('subscription to "city.yingji.>"' in e for e in outsider.errors), outsider.errors

    asyncio.run(exercise())

    # Delete: stream, user and Secret go; the request goes once its finalizer is released.
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "hub.cityhub.io", "v1alpha1", "yingji", "messagingchannels", "alerts"
    )
    wait_for(lambda: get(k8s, "yingji", "alerts") is None, 60, "alerts to be deleted")
    assert not secret_exists(k8s, "yingji", "alerts-connection")
    assert "alerts" not in [s.config.name for s in streams(nats_server, "yingji")]

    async def refused() -> None:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            async with App(yingji["user.creds"], yingji["url"]):
                pass

    asyncio.run(refused())


def test_requests_that_cannot_be_met_say_what_to_change(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, nats_server: NatsServer
) -> None:
    testing.apply(
        cluster,
        [
            channel("chengguan", "unknown", offering="no-such-offering"),
            channel("chengguan", "too-big", limits={"maxBytes": "5Gi"}),
            channel("chengguan", "no-plan", plan="gold"),
            channel("chengguan", "refused", plan="large", limits={"maxBytes": "15Gi"}),  # server has 10G
            channel("chengguan", "over-quota", plan="large", limits={"maxBytes": "17Gi"}),  # department 16Gi
            channel("chengguan", "self-share", shareWith=[{"department": "chengguan"}]),
        ],
    )
    expected = {
        "unknown": ("OfferingNotFound", "spec.offering: ComponentOffering 'no-such-offering' does not exist"),
        "too-big": ("OverPlanLimits", "spec.limits.maxBytes=5Gi exceeds plan 'standard'"),
        "no-plan": ("PlanNotFound", "spec.plan: offering 'messaging' has no plan 'gold'"),
        "refused": ("BackendRefused", "NATS has no room for spec.limits.maxBytes=15Gi: the server's"),
        "over-quota": ("OverDepartmentLimits", "store 16Gi (CITYHUB_NATS_ACCOUNT_FILE_STORE)"),
        "self-share": ("InvalidShare", "spec.shareWith lists the channel's own department"),
    }
    for name, (reason, message) in expected.items():
        obj = wait_condition(k8s, "chengguan", name, "Ready", "False")
        ready = condition(obj, "Ready")
        assert ready["reason"] == reason and message in ready["message"], ready
        assert ready["observedGeneration"] == obj["metadata"]["generation"]
        # kopf posts events in the background, a moment after the status patch.
        wait_for(
            lambda name=name, reason=reason: any(
                e.reason == reason and e.type == "Warning" for e in events(k8s, "chengguan", name)
            ),
            15,
            f"a Warning event {reason} on {name}",
        )
        assert not secret_exists(k8s, "chengguan", f"{name}-connection")
    # Nothing half-created: no stream for any of them.
    assert [s.config.name for s in streams(nats_server, "chengguan")] == []
    # Fixing the request makes it Ready; no crash loop meanwhile (one Warning per cause).
    testing.apply(cluster, [channel("chengguan", "too-big", limits={"maxBytes": "512Mi"})])
    wait_condition(k8s, "chengguan", "too-big", "Ready", "True")
    assert [e.reason for e in events(k8s, "chengguan", "too-big")].count("OverPlanLimits") == 1
    # Once provisioned, an unmet update keeps the working backend: Synced=False, Ready stays True.
    testing.apply(cluster, [channel("chengguan", "too-big", limits={"maxBytes": "2Gi"})])
    obj = wait_condition(k8s, "chengguan", "too-big", "Synced", "False")
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Synced")["reason"] == "OverPlanLimits"
    assert operator.alive()


def test_drift_is_repaired_and_orphan_keeps_the_backend(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, nats_server: NatsServer
) -> None:
    testing.apply(cluster, [channel("huanbao", "air", deletionPolicy="Orphan")])
    wait_condition(k8s, "huanbao", "air", "Ready", "True")

    async def remove_stream() -> None:
        driver = MessagingDriver(NatsSettings(url=nats_server.url, secret=SECRET, public_url=nats_server.url))
        try:
            await (await driver.connections.admin("huanbao")).jetstream().delete_stream("air")
        finally:
            await driver.close()

    asyncio.run(remove_stream())
    wait_for(
        lambda: "air" in [s.config.name for s in streams(nats_server, "huanbao")], 30, "stream recreated"
    )
    reasons = wait_for(
        lambda: (
            {e.reason for e in events(k8s, "huanbao", "air")} >= {"DriftDetected", "DriftRepaired"} or None
        ),
        10,
        "drift events",
    )
    assert reasons
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "hub.cityhub.io", "v1alpha1", "huanbao", "messagingchannels", "air"
    )
    wait_for(lambda: get(k8s, "huanbao", "air") is None, 60, "air to be deleted")
    assert "air" in [s.config.name for s in streams(nats_server, "huanbao")]  # Orphan: the stream stays


def test_orphan_revokes_the_channels_credentials(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, nats_server: NatsServer
) -> None:
    testing.apply(cluster, [channel("huanbao", "kept", deletionPolicy="Orphan")])
    wait_condition(k8s, "huanbao", "kept", "Ready", "True")
    kept = secret_data(k8s, "huanbao", "kept-connection")
    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "hub.cityhub.io", "v1alpha1", "huanbao", "messagingchannels", "kept"
    )
    wait_for(lambda: get(k8s, "huanbao", "kept") is None, 60, "kept to be deleted")
    assert "kept" in [s.config.name for s in streams(nats_server, "huanbao")]

    async def refused() -> None:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            async with App(kept["user.creds"], nats_server.url):
                pass

    asyncio.run(refused())


def test_sigkill_with_100_requests_in_flight(
    cluster: Path, k8s: client.ApiClient, nats_server: NatsServer, tmp_path: Path, operator: OperatorProcess
) -> None:
    operator.stop()  # this test runs its own operator, to kill it
    (tmp_path / "secret").write_text(SECRET.decode())
    env = operator_env(nats_server, tmp_path / "secret", CITYHUB_DRIFT_INTERVAL="60")
    proc = OperatorProcess(cluster, env, tmp_path / "operator.log").start()
    departments = [f"crash-{i}" for i in range(10)]
    testing.ensure_namespaces(cluster, departments)
    docs = [
        channel(
            d,
            f"ch-{j}",
            limits={"maxBytes": "8Mi"},
            shareWith=[{"department": departments[(i + 1) % 10]}] if j == 0 else [],
        )
        for i, d in enumerate(departments)
        for j in range(10)
    ]
    try:
        testing.apply(cluster, docs)

        def ready_count() -> int:
            items = [o for o in testing.list_requests(k8s) if o["metadata"]["namespace"].startswith("crash-")]
            return sum(condition(o, "Ready").get("status") == "True" for o in items)

        wait_for(lambda: ready_count() >= 1, 60, "the first request to be Ready", interval=0.05)
        proc.kill()
        in_flight = 100 - ready_count()
        assert in_flight > 0, "all 100 were Ready before the kill; nothing was in flight"
        proc.start()
        wait_for(lambda: ready_count() == 100, 180, "all 100 requests to be Ready after the restart")
    finally:
        proc.stop()
    # No duplicates: exactly one stream per request, owned by it; one Secret each.
    for d in departments:
        found = streams(nats_server, d)
        names = sorted(s.config.name for s in found)
        assert names == sorted(f"ch-{j}" for j in range(10)), (d, names)
        uids = {
            o["metadata"]["name"]: o["metadata"]["uid"]
            for o in testing.list_requests(k8s)
            if o["metadata"]["namespace"] == d
        }
        for s in found:
            assert s.config.metadata["cityhub.io/uid"] == uids[s.config.name]
        secrets = client.CoreV1Api(k8s).list_namespaced_secret(d, label_selector="hub.cityhub.io/request")
        assert len(secrets.items) == 10

    async def exports() -> dict[str, list[str]]:
        driver = MessagingDriver(NatsSettings(url=nats_server.url, secret=SECRET, public_url=nats_server.url))
        try:
            out = {}
            for d in departments:
                claims = (await driver.accounts.lookup(d))["nats"]
                out[d] = [e["name"] for e in claims.get("exports", [])] + [
                    i["name"] for i in claims.get("imports", [])
                ]
            return out
        finally:
            await driver.close()

    for d, names in asyncio.run(exports()).items():
        assert len(names) == len(set(names)) == 2, (d, names)  # one export and one import, no duplicates
    print(f"\nSIGKILL test: {in_flight} of 100 requests were in flight when the operator was killed")
