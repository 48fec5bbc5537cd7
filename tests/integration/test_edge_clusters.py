"""多级贯通: one stack, the hub and a district edge cluster. A street office lands on the edge of its
division, everything else on the hub; 平急切换 is one change for both; an unreachable edge fails only its
own part.

The edge is a second embedded cluster beside the session's hub (`cityhub cluster up --name xihu-edge`), or
the cluster in CITYHUB_TEST_EDGE_KUBECONFIG when the hub is a real one (CITYHUB_TEST_KUBECONFIG)."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from cityhub import cluster_reach, embedded_cluster, paths, supervisor
from cityhub.cli import UP_ARGS
from cityhub.embedded_cluster.layout import layout
from cityhub.embedded_cluster.state import load_state
from cityhub.local_prometheus import Prometheus
from cityhub.supervisor import Supervisor
from cityhub.testkit import apply, kubectl, wait_for
from components import monitoring_rules
from components.monitoring_rules import RuleParams
from tests.integration.test_hub_stack import Project, new_project

pytestmark = pytest.mark.integration

EDGE = "xihu-edge"
STREET = "dept-xihu-hubin"  # 西湖区湖滨街道办事处, division 330106
CITYHUB = str(Path(sys.executable).parent / "cityhub")


@pytest.fixture(scope="module")
def edge_kubeconfig(kubeconfig: Path) -> Iterator[Path]:
    given = os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG")
    if given:
        yield Path(given)
        return
    if os.environ.get("CITYHUB_TEST_KUBECONFIG"):
        pytest.skip("a real hub cluster is given: set CITYHUB_TEST_EDGE_KUBECONFIG to a second cluster")
    assert embedded_cluster.main(["up", "--name", EDGE]) == 0
    try:
        yield layout(EDGE).kubeconfig
    finally:
        embedded_cluster.main(["down", "--name", EDGE])


@pytest.fixture(scope="module")
def city(
    tmp_path_factory: pytest.TempPathFactory, kubeconfig: Path, edge_kubeconfig: Path
) -> Iterator[Project]:
    project = new_project(tmp_path_factory.mktemp("edge-stack"), kubeconfig)
    stack_file = project.root / "stacks" / "Pulumi.dev.yaml"
    doc = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    doc["config"]["cityhub:clusters"] = [
        {"name": "hub", "role": "hub"},
        # No `cluster:` on the street office: it defaults to the edge that claims its division.
        # Relative: the project's own path, as README shows for an embedded edge.
        {"name": EDGE, "role": "edge", "divisionCode": "330106", "kubeconfig": f".state/{EDGE}.kubeconfig"},
    ]
    (project.root / ".state").mkdir(exist_ok=True)
    (project.root / ".state" / f"{EDGE}.kubeconfig").symlink_to(edge_kubeconfig)
    # 街道 takes part in emergencies too: its quota grows in emergency mode, so 平急切换 reaches the edge.
    street = next(d for d in doc["config"]["cityhub:departments"] if d["slug"] == "xihu-hubin")
    street["emergencyQuota"] = {"cpu": 2, "memory": "4Gi", "pods": 20}
    stack_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    project.pulumi("up", "--yes", "--skip-preview")
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", ok=False)


def namespaces(p: Project, kubeconfig: Path) -> set[str]:
    out = p.kubectl("--kubeconfig", str(kubeconfig), "get", "namespaces", "-o", "json").stdout
    return {n["metadata"]["name"] for n in json.loads(out)["items"]}


def test_each_department_lands_on_its_cluster(city: Project, kubeconfig: Path, edge_kubeconfig: Path) -> None:
    hub, edge = namespaces(city, kubeconfig), namespaces(city, edge_kubeconfig)
    assert STREET in edge and STREET not in hub
    assert {"dept-yingji", "dept-jiaotong", "dept-dongcheng-yingji"} <= hub
    assert not {n for n in edge if n.startswith("dept-")} - {STREET}
    assert "cityhub-system" in hub and "cityhub-system" in edge  # the catalog and the operator's home
    for config in (kubeconfig, edge_kubeconfig):  # the API every department uses, on every cluster
        city.kubectl("--kubeconfig", str(config), "get", "crd", "messagingchannels.hub.cityhub.io")
    placed = json.loads(city.pulumi("stack", "output", "departments", "--json").stdout)
    assert placed["xihu-hubin"]["namespace"] == "dept-xihu-hubin"


def test_emergency_mode_is_one_change_for_every_cluster(city: Project) -> None:
    city.pulumi("config", "set", "cityhub:mode", "emergency")
    try:
        steps = city.preview()
        changed = {s["urn"].rsplit("::", 1)[1] for s in steps}
        assert any(n.startswith(f"{EDGE}-") for n in changed), changed  # the edge's share of the change …
        assert any(n.startswith("hub-") for n in changed), changed  # … and the hub's, in one preview
    finally:
        city.pulumi("config", "set", "cityhub:mode", "normal")


def stop_edge_apiserver() -> Any:
    state = load_state(layout(EDGE))
    assert state is not None
    rec = state.find("kube-apiserver")
    assert rec is not None
    supervisor.stop(rec, sig=signal.SIGTERM)
    return rec


def wait_admission_ready(kubeconfig: Path) -> None:
    """After an API server restart its admission policies refuse every request ("failed to find resource
    referenced by paramKind") until it has discovered the AdmissionParams CRD again: wait for that, as a user
    would retry (a server-side dry run of a request; any other answer means admission is evaluating)."""
    request = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "admission-ready", "namespace": STREET},
        "spec": {"offering": "messaging"},
    }
    t0 = time.monotonic()

    def evaluating() -> bool:
        args = ("apply", "--dry-run=server", "-f", "-")
        result = kubectl(kubeconfig, *args, stdin=json.dumps(request), check=False)
        return "paramKind" not in result.stderr

    wait_for(evaluating, 120, "the restarted API server's admission to find AdmissionParams", interval=1)
    print(f"\n[edge] admission evaluating again {time.monotonic() - t0:.1f}s after the restart")


def test_an_unreachable_edge_fails_only_its_own_part(city: Project, kubeconfig: Path) -> None:
    if os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG"):
        pytest.skip("stops the edge's API server: only on the embedded edge")
    # One change on each cluster: the hub's 城管 quota and the street office's.
    city.pulumi("config", "set", "--path", "cityhub:departments[1].quota.pods", "60")
    city.pulumi("config", "set", "--path", "cityhub:departments[5].quota.pods", "12")
    stop_edge_apiserver()
    try:
        # What `cityhub up` runs: it finds the edge silent and leaves --refresh out (a refresh of every
        # cluster would fail the whole update, the hub's part too).
        clusters = cluster_reach.stack_clusters(city.root / "stacks" / "Pulumi.dev.yaml")
        args = cluster_reach.up_args(UP_ARGS, clusters, city.root)
        assert "--refresh" in UP_ARGS and "--refresh" not in args
        result = city.pulumi(*args, ok=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert EDGE in output, output  # the failure names the edge
        quota = city.get("resourcequota", "compute", "-n", "dept-chengguan")
        assert quota["spec"]["hard"]["pods"] == "60"  # the hub was still updated
    finally:
        assert embedded_cluster.main(["up", "--name", EDGE]) == 0  # restarts the stopped apiserver
        wait_admission_ready(layout(EDGE).kubeconfig)
    clusters = cluster_reach.stack_clusters(city.root / "stacks" / "Pulumi.dev.yaml")
    assert cluster_reach.up_args(UP_ARGS, clusters, city.root) == UP_ARGS  # every cluster answers again
    city.pulumi(*UP_ARGS)  # the edge catches up
    edge = layout(EDGE).kubeconfig
    out = city.kubectl(
        "--kubeconfig", str(edge), "get", "resourcequota", "compute", "-n", STREET, "-o", "json"
    )
    assert json.loads(out.stdout)["spec"]["hard"]["pods"] == "12"


def cityhub(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [CITYHUB, *args], capture_output=True, text=True, timeout=600, cwd=paths.repo_root()
    )
    assert proc.returncode == 0, f"cityhub {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def uplink_cut_fires_the_alert_naming_the_edge(records: dict[str, Any], metrics_url: str) -> None:
    """The edge's uplink cut (its leaf connection to the hub's leafnode port dropped by the firewall, both
    ways: silence, not a refusal) until a live Prometheus evaluating the generated rules fires
    CityhubEdgeUplinkDown naming the edge; restored, the leaf node reconnects by itself and the alert
    resolves."""
    leafnode = records["messaging-nats-server"].ports["leafnode"]
    rules = monitoring_rules.rules_yaml(
        RuleParams(interval="1s", long_interval="1s", uplink_down_for="3s", operator_down_for="3s")
    )
    target = metrics_url.split("//", 1)[1].split("/", 1)[0]
    prom = Prometheus(paths.state_dir() / "edge-prometheus", rules, {"cityhub-operator-edge": [target]})
    cut = [["OUTPUT", "-p", "tcp", flag, str(leafnode), "-j", "DROP"] for flag in ("--dport", "--sport")]
    prom.start()
    try:
        scraped = f'min(cityhub_edge_uplink_up{{edge="{EDGE}"}})'
        wait_for(lambda: prom.value(scraped) == 1, 30, "the edge's uplink scraped as up")
        for rule in cut:
            subprocess.run(["iptables", "-I", *rule], check=True)
        t0 = time.monotonic()
        try:
            alert = wait_for(lambda: next(iter(prom.alerts("CityhubEdgeUplinkDown")), None), 150, "the alert")
            fired = time.monotonic() - t0
            assert alert["labels"]["edge"] == EDGE, alert
        finally:
            for rule in cut:
                subprocess.run(["iptables", "-D", *rule], check=False)
        t1 = time.monotonic()
        wait_for(lambda: not prom.alerts("CityhubEdgeUplinkDown"), 150, "CityhubEdgeUplinkDown to resolve")
        print(f"\n[edge] uplink cut: CityhubEdgeUplinkDown{{edge={EDGE}}} fired after {fired:.1f}s; "
              f"resolved {time.monotonic() - t1:.1f}s after the uplink returned")  # fmt: skip
    finally:
        prom.stop()


def test_a_street_office_requests_a_channel_on_its_edge(city: Project, kubeconfig: Path) -> None:
    """The operator serving the edge (`cityhub operator start --cluster`) beside the hub's: the street office
    applies a MessagingChannel on its own cluster and gets Ready, the Secret and the edge's nats-server there;
    the hub's operator never sees it; the edge's uplink is reported as up."""
    if os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG"):
        pytest.skip("starts the operators as local processes: only with the embedded edge")
    edge = layout(EDGE).kubeconfig
    channel = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "water-level", "namespace": STREET},
        "spec": {
            "offering": "messaging",
            "limits": {"maxBytes": "64Mi"},
            "shareWith": [{"department": "dept-yingji", "purpose": "汛情联动"}],
        },
    }
    try:
        cityhub("operator", "start", "--components", "messaging", "--drift-interval", "5")
        started = cityhub("operator", "start", "--cluster", EDGE, "--drift-interval", "5")
        assert f"messaging on {EDGE}: nats-server of edge {EDGE}" in started.stdout, started.stdout
        apply(edge, [channel])
        kubectl(
            edge,
            "wait",
            "--for=condition=Ready",
            "--timeout=180s",
            "messagingchannel/water-level",
            "-n",
            STREET,
        )
        got = kubectl(edge, "get", "messagingchannel", "water-level", "-n", STREET, "-o", "json").stdout
        secret_name = json.loads(got)["status"]["connectionSecret"]
        secret = json.loads(kubectl(edge, "get", "secret", secret_name, "-n", STREET, "-o", "json").stdout)
        records = {r.name: r for r in Supervisor(paths.state_dir() / "processes").records()}
        edge_nats = records[f"messaging-nats-server-{EDGE}"]
        assert str(edge_nats.port) in base64.b64decode(secret["data"]["url"]).decode()
        # Only on the edge: the hub has no such namespace, and its operator served nothing of it.
        hub_log = (paths.state_dir() / "operator" / "operator.log").read_text()
        assert "water-level" not in hub_log
        metrics_url = records[f"operator@{EDGE}"].url or ""

        def uplink() -> str:
            with urllib.request.urlopen(metrics_url, timeout=5) as r:
                text = r.read().decode()
            return next((ln for ln in text.splitlines() if ln.startswith("cityhub_edge_uplink_up")), "")

        wait_for(lambda: uplink().endswith(" 1.0"), 60, "cityhub_edge_uplink_up of the edge reported up")
        assert f'edge="{EDGE}"' in uplink()
        if os.geteuid() == 0:  # cutting the uplink takes a firewall rule
            uplink_cut_fires_the_alert_naming_the_edge(records, metrics_url)
        kubectl(edge, "delete", "messagingchannel", "water-level", "-n", STREET, "--timeout=120s")
    finally:
        # Whatever happened, nothing of the test may hold the street office's namespace on destroy.
        kubectl(
            edge,
            "delete",
            "messagingchannel",
            "water-level",
            "-n",
            STREET,
            "--ignore-not-found",
            "--timeout=60s",
            check=False,
        )
        kubectl(
            edge,
            "patch",
            "messagingchannel",
            "water-level",
            "-n",
            STREET,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        cityhub("operator", "stop")


def test_a_street_office_on_its_edge_gets_identity_and_maps_served_by_the_hub(
    city: Project, kubeconfig: Path
) -> None:
    """One identity realm and one map database for the city: the edge's operator makes the street office's
    IdentityClient and MapLayer with the hub's Keycloak and PostGIS; status and Secrets are on the edge; the
    client's token comes from the hub's realm with the office's role, its feature comes back in the hub's
    martin tile, and the hub's operator never saw either request."""
    if os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG"):
        pytest.skip("starts the operators as local processes: only with the embedded edge")
    edge = layout(EDGE).kubeconfig
    meta = {"namespace": STREET, "labels": {"cityhub.io/data-grade": "general"}}
    client = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "IdentityClient",
        "metadata": {"name": "patrol", **meta},
        "spec": {"offering": "identity", "type": "confidential", "roles": ["viewer"]},
    }
    layer = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MapLayer",
        "metadata": {"name": "hydrants", **meta},
        "spec": {
            "offering": "maps",
            "geometryType": "Point",
            "attributes": [{"name": "label", "type": "text"}],
            "dataDeletion": "Drop",
        },
    }
    try:
        cityhub("operator", "start", "--components", "identity,maps", "--drift-interval", "5")
        cityhub("operator", "start", "--cluster", EDGE, "--drift-interval", "5")
        t0 = time.monotonic()
        apply(edge, [client, layer])
        for kind in ("identityclient/patrol", "maplayer/hydrants"):
            kubectl(edge, "wait", "--for=condition=Ready", "--timeout=180s", kind, "-n", STREET)
        print(f"\n[edge] IdentityClient and MapLayer on {EDGE} Ready in {time.monotonic() - t0:.1f}s")

        def secret_of(kind: str, name: str) -> dict[str, str]:
            got = json.loads(kubectl(edge, "get", kind, name, "-n", STREET, "-o", "json").stdout)
            ref = got["status"]["connectionSecret"]
            data = json.loads(kubectl(edge, "get", "secret", ref, "-n", STREET, "-o", "json").stdout)["data"]
            return {k: base64.b64decode(v).decode() for k, v in data.items()}

        ids = secret_of("identityclient", "patrol")
        form = {"grant_type": "client_credentials", "client_id": ids["client_id"]}
        form["client_secret"] = ids["client_secret"]
        body = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(
            urllib.request.Request(ids["token_endpoint"], data=body), timeout=20
        ) as r:
            token = json.load(r)["access_token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert f"{STREET}:viewer" in claims["realm_access"]["roles"], claims
        assert claims["iss"] == ids["issuer"]

        maps = secret_of("maplayer", "hydrants")
        lon, lat = 120.1600, 30.2590  # 湖滨, in CGCS2000 (the layer's default system)
        with psycopg.connect(maps["databaseUrl"], connect_timeout=10) as db:
            point = "ST_SetSRID(ST_MakePoint(%s, %s), 4490)"
            db.execute(
                f"INSERT INTO {maps['table']} (label, geom) VALUES (%s, {point})", ("湖滨消防栓", lon, lat)
            )
        z = 14
        x = int((lon + 180) / 360 * 2**z)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
        url = maps["tileUrlWithToken"].replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
        with urllib.request.urlopen(url, timeout=20) as r:
            assert "湖滨消防栓".encode() in r.read()
        hub_log = (paths.state_dir() / "operator" / "operator.log").read_text()
        assert "patrol" not in hub_log and "hydrants" not in hub_log
    finally:
        for kind in ("identityclient/patrol", "maplayer/hydrants"):
            kubectl(edge, "delete", kind, "-n", STREET, "--ignore-not-found", "--timeout=90s", check=False)
        cityhub("operator", "stop")
