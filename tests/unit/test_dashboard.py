"""`cityhub dashboard`: the page rendered from a fixed state, the mode read from namespaces, the maturity
section without a model, the state of unreachable sources (named, never zeros), and the clusters panel
(多级贯通) from the stack's clusters read with fake API servers: the hub answers, an edge does not."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityhub import paths, stack_config
from cityhub.dashboard import clusters, page, serve, state
from cityhub.dashboard.cluster import ClusterState, Namespace, Requests
from cityhub.dashboard.clusters import StackCluster, Topology
from cityhub.report.command import StackFacts
from cityhub.report.model import Objectives
from cityhub.report.query import Prometheus
from cityhub.supervisor import free_port


def cell(requests: int, ready: int, down: int = 0, probes: int = 0, failures: int = 0) -> dict[str, Any]:
    return {
        "requests": requests,
        "ready": ready,
        "unmet": requests - ready,
        "components": {"ready": ready, "down": down, "pending": 0},
        "availability": None if not probes else 1 - failures / probes,
        "probes": probes,
        "probeFailures": failures,
        "budgetSpent": None if not probes else failures / probes / 0.005,
        "apdex": 0.9 if probes else None,
        "incidentsOpened": 1 if down else 0,
        "incidentsResolved": 0,
        "mttrSeconds": None,
    }


STATE: dict[str, Any] = {
    "schema": state.SCHEMA,
    "generatedAt": "2026-11-30T04:00:00+00:00",
    "city": "示例市",
    "stack": "dev",
    "sources": {"prometheus": "http://prom:9090", "kubeconfig": "/k"},
    "errors": [],
    "operatorUp": True,
    "mode": {
        "configured": "emergency",
        "inForce": "switching",
        "responders": 2,
        "respondersAtEmergencyPriority": 1,
    },
    "period": {
        "label": "2026-11",
        "start": "2026-11-01T00:00:00+08:00",
        "evaluatedAt": "2026-11-30T04:00:00+00:00",
    },
    "objectives": {
        "probeObjective": 0.995,
        "provisioningObjective": 0.95,
        "provisioningThresholdSeconds": 60.0,
    },
    "componentTypes": [
        {"name": "messaging", "displayName": "消息通道 (messaging)"},
        {"name": "sensing", "displayName": "感知设备接入 (sensing)"},
    ],
    "departments": [
        {
            "label": "dept-yingji",
            "slug": "yingji",
            "name": "应急管理局",
            "cells": {"messaging": cell(2, 2, probes=1000, failures=1)},
        },
        {
            "label": "dept-jiaotong",
            "slug": "jiaotong",
            "name": "交通运输局",
            "cells": {
                "messaging": cell(1, 1, probes=500),
                "sensing": cell(1, 0, down=1, probes=100, failures=20),
            },
        },
        {"label": "dept-chengguan", "slug": "chengguan", "name": "城市管理局", "cells": {}},
    ],
    "totals": {
        "requests": 4,
        "ready": 3,
        "unmet": 1,
        "componentsDown": 1,
        "firingAlerts": 1,
        "availability": 0.9866,
        "budgetSpent": 2.7,
        "apdex": 0.9,
        "mttrSeconds": None,
    },
    "alerts": [
        {
            "name": "CityhubComponentDown",
            "severity": "critical",
            "department": "dept-jiaotong",
            "componentType": "sensing",
            "since": "2026-11-30T03:59:00Z",
            "summary": "sensing down",
            "runbookUrl": "https://example.org/runbooks/cityhub/cityhubcomponentdown",
        }
    ],
    "maturity": {"available": False, "zh": "成熟度自评模型尚未提供", "en": "not provided yet"},
}


def test_the_page_shows_departments_by_type_incidents_and_mode_in_chinese_first() -> None:
    html = page.page(STATE, 10)
    assert html.index("示例市中枢能力仪表盘") < html.index("hub capability dashboard")
    assert (
        'data-cell="dept-jiaotong/sensing" data-requests="1" data-ready="0" data-unmet="1" data-down="1"'
        in html
    )
    assert 'data-cell="dept-yingji/messaging" data-requests="2" data-ready="2"' in html
    assert '<td class="idle">—</td>' in html  # 城市管理局 asked for nothing
    assert 'data-alert="CityhubComponentDown"' in html and "处置手册 runbook" in html
    assert 'data-configured="emergency" data-in-force="switching"' in html and "急时 · 切换中" in html
    assert 'id="maturity-missing"' in html
    assert (
        html.count("<script>") == 1 and 'fetch("fragment"' in html and "setInterval(refresh, every)" in html
    )
    assert "<link" not in html and 'src="' not in html  # self-contained: nothing loaded from elsewhere


def test_the_slo_table_lists_probed_cells_against_the_objective() -> None:
    html = page.fragment(STATE)
    slos = html[html.index('id="slos"') :]
    assert 'data-slo="dept-jiaotong/sensing" data-probes="100" data-failures="20"' in slos
    assert '<td class="bad">80.00%</td>' in slos and "99.90%" in slos


def test_mode_in_force_comes_from_the_responders_namespaces() -> None:
    def ns(label: str, responder: bool, raised: bool) -> Namespace:
        return Namespace(label, label, None, responder, raised)

    assert ClusterState().mode_in_force is None
    assert ClusterState((ns("a", True, False), ns("b", False, False))).mode_in_force == "normal"
    assert ClusterState((ns("a", True, True), ns("b", True, False))).mode_in_force == "switching"
    assert ClusterState((ns("a", True, True), ns("b", False, False))).mode_in_force == "emergency"


def test_unreachable_sources_are_named_and_the_stacks_departments_still_listed(tmp_path: Path) -> None:
    facts = StackFacts(city="示例市", names={"yingji": "应急管理局"}, objectives=Objectives(), mode="normal")
    src = state.Sources(Prometheus(f"http://127.0.0.1:{free_port()}", 2), tmp_path / "none", "dev", facts)
    got = state.collect(src)
    assert [e["source"] for e in got["errors"]] == ["prometheus", "kubernetes"]
    assert got["operatorUp"] is None and got["alerts"] is None and got["totals"]["firingAlerts"] is None
    assert got["departments"] == [
        {
            "label": "dept-yingji",
            "slug": "yingji",
            "name": "应急管理局",
            "cluster": None,
            "clusterError": None,
            "cells": {},
        }
    ]
    (hub,) = got["clusters"]  # no cityhub:clusters: the one ambient hub, unreadable here
    assert hub["name"] == "hub" and hub["reachable"] is False and hub["requests"] is None
    assert "数据源不可读" in page.fragment(got)
    json.dumps(got)  # the JSON endpoint's document


def test_the_server_serves_page_fragment_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard = serve.Dashboard(
        state.Sources(Prometheus("http://x"), tmp_path, "dev", StackFacts(None, {}, Objectives())), 5
    )
    monkeypatch.setattr(dashboard, "state", lambda: STATE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), serve.handler(dashboard))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/api/state") as r:
            assert r.headers["Content-Type"].startswith("application/json") and json.load(r) == STATE
        with urllib.request.urlopen(f"{base}/fragment") as r:
            assert "<script>" not in r.read().decode()
        with urllib.request.urlopen(f"{base}/") as r:
            assert "每 5 秒刷新" in r.read().decode()
    finally:
        server.shutdown()
        server.server_close()


EDGE_KUBECONFIG = ".state/clusters/xihu-edge/kubeconfig"
TOPOLOGY = Topology(
    (
        StackCluster("hub", "hub", departments=("yingji", "dongcheng-yingji")),
        StackCluster(
            "xihu-edge",
            "edge",
            division_code="330106",
            division_name="西湖区",
            kubeconfig=EDGE_KUBECONFIG,
            context="xihu",
            departments=("xihu-hubin",),
        ),
    )
)
FACTS = StackFacts(
    city="示例市",
    names={
        "yingji": "应急管理局",
        "dongcheng-yingji": "东城区应急管理局",
        "xihu-hubin": "西湖区湖滨街道办事处",
    },
    objectives=Objectives(),
)


def hub_state() -> ClusterState:
    return ClusterState(
        namespaces=(
            Namespace("dept-yingji", "yingji", "应急管理局", True, False),
            Namespace("dept-dongcheng-yingji", "dongcheng-yingji", None, True, False),
        ),
        requests={
            ("dept-yingji", "messaging"): Requests(2, 2),
            ("dept-dongcheng-yingji", "sensing"): Requests(1, 0),
        },
    )


def collect_with(edge: ClusterState, tmp_path: Path) -> tuple[dict[str, Any], list[tuple[Path, str | None]]]:
    """The state with a fake hub (tmp_path/hub) and `edge`, Prometheus unreachable; and what was read."""
    asked: list[tuple[Path, str | None]] = []

    def reader(kubeconfig: Path, context: str | None) -> ClusterState:
        asked.append((kubeconfig, context))
        return hub_state() if kubeconfig == tmp_path / "hub" else edge

    src = state.Sources(
        Prometheus(f"http://127.0.0.1:{free_port()}", 2), tmp_path / "hub", "dev", FACTS, TOPOLOGY
    )
    return state.collect(src, reader=reader), asked


def test_the_clusters_panel_shows_the_hub_answering_and_an_unreachable_edge_in_red(tmp_path: Path) -> None:
    refused = "API server not readable with …/xihu-edge/kubeconfig (context xihu): Connection refused"
    got, asked = collect_with(ClusterState(error=refused), tmp_path)
    # The hub through the dashboard's own kubeconfig; the edge through its entry's, relative to the project.
    assert asked == [(tmp_path / "hub", None), (paths.repo_root() / EDGE_KUBECONFIG, "xihu")]
    assert {"source": "kubernetes:xihu-edge", "message": refused} in got["errors"]
    hub, edge = got["clusters"]
    assert (hub["reachable"], hub["requests"], hub["ready"], hub["unmet"]) == (True, 3, 2, 1)
    assert (edge["reachable"], edge["requests"], edge["error"]) == (False, None, refused)
    assert edge["departments"] == [
        {"label": "dept-xihu-hubin", "slug": "xihu-hubin", "name": "西湖区湖滨街道办事处"}
    ]
    json.dumps(got)

    html = page.fragment(got)
    panel = html[html.index('id="clusters"') : html.index('id="matrix"')]
    hub_row = panel[panel.index('data-cluster="hub"') : panel.index('data-cluster="xihu-edge"')]
    edge_row = panel[panel.index('data-cluster="xihu-edge"') :]
    assert "中枢<span" in hub_row and "可达" in hub_row and "2 / 3" in hub_row
    assert 'title="应急管理局、东城区应急管理局">2' in hub_row
    assert 'data-reachable="false"' in edge_row and "边缘<span" in edge_row
    assert "西湖区" in edge_row and "330106" in edge_row and "西湖区湖滨街道办事处" in edge_row
    assert (
        '<td class="bad" data-col="api"' in edge_row
        and "不可达" in edge_row
        and "Connection refused" in edge_row
    )
    assert "0 / 0" not in edge_row  # unknown, not zeros
    # The street office's row says where it lives and that its requests could not be read.
    row = html[html.index('data-department="dept-xihu-hubin"') :]
    row = row[: row.index("</tr>")]
    assert "边缘 edge xihu-edge" in row and "不可读" in row and 'data-cell="' not in row
    assert "数据源不可读" in html and "kubernetes:xihu-edge" in html


def test_edge_departments_requests_come_from_their_cluster(tmp_path: Path) -> None:
    edge = ClusterState(
        namespaces=(Namespace("dept-xihu-hubin", "xihu-hubin", None, True, True),),
        requests={("dept-xihu-hubin", "sensing"): Requests(1, 0)},
    )
    got, _ = collect_with(edge, tmp_path)
    cells = {d["label"]: d["cells"] for d in got["departments"]}
    assert cells["dept-xihu-hubin"]["sensing"]["requests"] == 1
    assert cells["dept-xihu-hubin"]["sensing"]["unmet"] == 1
    assert cells["dept-yingji"]["messaging"]["ready"] == 2
    assert got["totals"]["requests"] == 4 and got["totals"]["unmet"] == 2  # hub 3 + edge 1
    # One edge responder raised, the hub's two not: the mode counts every cluster's responders.
    assert got["mode"]["inForce"] == "switching" and got["mode"]["responders"] == 3
    html = page.fragment(got)
    assert 'data-cell="dept-xihu-hubin/sensing" data-requests="1" data-ready="0"' in html
    assert 'data-cluster="xihu-edge" data-role="edge" data-reachable="true"' in html


def test_the_stack_configs_clusters_place_departments_by_the_stacks_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path))
    document = yaml.safe_load(stack_config.tracked("dev").read_text(encoding="utf-8"))
    document["config"]["cityhub:clusters"] = [
        {"name": "hub", "role": "hub"},
        {"name": "xihu-edge", "role": "edge", "divisionCode": "330106", "kubeconfig": EDGE_KUBECONFIG},
    ]
    path = stack_config.working("edge-test")
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    top = clusters.topology("edge-test")
    assert top.error is None
    hub, edge = top.clusters
    assert edge.departments == ("xihu-hubin",) and "xihu-hubin" not in hub.departments  # 街道 → its edge
    assert (edge.role, edge.division_name) == ("edge", "西湖区")
    assert edge.kubeconfig_path(tmp_path / "k") == paths.repo_root() / EDGE_KUBECONFIG
    assert hub.kubeconfig_path(tmp_path / "k") == tmp_path / "k" and not hub.read_separately(tmp_path / "k")

    document["config"]["cityhub:clusters"][1]["name"] = "Bad_Name"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    broken = clusters.topology("edge-test")
    assert broken.error and "clusters" in broken.error and [c.name for c in broken.clusters] == ["hub"]
