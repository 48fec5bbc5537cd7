"""多级贯通: one stack, the hub and two edge clusters — a street office's (湖滨街道, on `xihu-edge`)
and a district's (东城区, on `dongcheng-edge`). Each 区/街道 department lands on the edge of its
division, everything else on the hub; 平急切换 is one change for all three; an unreachable edge fails only
its own part. The street office publishes through its edge's leaf node while the uplink is cut for 60 s and
a city bureau on the hub reads every message afterwards; the district gets an identity client and a map
layer served by the hub.

The edges are embedded clusters beside the session's hub (`cityhub cluster up --name …`), or the clusters in
CITYHUB_TEST_EDGE_KUBECONFIG and CITYHUB_TEST_EDGE2_KUBECONFIG when the hub is a real one
(CITYHUB_TEST_KUBECONFIG)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
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
from cityhub.supervisor import Supervisor
from cityhub.testkit import apply, kubectl, wait_for
from tests.integration.edge_apps import (
    Journey,
    UplinkWatch,
    api_port,
    cityhub,
    footprint,
    force_delete,
    secret_of,
)
from tests.integration.test_hub_stack import Project, new_project

pytestmark = pytest.mark.integration

EDGE = "xihu-edge"
STREET = "dept-xihu-hubin"  # 西湖区湖滨街道办事处, division 330106
EDGE2 = "dongcheng-edge"
DISTRICT = "dept-dongcheng-yingji"  # 东城区应急管理局, division 330102
BUREAU = "dept-yingji"  # 应急管理局, a city bureau on the hub
EDGES = {EDGE: ("330106", "CITYHUB_TEST_EDGE_KUBECONFIG"), EDGE2: ("330102", "CITYHUB_TEST_EDGE2_KUBECONFIG")}
EMBEDDED_ONLY = "starts the operators as local processes: only with the embedded edges"


@pytest.fixture(scope="module")
def edge_kubeconfigs(kubeconfig: Path) -> Iterator[dict[str, Path]]:
    given = {name: os.environ.get(var) for name, (_, var) in EDGES.items()}
    if all(given.values()):
        yield {name: Path(str(path)) for name, path in given.items()}
        return
    if os.environ.get("CITYHUB_TEST_KUBECONFIG"):
        pytest.skip("a real hub cluster is given: set CITYHUB_TEST_EDGE_KUBECONFIG and …_EDGE2_… to two more")
    started: list[str] = []
    try:
        for name in EDGES:
            started.append(name)
            assert embedded_cluster.main(["up", "--name", name]) == 0
        yield {name: layout(name).kubeconfig for name in EDGES}
    finally:
        for name in started:
            embedded_cluster.main(["down", "--name", name])


@pytest.fixture(scope="module")
def city(
    tmp_path_factory: pytest.TempPathFactory, kubeconfig: Path, edge_kubeconfigs: dict[str, Path]
) -> Iterator[Project]:
    project = new_project(tmp_path_factory.mktemp("edge-stack"), kubeconfig)
    stack_file = project.root / "stacks" / "Pulumi.dev.yaml"
    doc = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    (project.root / ".state").mkdir(exist_ok=True)
    # No `cluster:` on the street office or the district: each defaults to the edge claiming its division.
    # Relative kubeconfigs: the project's own paths, as README shows for an embedded edge.
    doc["config"]["cityhub:clusters"] = [{"name": "hub", "role": "hub"}]
    for name, (code, _) in EDGES.items():
        doc["config"]["cityhub:clusters"].append(
            {"name": name, "role": "edge", "divisionCode": code, "kubeconfig": f".state/{name}.kubeconfig"}
        )
        (project.root / ".state" / f"{name}.kubeconfig").symlink_to(edge_kubeconfigs[name])
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


def test_each_department_lands_on_its_cluster(
    city: Project, kubeconfig: Path, edge_kubeconfigs: dict[str, Path]
) -> None:
    hub = namespaces(city, kubeconfig)
    edge, edge2 = (namespaces(city, edge_kubeconfigs[name]) for name in EDGES)
    assert STREET in edge and DISTRICT in edge2 and not {STREET, DISTRICT} & hub
    assert {"dept-yingji", "dept-jiaotong", "dept-chengguan"} <= hub
    assert not {n for n in edge if n.startswith("dept-")} - {STREET}
    assert not {n for n in edge2 if n.startswith("dept-")} - {DISTRICT}
    for config in (kubeconfig, *edge_kubeconfigs.values()):  # the catalog, the operator's home and the API
        assert "cityhub-system" in namespaces(city, config)
        city.kubectl("--kubeconfig", str(config), "get", "crd", "messagingchannels.hub.cityhub.io")
    placed = json.loads(city.pulumi("stack", "output", "departments", "--json").stdout)
    assert placed["xihu-hubin"]["namespace"] == STREET


def test_emergency_mode_is_one_change_for_every_cluster(city: Project) -> None:
    city.pulumi("config", "set", "cityhub:mode", "emergency")
    try:
        steps = city.preview()
        changed = {s["urn"].rsplit("::", 1)[1] for s in steps}
        for cluster in ("hub", *EDGES):  # each cluster's share of the change, in one preview
            assert any(n.startswith(f"{cluster}-") for n in changed), (cluster, changed)
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
        pytest.skip("stops the edge's API server: only on the embedded edges")
    # One change on each cluster: the hub's 城管 quota, the district's and the street office's.
    city.pulumi("config", "set", "--path", "cityhub:departments[1].quota.pods", "60")
    city.pulumi("config", "set", "--path", "cityhub:departments[4].quota.pods", "24")
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
        assert quota["spec"]["hard"]["pods"] == "60"  # the hub was still updated …
        edge2 = layout(EDGE2).kubeconfig
        out = kubectl(edge2, "get", "resourcequota", "compute", "-n", DISTRICT, "-o", "json")
        assert json.loads(out.stdout)["spec"]["hard"]["pods"] == "24"  # … and the other edge
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


def test_a_street_office_publishes_on_its_edge_through_a_60s_uplink_cut_and_the_hub_gets_everything(
    city: Project, kubeconfig: Path, edge_kubeconfigs: dict[str, Path]
) -> None:
    """The operator serving the edge (`cityhub operator start --cluster`) beside the hub's: the street office
    applies a MessagingChannel shared with 应急管理局 on its own cluster and gets Ready and the Secret there
    (the edge's nats-server, a leaf node of the hub's); the hub's operator never sees it. A device publishes
    through the leaf node and the bureau's application on the hub reads the share. The uplink is cut for 60 s
    while the device keeps publishing (acknowledged by the edge), a live Prometheus fires
    CityhubEdgeUplinkDown naming the edge; restored, the alert resolves and the bureau gets every message, in
    order, none lost, none twice."""
    if os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG"):
        pytest.skip(EMBEDDED_ONLY)
    edge = edge_kubeconfigs[EDGE]
    grade = {"cityhub.io/data-grade": "general"}
    channel = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "water-level", "namespace": STREET, "labels": grade},
        "spec": {
            "offering": "messaging",
            "limits": {"maxBytes": "64Mi"},
            "shareWith": [{"department": BUREAU, "purpose": "汛情联动"}],
        },
    }
    # The bureau's own channel on the hub: its Secret's credentials are the application's, reading shared.>.
    inbox = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "flood-desk", "namespace": BUREAU, "labels": grade},
        "spec": {"offering": "messaging", "limits": {"maxBytes": "1Mi"}},
    }
    try:
        cityhub("operator", "start", "--components", "messaging", "--drift-interval", "5")
        started = cityhub("operator", "start", "--cluster", EDGE, "--drift-interval", "5")
        assert f"messaging on {EDGE}: nats-server of edge {EDGE}" in started.stdout, started.stdout
        t0 = time.monotonic()
        apply(edge, [channel])
        apply(kubeconfig, [inbox])
        for config, ns, name in ((edge, STREET, "water-level"), (kubeconfig, BUREAU, "flood-desk")):
            wait = ("wait", "--for=condition=Ready", "--timeout=180s", f"messagingchannel/{name}", "-n", ns)
            kubectl(config, *wait)
        print(f"\n[edge] the street office's channel on {EDGE} Ready in {time.monotonic() - t0:.1f}s")
        office = secret_of(edge, STREET, "messagingchannel", "water-level")
        records = {r.name: r for r in Supervisor(paths.state_dir() / "processes").records()}
        assert str(records[f"messaging-nats-server-{EDGE}"].port) in office["url"]  # the edge's leaf node
        # Only on the edge: the hub has no such namespace, and its operator served nothing of it.
        assert "water-level" not in (paths.state_dir() / "operator" / "operator.log").read_text()
        metrics_url = records[f"operator@{EDGE}"].url or ""

        def uplink() -> str:
            with urllib.request.urlopen(metrics_url, timeout=5) as r:
                text = r.read().decode()
            return next((ln for ln in text.splitlines() if ln.startswith("cityhub_edge_uplink_up")), "")

        wait_for(lambda: uplink().endswith(" 1.0"), 60, "cityhub_edge_uplink_up of the edge reported up")
        assert f'edge="{EDGE}"' in uplink()
        ports = {"hub": api_port(kubeconfig), EDGE: api_port(edge)}
        print(f"[edge] serving {EDGE} with 1 channel: {footprint(records, EDGE, ports)}")
        bureau = secret_of(kubeconfig, BUREAU, "messagingchannel", "flood-desk")
        journey = Journey(STREET, "water-level", EDGE, office, bureau)
        if os.geteuid() != 0:  # cutting the uplink takes a firewall rule
            asyncio.run(journey.run(None))
            pytest.skip("the uplink cut needs root (an iptables rule); the path through it was checked")
        leafnode = records["messaging-nats-server"].ports["leafnode"]
        with UplinkWatch(EDGE, leafnode, metrics_url) as watch:
            asyncio.run(journey.run(watch))
        print("\n[edge] " + "; ".join(f"{k}: {v:.1f}" for k, v in journey.figures.items()))
        kubectl(edge, "delete", "messagingchannel", "water-level", "-n", STREET, "--timeout=120s")
    finally:
        force_delete(edge, STREET, "messagingchannel/water-level")
        force_delete(kubeconfig, BUREAU, "messagingchannel/flood-desk")
        cityhub("operator", "stop")


def test_a_district_on_the_other_edge_gets_identity_and_maps_served_by_the_hub(
    city: Project, kubeconfig: Path, edge_kubeconfigs: dict[str, Path]
) -> None:
    """One identity realm and one map database for the city: a person of the district signs in to the
    second edge (its API server trusts the city's identity) and applies an IdentityClient and a MapLayer; the
    edge's operator makes them with the hub's Keycloak and PostGIS; status and Secrets are on the edge; the
    client's token comes from the hub's realm with the district's role, its feature comes back in the hub's
    martin tile, and the hub's operator never saw either request."""
    if os.environ.get("CITYHUB_TEST_EDGE_KUBECONFIG"):
        pytest.skip(EMBEDDED_ONLY)
    edge = edge_kubeconfigs[EDGE2]
    meta = {"namespace": DISTRICT, "labels": {"cityhub.io/data-grade": "general"}}
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
        started = cityhub("operator", "start", "--cluster", EDGE2, "--drift-interval", "5")
        assert f"sign-in: {EDGE2} now trusts" in started.stdout, started.stdout
        # The district's duty officer signs in to the district's own cluster with the city's identity and
        # applies the requests with kubectl alone.
        person, password = "dc-duty", "东城-值班-2026"
        add = ("people", "add", person, "--department", "dongcheng-yingji", "--password-stdin")
        cityhub(*add, stdin=password)
        cityhub("login", person, "--cluster", EDGE2, "--password-stdin", stdin=password)
        signed_in = paths.state_dir() / "people" / person / f"kubeconfig-{EDGE2}"
        who = kubectl(signed_in, "auth", "whoami", "-o", "json").stdout
        assert json.loads(who)["status"]["userInfo"]["username"] == f"oidc:{person}"
        denied = kubectl(signed_in, "get", "secrets", "-n", "cityhub-system", check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr
        t0 = time.monotonic()
        apply(signed_in, [client, layer])
        for kind in ("identityclient/patrol", "maplayer/hydrants"):
            kubectl(edge, "wait", "--for=condition=Ready", "--timeout=180s", kind, "-n", DISTRICT)
        print(f"\n[edge] IdentityClient and MapLayer on {EDGE2} Ready in {time.monotonic() - t0:.1f}s")

        ids = secret_of(edge, DISTRICT, "identityclient", "patrol")
        form = {"grant_type": "client_credentials", "client_id": ids["client_id"]}
        form["client_secret"] = ids["client_secret"]
        body = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(
            urllib.request.Request(ids["token_endpoint"], data=body), timeout=20
        ) as r:
            token = json.load(r)["access_token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert f"{DISTRICT}:viewer" in claims["realm_access"]["roles"], claims
        assert claims["iss"] == ids["issuer"]

        maps = secret_of(edge, DISTRICT, "maplayer", "hydrants")
        lon, lat = 120.1700, 30.2500  # in 东城区, in CGCS2000 (the layer's default system)
        with psycopg.connect(maps["databaseUrl"], connect_timeout=10) as db:
            point = "ST_SetSRID(ST_MakePoint(%s, %s), 4490)"
            db.execute(
                f"INSERT INTO {maps['table']} (label, geom) VALUES (%s, {point})", ("东城消防栓", lon, lat)
            )
        z = 14
        x = int((lon + 180) / 360 * 2**z)
        y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
        url = maps["tileUrlWithToken"].replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
        with urllib.request.urlopen(url, timeout=20) as r:
            assert "东城消防栓".encode() in r.read()
        hub_log = (paths.state_dir() / "operator" / "operator.log").read_text()
        assert "patrol" not in hub_log and "hydrants" not in hub_log
    finally:
        for kind in ("identityclient/patrol", "maplayer/hydrants"):
            kubectl(edge, "delete", kind, "-n", DISTRICT, "--ignore-not-found", "--timeout=90s", check=False)
        cityhub("operator", "stop")


def test_with_the_operator_deployed_the_hub_runs_each_edges_operator_with_the_edges_own_account(
    city: Project, kubeconfig: Path, edge_kubeconfigs: dict[str, Path]
) -> None:
    """What a city with real clusters gets from `pulumi up` with cityhub:operator.deploy and messaging in
    cityhub:backends.deploy: each edge's operator as a Deployment on the hub (kwok's nodes run no container:
    the objects, their wiring and the edge's account are checked, not the pods), the edge's own nats-server
    (a leaf node of the hub's) on the edge, and nothing of the hub's backends there. Set back afterwards:
    the edge operators go, the departments' namespaces stay."""
    stack = city.root / "stacks" / "Pulumi.dev.yaml"
    before = stack.read_text(encoding="utf-8")
    doc = yaml.safe_load(before)
    conf = doc["config"]
    conf["cityhub:operator"] = {"deploy": True, "replicas": 1}
    size = conf["cityhub:storage"]["preprovisioned"]["size"]
    conf["cityhub:backends"] = {
        "deploy": ["messaging"],
        "messaging": {
            "storageSize": size,
            "leafnodes": {"url": "nats-leaf://hub-leaf.city.example:7422", "serviceType": "NodePort"},
            # NodePort: kwok's clusters have no load balancer (Pulumi waits for a LoadBalancer's address).
            "edge": {
                "operatorUrl": "nats://nats.{edge}.city.example:4222",
                "storageSize": size,
                "serviceType": "NodePort",
            },
        },
    }
    for cluster in conf["cityhub:clusters"][1:]:
        # The edges' API servers listen on loopback here; a real edge's address as the hub's pods reach it.
        cluster["apiServer"] = f"https://{cluster['name']}.edges.city.example:6443"
    stack.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    city.pulumi("config", "set", "--secret", "cityhub:backendsMasterKey", "e" * 48)
    try:
        city.pulumi("up", "--yes", "--skip-preview")
        hub_workloads = json.loads(
            kubectl(kubeconfig, "get", "deploy,statefulset", "-n", "cityhub-system", "-o", "json").stdout
        )
        names = {w["metadata"]["name"] for w in hub_workloads["items"]}
        assert {"cityhub-operator", "nats", *(f"cityhub-operator-{e}" for e in EDGES)} <= names
        for name, config in edge_kubeconfigs.items():
            objects = json.loads(
                kubectl(config, "get", "deploy,statefulset", "-n", "cityhub-system", "-o", "json").stdout
            )
            assert {w["metadata"]["name"] for w in objects["items"]} == {"nats"}, name  # the leaf node only
            # The kubeconfig the hub gives the edge's operator: the edge's own account, its own rights.
            ref = ("secret", f"cityhub-operator-{name}-kubeconfig", "-n", "cityhub-system", "-o", "json")
            secret = json.loads(kubectl(kubeconfig, "get", *ref).stdout)
            given = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
            assert given["clusters"][0]["cluster"]["server"] == f"https://{name}.edges.city.example:6443"
            reach = yaml.safe_load(config.read_text())["clusters"][0]["cluster"]["server"]
            given["clusters"][0]["cluster"]["server"] = reach  # from this machine, where it listens
            own = city.root / f".state/{name}-operator.kubeconfig"
            own.write_text(yaml.safe_dump(given))

            def can(*what: str, kubeconfig: Path = own) -> str:
                return kubectl(kubeconfig, "auth", "can-i", *what, check=False).stdout.strip()

            assert can("watch", "messagingchannels.hub.cityhub.io", "--all-namespaces") == "yes"
            assert can("get", "secrets", "-n", "cityhub-system") == "no"
            assert can("list", "pods", "-n", "cityhub-system", kubeconfig=own) == "no"
        print(f"\n[edge] operator.deploy: the hub runs {len(EDGES)} edge operators; each edge its leaf node")
    finally:
        stack.write_text(before, encoding="utf-8")
        city.pulumi("config", "rm", "cityhub:backendsMasterKey", ok=False)
        city.pulumi("up", "--yes", "--skip-preview", ok=False)
        # The nats-servers' volume claims outlive their StatefulSets (a city keeps its messages); here they
        # would keep the pre-provisioned volumes bound, and the module's destroy waiting on them.
        for config in (kubeconfig, *edge_kubeconfigs.values()):
            kubectl(config, "delete", "pvc", "--all", "-n", "cityhub-system", "--wait=false", check=False)
    names = {
        w["metadata"]["name"]
        for w in json.loads(
            kubectl(kubeconfig, "get", "deploy", "-n", "cityhub-system", "-o", "json").stdout
        )["items"]
    }
    assert not {n for n in names if n.startswith("cityhub-operator")}
    assert STREET in namespaces(city, edge_kubeconfigs[EDGE])
