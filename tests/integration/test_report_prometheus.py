"""`cityhub report` end to end: a real Prometheus scrapes the real operator (embedded cluster, real
nats-server) while two departments of the dev stack use a channel, rate it, and live through a backend
outage; then the report of the running month is generated from that Prometheus and read as a reader would.

应急管理局 (dept-yingji) and 交通运输局 (dept-jiaotong) each get a channel, a rating and one incident;
城市管理局 and the other departments of the dev stack never use anything: their figures read 无数据 / no data.
Priced by the example price sheet, each channel costs its hours from Ready to the report (成本分摊).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cityhub import testkit as testing
from cityhub.local_prometheus import Prometheus
from cityhub.report.build import CHINA_TIME
from cityhub.testkit import OperatorProcess, channel, wait_for
from component_types.messaging.local import NatsServer
from components import monitoring_rules
from components.monitoring_rules import RuleParams

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SECRET = b"report-integration-secret-0123456789-abcdefghijklmno"
DEPARTMENTS = {"dept-yingji": 4, "dept-jiaotong": 2}
"""Namespace (the dev stack's dept-<slug>) → the rating it gives its channel."""
PARAMS = RuleParams(interval="1s", long_interval="1s", component_down_for="3s", operator_down_for="3s")
PRICE_SHEET = REPO / "docs" / "price-sheet.example.yaml"
SCRAPE_SECONDS = 1.0
"""cityhub.local_prometheus scrapes every second."""
STEP_SECONDS = 1
"""The integration step the report takes when the period's components appeared in the last hour or two."""
COST_TOLERANCE_SECONDS = 2 * (SCRAPE_SECONDS + STEP_SECONDS) + 2
"""A channel's billed time against its known lifetime (Ready → the report): the start is seen up to a scrape
late, each end is off by up to a step, and both known instants are whole seconds (Ready's
lastTransitionTime, the report's evaluatedAt) — up to a second each."""


@pytest.fixture(scope="module")
def nats_secret() -> bytes:
    """The messaging fixtures' nats_server trusts this module's secret."""
    return SECRET


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [testing.messaging_offering()])
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def stack(
    cluster: Path, nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, Prometheus]]:
    tmp = tmp_path_factory.mktemp("report")
    # The session's cluster is shared: ratings other modules left would count in this operator's metrics.
    testing.kubectl(cluster, "delete", "componentfeedback", "--all", "--all-namespaces")
    rules = monitoring_rules.rules_yaml(PARAMS)
    monitored = testing.monitored_operator(cluster, nats_server.url, SECRET, tmp, rules, PARAMS.operator_job)
    with monitored as (operator, prometheus):
        try:
            yield operator, prometheus
        finally:
            testing.kubectl(cluster, "delete", "componentfeedback", "--all", "--all-namespaces")


def feedback(namespace: str, rating: int) -> dict[str, Any]:
    return {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "ComponentFeedback",
        "metadata": {"name": "2026-q4", "namespace": namespace},
        "spec": {"componentType": "messaging", "component": "events", "rating": rating},
    }


def ready_since(cluster: Path, namespace: str) -> datetime:
    """When the department's channel became Ready (its condition's lastTransitionTime, whole seconds)."""
    got = testing.kubectl(cluster, "get", "messagingchannel", "events", "-n", namespace, "-o", "json")
    doc = json.loads(got.stdout)
    (ready,) = [c for c in doc["status"]["conditions"] if c["type"] == "Ready" and c["status"] == "True"]
    return datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))


def live_a_month_in_minutes(
    cluster: Path, operator: OperatorProcess, prom: Prometheus, nats: NatsServer
) -> dict[str, datetime]:
    """Requests, ratings, an outage of the shared backend and its recovery; when each channel became Ready
    (read before the outage: a channel down then is still held, and billed, but its condition may move)."""
    testing.apply(cluster, [channel(ns, "events") for ns in DEPARTMENTS])
    testing.apply(cluster, [feedback(ns, rating) for ns, rating in DEPARTMENTS.items()])
    wait_for(lambda: operator.alive() and prom.value('up{job="cityhub-operator"}') == 1, 30, "the scrape")
    for ns in DEPARTMENTS:
        wait_for(
            lambda ns=ns: (
                (prom.value(f'sum(cityhub_probe_total{{department="{ns}", result="success"}})') or 0) >= 3
            ),
            90,
            f"successful probes of {ns}'s channel",
        )
    ready_at = {ns: ready_since(cluster, ns) for ns in DEPARTMENTS}
    ours = "|".join(DEPARTMENTS)
    wait_for(
        lambda: prom.value(f'sum(cityhub_feedback_ratings{{department=~"{ours}"}})') == 2,
        60,
        "both ratings in Prometheus",
    )
    nats.stop()
    try:
        for ns in DEPARTMENTS:
            wait_for(
                lambda ns=ns: prom.value(f'sum(cityhub_incidents_opened_total{{department="{ns}"}})') == 1,
                60,
                f"an incident of {ns}",
            )
    finally:
        nats.start()
    for ns in DEPARTMENTS:
        wait_for(
            lambda ns=ns: (
                prom.value(f'sum(cityhub_incident_resolution_seconds_count{{department="{ns}"}})') == 1
            ),
            60,
            f"{ns}'s incident to be resolved",
        )
    time.sleep(2)  # a few more scrapes: the last samples are well inside the report's range
    return ready_at


def test_the_months_report_shows_each_departments_figures_in_chinese(
    stack: tuple[OperatorProcess, Prometheus], cluster: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    operator, prom = stack
    ready_at = live_a_month_in_minutes(cluster, operator, prom, nats_server)
    mttr = {
        ns: prom.value(f'sum(cityhub_incident_resolution_seconds_sum{{department="{ns}"}})')
        for ns in DEPARTMENTS
    }
    month = datetime.now(CHINA_TIME).strftime("%Y-%m")
    run = subprocess.run(
        [sys.executable, "-m", "cityhub.cli", "report", "--period", month, "--prometheus", prom.url,
         "--stack", "dev", "--out", str(tmp_path), "--prices", str(PRICE_SHEET)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"wrote {tmp_path / f'cityhub-report-{month}.html'}" in run.stdout
    doc = json.loads((tmp_path / f"cityhub-report-{month}.json").read_text(encoding="utf-8"))
    page = (tmp_path / f"cityhub-report-{month}.html").read_text(encoding="utf-8")

    assert doc["city"] == "示例市" and doc["period"]["label"] == month and doc["period"]["complete"] is False
    depts = {d["label"]: d for d in doc["departments"]}
    assert depts["dept-yingji"]["name"] == "应急管理局" and depts["dept-jiaotong"]["name"] == "交通运输局"
    for ns, rating in DEPARTMENTS.items():
        (row,) = depts[ns]["componentTypes"]
        assert row["componentType"] == "messaging"
        assert row["components"] == {"ready": 1, "down": 0, "pending": 0}
        assert row["responsiveness"]["provisioningRequests"] == 1
        assert row["responsiveness"]["provisionedWithinThreshold"] == 1.0
        assert row["resolution"]["incidentsOpened"] == 1 and row["resolution"]["incidentsResolved"] == 1
        # the time to resolve Prometheus holds for the one incident, as the report's MTTR
        assert row["resolution"]["mttrSeconds"] == pytest.approx(mttr[ns], rel=0.02)
        availability = row["availability"]
        assert availability["probes"] >= 5 and availability["probeFailures"] >= 1
        assert 0 < availability["availability"] < 1
        assert availability["objectiveMet"] is False  # an outage in a few minutes of probes
        assert row["satisfaction"]["feedbackCount"] == 1 and row["satisfaction"]["feedbackMean"] == rating
        assert 0 < row["satisfaction"]["apdexByOffering"]["messaging"] < 1
    # zero traffic: the stack's other departments are listed, with no figures
    quiet = [d for d in doc["departments"] if d["label"] not in DEPARTMENTS]
    assert {d["name"] for d in quiet} >= {"城市管理局", "数据资源管理局"}
    assert all(not d["hasData"] and d["summary"]["availability"]["availability"] is None for d in quiet)
    assert doc["summary"]["departmentsWithData"] == 2
    assert doc["summary"]["resolution"]["incidentsOpened"] == 2
    attention = {(a["departmentName"], a["code"]) for a in doc["attention"]}
    assert ("应急管理局", "availability-objective-missed") in attention
    assert ("交通运输局", "feedback-low") in attention  # rated 2 of 5
    assert ("应急管理局", "feedback-low") not in attention

    assert page.index("城市概览") < page.index("City summary")
    for name in ("应急管理局", "交通运输局", "城市管理局"):
        assert name in page
    chengguan = page[page.index('id="dept-chengguan"') :]
    assert "无数据 / no data" in chengguan[: chengguan.index("</p>")]
    yingji = page[page.index('id="dept-yingji"') : page.index("</table>", page.index('id="dept-yingji"'))]
    assert "1 / 0 / 0" in yingji and "1 / 1" in yingji and "4.0 / 5" in yingji

    # 成本分摊: each channel is billed from Ready (pending is not) to the report, through its outage (down)
    cost = doc["cost"]
    assert run.stdout.count("cost showback:") == 1 and cost["currency"] == "CNY"
    assert cost["resolutionSeconds"] == STEP_SECONDS and cost["billedStates"] == ["ready", "down"]
    evaluated = datetime.fromisoformat(doc["period"]["evaluatedAt"])
    price = 0.05  # messaging's componentHour in the example sheet
    billed = {d["label"]: d for d in cost["departments"]}
    for ns in DEPARTMENTS:
        lifetime = (evaluated - ready_at[ns]).total_seconds()
        (row,) = billed[ns]["componentTypes"]
        assert row["componentType"] == "messaging" and row["componentHourPrice"] == price
        assert row["componentHours"] * 3600 == pytest.approx(lifetime, abs=COST_TOLERANCE_SECONDS)
        # the JSON rounds to 6 decimals, and a few minutes of a channel cost a few ten-thousandths of a yuan
        assert row["cost"] == pytest.approx(row["componentHours"] * price, abs=1e-6)
        assert billed[ns]["share"] == pytest.approx(billed[ns]["cost"] / cost["total"], abs=0.01)
    assert cost["total"] == pytest.approx(sum(d["cost"] for d in cost["departments"]), abs=1e-5)
    assert all(billed[d["label"]]["cost"] == 0 and billed[d["label"]]["share"] == 0 for d in quiet)
    assert doc["summary"]["cost"]["total"] == cost["total"] and cost["unpriced"] == []
    section = page[page.index("成本分摊") : page.index("成熟度自评")]
    assert "示例市 2026 年度共享组件价目表" in section and "应急管理局" in section and "CNY" in section
