"""`cityhub dashboard`: the page rendered from a fixed state, the mode read from namespaces, the maturity
section without a model, and the state of unreachable sources (named, never zeros)."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cityhub.dashboard import page, serve, state
from cityhub.dashboard.cluster import ClusterState, Namespace
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
        {"label": "dept-yingji", "slug": "yingji", "name": "应急管理局", "cells": {}}
    ]
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
