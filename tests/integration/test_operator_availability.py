"""The operator stays available and never wedges a department: embedded cluster + nats-server + the operator
run as its own ServiceAccount with the stack's RBAC (components/component_operator.py).

- A department's component requests count against its quota: the API server refuses one more, and the
  department cannot write its requests' status.
- Two replicas elect a leader (kopf peering, the older leads); SIGKILL the leader and the standby reconciles
  within the peering lifetime; stop a leader (a rollout) and its successor takes over at once (the figures
  are printed).
- A department namespace deleted with requests in it goes away, even when the operator's Secret RoleBinding
  went first, and the requests' backend objects are deleted.
- /healthz fails when the operator's watches are dead (its connection to the API server silently dropping
  everything) and recovers when they reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cityhub import supervisor
from cityhub import testkit as testing
from cityhub.config_model import Quota
from cityhub.local_operator import service_account_kubeconfig
from cityhub.testkit import OperatorProcess, TcpProxy, channel, condition, wait_for
from cityhub_api import registry
from cityhub_api.api import GROUP, VERSION
from cityhub_api.labels import SYSTEM_NAMESPACE
from component_types.messaging.driver import MessagingDriver, NatsSettings
from component_types.messaging.local import NatsServer
from components.component_operator import NAME, PEERING_NAME, SECRET_RULES, operator_rules, peering_crd
from components.compute import COMPONENT_REQUESTS_QUOTA, component_requests_hard
from components.tenancy import REQUESTER_ACCOUNT, requester_rules

pytestmark = pytest.mark.integration
SECRET = b"availability-test-secret-0123456789-abcdefghijklmn"
OFFERING = {
    "apiVersion": f"{GROUP}/{VERSION}",
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
            }
        ],
    },
}
FAILOVER, DOOMED, QUOTA, WATCHED = "avail-failover", "avail-doomed", "avail-quota", "avail-watched"
PEERING_LIFETIME = 20
"""The operator's default CITYHUB_PEERING_LIFETIME: the failover figure is the production one."""


@pytest.fixture(scope="module")
def nats_secret() -> bytes:
    return SECRET


def rbac(namespace: str, name: str, rules: list[dict[str, Any]], subject: dict[str, str]) -> list[dict]:
    """A Role (or ClusterRole, namespace "") with `rules`, bound to `subject`."""
    kind = "Role" if namespace else "ClusterRole"
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{kind}Binding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [subject],
        },
    ]


OPERATOR_SUBJECT = {"kind": "ServiceAccount", "name": NAME, "namespace": SYSTEM_NAMESPACE}


def secrets_binding(namespace: str) -> dict[str, Any]:
    """The stack's per-department grant: the operator may write Secrets in this namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{NAME}-secrets", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{NAME}-secrets",
        },
        "subjects": [OPERATOR_SUBJECT],
    }


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    """CRDs, the catalog entry, kopf's peering CRD and the operator's peering object, and the operator's
    ServiceAccount with the ClusterRoles the stack gives it."""
    testing.install_crds(kubeconfig)
    crd = peering_crd()
    testing.apply(kubeconfig, [crd])
    testing.kubectl(
        kubeconfig,
        "wait",
        "--for",
        "condition=Established",
        "--timeout=60s",
        f"crd/{crd['metadata']['name']}",
    )
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING_NAME}}
    testing.apply(kubeconfig, [OFFERING, peering])
    testing.ensure_namespaces(kubeconfig, [SYSTEM_NAMESPACE, FAILOVER, DOOMED, WATCHED])
    plurals = sorted(t.plural for t in registry.component_types().values())
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": NAME, "namespace": SYSTEM_NAMESPACE},
    }
    testing.apply(
        kubeconfig,
        [
            account,
            *rbac("", NAME, operator_rules(plurals), OPERATOR_SUBJECT),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": f"{NAME}-secrets"},
                "rules": SECRET_RULES,
            },
            *(secrets_binding(ns) for ns in (FAILOVER, DOOMED, WATCHED)),
        ],
    )
    return kubeconfig


@pytest.fixture(scope="module")
def operator_kubeconfig(cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's own identity: a token of its ServiceAccount, as `cityhub operator start` uses."""
    path = service_account_kubeconfig(cluster, tmp_path_factory.mktemp("operator") / "kubeconfig")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def k8s(cluster: Path) -> client.ApiClient:
    return testing.api(cluster)


@pytest.fixture(scope="module", autouse=True)
def leave_no_requests(cluster: Path) -> Iterator[None]:
    yield
    testing.kubectl(cluster, "delete", "namespace", FAILOVER, WATCHED, "--ignore-not-found", "--wait=false")


def operator(
    kubeconfig: Path, server: NatsServer, directory: Path, name: str, **extra: str
) -> OperatorProcess:
    (directory / "nats-secret").write_text(SECRET.decode())
    env = {
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_NATS_URL": server.url,
        "CITYHUB_NATS_SECRET_FILE": str(directory / "nats-secret"),
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_HEALTH_PORT": str(supervisor.free_port()),
        **extra,
    }
    return OperatorProcess(kubeconfig, env, directory / f"{name}.log")


def delete_requests(cluster: Path, namespace: str, proc: OperatorProcess) -> None:
    """Delete the namespace's requests while an operator releases their finalizers (`proc`, started again if
    it is not running), so no namespace of this module is left stuck in Terminating."""
    if not proc.alive():
        proc.start()
    testing.kubectl(
        cluster, "delete", "messagingchannels", "--all", "-n", namespace, "--wait=true", "--timeout=120s"
    )


def role(proc: OperatorProcess) -> str | None:
    """The replica's role as its /healthz reports it (kopf's probe `watches`), None when not healthy."""
    status, body = proc.health()
    return body.get("watches", {}).get("role") if status == 200 else None


def get(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "messagingchannels", name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def ready(k8s: client.ApiClient, namespace: str, name: str) -> bool:
    obj = get(k8s, namespace, name)
    return bool(obj and condition(obj, "Ready").get("status") == "True")


def streams(server: NatsServer, department: str) -> list[str]:
    """The department's JetStream streams, as the backend itself lists them."""

    async def main() -> list[str]:
        driver = MessagingDriver(NatsSettings(url=server.url, secret=SECRET, public_url=server.url))
        try:
            if await driver.accounts.lookup(department) is None:
                return []
            js = (await driver.connections.admin(department)).jetstream()
            return sorted(s.config.name for s in await js.streams_info())
        finally:
            await driver.close()

    return asyncio.run(main())


def namespace_exists(k8s: client.ApiClient, name: str) -> bool:
    try:
        client.CoreV1Api(k8s).read_namespace(name)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


def test_requests_count_against_the_department_quota_and_status_is_the_operators(
    cluster: Path, k8s: client.ApiClient
) -> None:
    """As the department's own requester account: ten requests of a type, the eleventh refused by the API
    server with the standard quota message; no write to a request's status."""
    requester = f"system:serviceaccount:{QUOTA}:{REQUESTER_ACCOUNT}"
    rules = [
        {"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs} for r in requester_rules()
    ]
    hard = component_requests_hard(Quota(cpu="1", memory="1Gi"))
    testing.ensure_namespaces(cluster, [QUOTA])
    testing.apply(
        cluster,
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": REQUESTER_ACCOUNT, "namespace": QUOTA},
            },
            *rbac(
                QUOTA,
                REQUESTER_ACCOUNT,
                rules,
                {"kind": "ServiceAccount", "name": REQUESTER_ACCOUNT, "namespace": QUOTA},
            ),
        ],
    )
    counted = "count/messagingchannels.hub.cityhub.io"
    assert hard[counted] == "10", "the schema's default"
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": COMPONENT_REQUESTS_QUOTA, "namespace": QUOTA},
        "spec": {"hard": hard},
    }

    def counting() -> bool:
        """Until the quota controller counts the requests, admission refuses them ("status unknown for
        quota"). It learns a new CRD by discovery (every 30 s) and only counts for a quota created or
        changed after that, or at its resync (5 min): the CRDs were installed just now, so the quota is
        recreated until it is counted."""
        core = client.CoreV1Api(k8s)
        testing.kubectl(
            cluster, "delete", "resourcequota", COMPONENT_REQUESTS_QUOTA, "-n", QUOTA, "--ignore-not-found"
        )
        testing.apply(cluster, [quota])

        def used() -> bool:
            status = core.read_namespaced_resource_quota(COMPONENT_REQUESTS_QUOTA, QUOTA).status
            return set(hard) <= set(status.used or {})

        return supervisor.wait_until(used, 10, 0.5)

    wait_for(counting, 120, "the quota controller to count the requests", 0)

    def apply_as_department(name: str) -> Any:
        text = yaml.safe_dump(channel(QUOTA, name))
        return testing.kubectl(cluster, f"--as={requester}", "apply", "-f", "-", stdin=text, check=False)

    try:
        for i in range(10):
            proc = apply_as_department(f"c-{i}")
            assert proc.returncode == 0, proc.stderr
        refused = apply_as_department("c-10")
        assert refused.returncode != 0
        assert (
            f"exceeded quota: {COMPONENT_REQUESTS_QUOTA}, requested: {counted}=1, used: {counted}=10, "
            f"limited: {counted}=10"
        ) in refused.stderr, refused.stderr
        assert get(k8s, QUOTA, "c-10") is None
        # Conditions and endpoints are the operator's word: the department cannot write them.
        status = testing.kubectl(
            cluster,
            f"--as={requester}",
            "patch",
            "messagingchannel",
            "c-0",
            "-n",
            QUOTA,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}',
            check=False,
        )
        assert status.returncode != 0 and "forbidden" in status.stderr.lower(), status.stderr
    finally:
        # No operator runs yet, so no finalizer holds the requests: the namespace goes at once.
        testing.kubectl(cluster, "delete", "namespace", QUOTA, "--wait=true", "--timeout=120s")


def test_the_standby_takes_over_when_the_leader_is_killed(
    cluster: Path, operator_kubeconfig: Path, k8s: client.ApiClient, nats_server: NatsServer, tmp_path: Path
) -> None:
    # Priorities as the Deployment's pods get them (derived from the start time): the older replica leads.
    common = {"CITYHUB_PEERING": PEERING_NAME, "CITYHUB_PEERING_LIFETIME": str(PEERING_LIFETIME)}
    leader = operator(operator_kubeconfig, nats_server, tmp_path, "leader", **common)
    standby = operator(operator_kubeconfig, nats_server, tmp_path, "standby", **common)
    newcomer = operator(operator_kubeconfig, nats_server, tmp_path, "newcomer", **common)
    try:
        leader.start()
        testing.apply(cluster, [channel(FAILOVER, "before")])
        wait_for(lambda: ready(k8s, FAILOVER, "before"), 90, "the leader to reconcile")
        wait_for(lambda: role(leader) == "leader", 30, "the leader to lead")
        standby.start()
        # A paused standby is healthy (/healthz answers 200): its peering watch runs.
        wait_for(lambda: role(standby) == "standby", 60, "the second replica to stand by")

        testing.apply(cluster, [channel(FAILOVER, "while-both")])
        wait_for(lambda: ready(k8s, FAILOVER, "while-both"), 60, "the leader to reconcile while both run")
        assert f"{FAILOVER}/while-both" in leader.log.read_text()
        assert f"{FAILOVER}/while-both" not in standby.log.read_text(), "only the leader reconciles"

        leader.kill()  # SIGKILL: it cannot hand over; its keep-alive has to lapse
        killed = time.monotonic()
        testing.apply(cluster, [channel(FAILOVER, "after-kill")])
        wait_for(
            lambda: ready(k8s, FAILOVER, "after-kill"), PEERING_LIFETIME + 60, "the standby to take over", 0.1
        )
        failover = time.monotonic() - killed
        print(
            f"\nfailover: the standby reconciled a new request {failover:.1f}s after the leader's SIGKILL "
            f"(peering lifetime {PEERING_LIFETIME}s)"
        )
        assert failover < PEERING_LIFETIME + 15
        assert f"{FAILOVER}/after-kill" in standby.log.read_text()
        wait_for(lambda: role(standby) == "leader", 30, "the standby's /healthz to say leader")

        # A rollout: a new pod joins as the standby, the leader is stopped (SIGTERM) and hands over at once.
        newcomer.start()
        wait_for(lambda: role(newcomer) == "standby", 60, "the new replica to stand by")
        stopped = time.monotonic()
        standby.stop()
        testing.apply(cluster, [channel(FAILOVER, "after-stop")])
        wait_for(lambda: ready(k8s, FAILOVER, "after-stop"), 30, "the new replica to take over", 0.1)
        handover = time.monotonic() - stopped
        print(f"handover: a stopped leader's successor reconciled a new request {handover:.1f}s later")
        assert handover < 10 and f"{FAILOVER}/after-stop" in newcomer.log.read_text()
    finally:
        leader.kill()
        standby.stop()
        try:
            delete_requests(cluster, FAILOVER, newcomer)
        finally:
            newcomer.stop()
    assert streams(nats_server, FAILOVER) == []


def test_a_department_namespace_deleted_with_requests_goes_away(
    cluster: Path, operator_kubeconfig: Path, k8s: client.ApiClient, nats_server: NatsServer, tmp_path: Path
) -> None:
    proc = operator(operator_kubeconfig, nats_server, tmp_path, "operator").start()
    names = ["events", "alerts", "tiles"]
    try:
        testing.apply(cluster, [channel(DOOMED, n) for n in names])
        wait_for(lambda: all(ready(k8s, DOOMED, n) for n in names), 90, "the requests to be Ready")
        assert streams(nats_server, DOOMED) == sorted(names)
        # The namespace controller deletes the namespace's RoleBindings alongside its requests, in no set
        # order: the worst case is that the operator's Secret RoleBinding goes first.
        testing.kubectl(cluster, "delete", "rolebinding", f"{NAME}-secrets", "-n", DOOMED)
        deleted = time.monotonic()
        testing.kubectl(cluster, "delete", "namespace", DOOMED, "--wait=false")
        wait_for(lambda: not namespace_exists(k8s, DOOMED), 90, f"namespace {DOOMED} to go", 0.5)
        print(f"\nnamespace deletion with {len(names)} requests: gone in {time.monotonic() - deleted:.1f}s")
        assert streams(nats_server, DOOMED) == [], "every request's backend objects are deleted"
        assert proc.alive()
    finally:
        try:
            if namespace_exists(k8s, DOOMED):
                delete_requests(cluster, DOOMED, proc)
        finally:
            proc.stop()


def test_healthz_fails_while_the_watches_are_dead_and_recovers(
    cluster: Path, operator_kubeconfig: Path, k8s: client.ApiClient, nats_server: NatsServer, tmp_path: Path
) -> None:
    """The operator reaches the API server through a relay that then drops everything, silently."""
    config = yaml.safe_load(operator_kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    host, _, port = server.removeprefix("https://").rpartition(":")
    proxy = TcpProxy(host, int(port))
    config["clusters"][0]["cluster"]["server"] = f"https://{supervisor.HOST}:{proxy.port}"
    relayed = tmp_path / "kubeconfig"
    relayed.write_text(yaml.safe_dump(config))
    proc = operator(
        relayed,
        nats_server,
        tmp_path,
        "operator",
        CITYHUB_WATCH_SERVER_TIMEOUT="5",
        CITYHUB_WATCH_CLIENT_TIMEOUT="8",
        CITYHUB_WATCH_GRACE="5",
    )
    try:
        proc.start()
        testing.apply(cluster, [channel(WATCHED, "first")])
        wait_for(lambda: ready(k8s, WATCHED, "first"), 90, "a reconcile through the relay")
        _, body = wait_for(lambda: (h := proc.health())[0] == 200 and h, 30, "a healthy /healthz")
        assert "messagingchannels.hub.cityhub.io" in body["watches"]["watchAgeSeconds"], body
        assert body["watches"]["role"] == "standalone"

        proxy.blackhole()
        dropped = time.monotonic()
        wait_for(lambda: proc.health()[0] == 500, 60, "/healthz to fail", 0.5)
        detected = time.monotonic() - dropped
        print(
            f"\ndead watches: /healthz failed {detected:.1f}s after the API server went silent "
            "(client timeout 8s + grace 5s)"
        )
        assert proc.alive(), "the operator itself keeps running; the kubelet restarts it on /healthz"

        proxy.restore()
        wait_for(lambda: proc.health()[0] == 200, 120, "/healthz to recover once the watches reconnect", 0.5)
        testing.apply(cluster, [channel(WATCHED, "second")])
        wait_for(lambda: ready(k8s, WATCHED, "second"), 60, "reconciling again after the outage")
    finally:
        proxy.restore()
        try:
            delete_requests(cluster, WATCHED, proc)
        finally:
            proc.stop()
            proxy.close()
