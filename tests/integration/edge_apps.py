"""What the hub-and-edges test does as its users: a street office's device publishing on its edge, a city
bureau reading the share on the hub, an uplink cut by the firewall, and an operations team's Prometheus
watching the edge's operator (tests/integration/test_edge_clusters.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client, RawCredentials

from cityhub import paths
from cityhub.local_prometheus import Prometheus
from cityhub.supervisor import Record
from cityhub.testkit import kubectl, rss_bytes, settled, tcp_peers
from components import monitoring_rules
from components.monitoring_rules import RuleParams

CITYHUB = str(Path(sys.executable).parent / "cityhub")
CUT_SECONDS = 60.0
"""How long an edge's uplink is cut at least (the issue's 60 s), and until the hub's alert has fired."""
PUBLISH_EVERY = 0.5
"""A device's publishing interval on the edge: about 120 messages during the cut."""
ALERT = "CityhubEdgeUplinkDown"


def cityhub(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [CITYHUB, *args], input=stdin, capture_output=True, text=True, timeout=600, cwd=paths.repo_root()
    )
    assert proc.returncode == 0, f"cityhub {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def secret_of(kubeconfig: Path, namespace: str, kind: str, name: str) -> dict[str, str]:
    """The connection Secret a request's status names, decoded, as the department's workload reads it."""
    got = json.loads(kubectl(kubeconfig, "get", kind, name, "-n", namespace, "-o", "json").stdout)
    ref = got["status"]["connectionSecret"]
    secret = kubectl(kubeconfig, "get", "secret", ref, "-n", namespace, "-o", "json").stdout
    return {k: base64.b64decode(v).decode() for k, v in json.loads(secret)["data"].items()}


def force_delete(kubeconfig: Path, namespace: str, *kinds: str) -> None:
    """Whatever happened, nothing of a test may hold a department's namespace on destroy."""
    for kind in kinds:
        gone = ("--ignore-not-found", "--timeout=60s")
        kubectl(kubeconfig, "delete", kind, "-n", namespace, *gone, check=False)
        patch = '{"metadata":{"finalizers":null}}'
        kubectl(kubeconfig, "patch", kind, "-n", namespace, "--type=merge", "-p", patch, check=False)


def api_port(kubeconfig: Path) -> int:
    server = json.loads(kubectl(kubeconfig, "config", "view", "--raw", "-o", "json").stdout)
    return int(urllib.parse.urlsplit(server["clusters"][0]["cluster"]["server"]).port or 443)


def footprint(records: dict[str, Record], edge: str, api_ports: dict[str, int]) -> str:
    """What serving an edge costs the hub's machine (issue 18's operator cost, for the 200-edge model): the
    resident memory of the edge's operator and nats-server beside the hub's, and the edge operator's
    connections by what they reach."""
    ours = [name for name in records if name.startswith(("operator", "messaging-nats"))]
    mib = {name: rss_bytes(records[name].pid) / 2**20 for name in ours}
    hub_nats = records["messaging-nats-server"].ports
    names = {
        api_ports["hub"]: "hub API",
        api_ports[edge]: "edge API",
        records["messaging-nats-server"].port: "hub NATS",
        hub_nats.get("leafnode", -1): "hub leafnode",
        records[f"messaging-nats-server-{edge}"].port: "edge NATS",
    }
    reached: dict[str, int] = {}
    for port in tcp_peers(records[f"operator@{edge}"].pid):
        reached[names.get(port, "other")] = reached.get(names.get(port, "other"), 0) + 1
    leaf = tcp_peers(records[f"messaging-nats-server-{edge}"].pid).count(hub_nats.get("leafnode", -1))
    return (
        f"RSS MiB: hub operator {mib['operator']:.0f}, edge operator {mib[f'operator@{edge}']:.0f}, "
        f"hub nats-server {mib['messaging-nats-server']:.0f}, edge nats-server "
        f"{mib[f'messaging-nats-server-{edge}']:.0f}; edge operator's connections {json.dumps(reached)}; "
        f"edge leaf connections to the hub {leaf}"
    )


class UplinkWatch:
    """An edge's uplink — its leaf connection to the hub's leafnode port — and a live Prometheus evaluating
    the generated rules (at test speed) against the edge operator's metrics. `cut()` drops the connection's
    packets both ways (silence, not a refusal: what a broken line looks like); `restore()` removes the
    rules; the leaf node reconnects by itself."""

    def __init__(self, edge: str, leafnode_port: int, metrics_url: str) -> None:
        self.edge = edge
        self.rules = [
            ["OUTPUT", "-p", "tcp", flag, str(leafnode_port), "-j", "DROP"] for flag in ("--dport", "--sport")
        ]
        params = RuleParams(interval="1s", long_interval="1s", uplink_down_for="3s", operator_down_for="3s")
        target = metrics_url.split("//", 1)[1].split("/", 1)[0]
        self.prom = Prometheus(
            paths.state_dir() / f"prometheus-{edge}",
            monitoring_rules.rules_yaml(params),
            {"cityhub-operator-edge": [target]},
        )

    def __enter__(self) -> UplinkWatch:
        self.prom.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        self.prom.stop()

    def scraped_up(self) -> bool:
        return self.prom.value(f'min(cityhub_edge_uplink_up{{edge="{self.edge}"}})') == 1

    def alert(self) -> dict[str, Any] | None:
        return next(iter(self.prom.alerts(ALERT)), None)

    def cut(self) -> None:
        for rule in self.rules:
            subprocess.run(["iptables", "-I", *rule], check=True)

    def restore(self) -> None:
        for rule in self.rules:
            while subprocess.run(["iptables", "-D", *rule], capture_output=True).returncode == 0:
                pass


@dataclass
class Journey:
    """A device of the street office publishing to its channel on the edge (acknowledged by the edge's own
    JetStream) and a city bureau's application on the hub reading the channel's share."""

    street: str
    channel: str
    edge: str
    office: dict[str, str]
    """The channel's Secret on the edge."""
    bureau: dict[str, str]
    """The Secret of one of the bureau's own channels on the hub: its credentials read `shared.>`."""
    published: list[tuple[str, bytes]] = field(default_factory=list)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    async def run(self, watch: UplinkWatch | None) -> None:
        device = await connect(self.office, "device")
        reader = await connect(self.bureau, "bureau-app")
        try:
            await self._run(device, reader, watch)
        finally:
            await device.close()
            await reader.close()

    async def _run(self, device: Client, reader: Client, watch: UplinkWatch | None) -> None:
        async def on_shared(msg: Any) -> None:
            self.received.append((msg.subject, msg.data))

        await reader.subscribe(f"shared.{self.street}.{self.channel}.>", cb=on_shared)
        await reader.flush()
        js = device.jetstream(timeout=5)

        async def publish() -> None:
            n = len(self.published)
            subject = f"city.{self.street}.{self.channel}.gauge-{n % 2 + 1}"
            payload = f"水位-{n}".encode()
            ack = await js.publish(subject, payload)
            assert (ack.domain, ack.seq) == (self.edge, n + 1), ack  # the edge's JetStream took it
            self.published.append((subject, payload))

        # 1. Uplink up: the bureau reads on the hub what the device publishes on the edge.
        started = time.monotonic()
        for _ in range(10):
            await publish()
        assert await settled(lambda: len(self.received) >= 10, timeout=60), self.received
        self.figures["through the uplink (s)"] = time.monotonic() - started
        if watch is None:
            return

        # 2. Uplink cut for CUT_SECONDS and until the hub's alert fires: the device keeps publishing.
        assert await settled(watch.scraped_up, timeout=60, interval=1), "the edge's uplink not scraped as up"
        watch.cut()
        cut_at = time.monotonic()
        alert: dict[str, Any] | None = None
        while time.monotonic() - cut_at < CUT_SECONDS or alert is None:
            assert time.monotonic() - cut_at < 180, f"{ALERT} did not fire within 180 s of the cut"
            await publish()
            await asyncio.sleep(PUBLISH_EVERY)
            if alert is None and (alert := await asyncio.to_thread(watch.alert)) is not None:
                self.figures["alert fired after the cut (s)"] = time.monotonic() - cut_at
                assert alert["labels"]["edge"] == self.edge, alert
        self.figures["cut (s)"] = time.monotonic() - cut_at
        self.figures["published during the cut"] = len(self.published) - 10
        assert len(self.received) == 10, "a message crossed the cut uplink"

        # 3. Uplink back: the hub's stream resumes where it stopped; the bureau gets every message.
        watch.restore()
        restored = time.monotonic()
        total = len(self.published)
        assert await settled(lambda: len(self.received) >= total, timeout=180, interval=0.2), (
            f"the bureau has {len(self.received)} of {total} messages 180 s after the uplink returned"
        )
        self.figures["caught up after the restore (s)"] = time.monotonic() - restored
        resolved: Callable[[], bool] = lambda: watch.alert() is None  # noqa: E731
        assert await settled(resolved, timeout=180, interval=1), f"{ALERT} still firing"
        self.figures["alert resolved after the restore (s)"] = time.monotonic() - restored
        await asyncio.sleep(1.0)  # anything extra would have arrived by now
        # In order, none lost, none twice, under the bureau's shared.<department>.<channel> subjects.
        prefix = f"shared.{self.street}."
        assert [(s.replace(prefix, f"city.{self.street}.", 1), d) for s, d in self.received] == self.published


async def connect(secret: dict[str, str], name: str) -> Client:
    async def quiet(e: Exception) -> None:
        pass

    return await nats.connect(
        secret["url"],
        user_credentials=RawCredentials(secret["user.creds"]),
        name=name,
        connect_timeout=5,
        error_cb=quiet,
        max_reconnect_attempts=-1,
    )
