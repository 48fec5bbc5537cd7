"""`cityhub report`: the model and the renderers on fixed query results (what Prometheus would answer)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from cityhub.report import build, command, render_html, render_json
from cityhub.report.model import Objectives, quantile
from cityhub.report.query import QUERIES, Sample
from components.monitoring_rules import RuleParams

NAMES = {"yingji": "应急管理局", "chengguan": "城市管理局", "jiaotong": "交通运输局"}
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def s(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


def yj(**labels: str) -> dict[str, str]:
    return {"department": "dept-yingji", "component_type": "messaging", **labels}


def jt(ctype: str = "messaging", **labels: str) -> dict[str, str]:
    return {"department": "dept-jiaotong", "component_type": ctype, **labels}


def buckets(counts: dict[str, float], where: dict[str, str]) -> list[Sample]:
    return [Sample({**where, "le": le}, v) for le, v in counts.items()]


RESULTS: dict[str, list[Sample]] = {
    "components": [
        s(2, **yj(state="ready")),
        s(1, **yj(state="down")),
        s(0, **yj(state="pending")),
        s(3, **jt(state="ready")),
        # maps: requested late in the month, not Ready yet, never probed
        s(1, **jt("maps", state="pending")),
        s(0, **jt("maps", state="ready")),
    ],
    "probes": [
        s(990.2, **yj(result="success")),
        s(9.9, **yj(result="failure")),  # increase() extrapolates a little
        s(500, **jt(result="success")),
        s(0, **jt(result="failure")),
        s(0, **jt("maps", result="success")),
        s(0, **jt("maps", result="failure")),
    ],
    "probe_latency": buckets({"0.1": 800, "0.5": 990, "1.0": 990, "+Inf": 990}, yj())
    + buckets({"0.1": 500, "0.5": 500, "1.0": 500, "+Inf": 500}, jt())
    + buckets({"0.1": 0, "0.5": 0, "1.0": 0, "+Inf": 0}, jt("maps")),
    "provisioning": buckets({"30.0": 2, "60.0": 3, "120.0": 4, "+Inf": 4}, yj())
    + buckets({"30.0": 1, "60.0": 1, "120.0": 1, "+Inf": 1}, jt())
    + buckets({"30.0": 0, "60.0": 0, "120.0": 0, "+Inf": 0}, jt("maps")),
    "apdex": [
        s(900, **yj(offering="messaging", zone="satisfied")),
        s(60, **yj(offering="messaging", zone="tolerating")),
        s(40, **yj(offering="messaging", zone="frustrated")),
        s(500, **jt(offering="messaging", zone="satisfied")),
        s(0, **jt("maps", offering="maps", zone="satisfied")),
    ],
    "apdex_threshold": [s(0.25, component_type="messaging", offering="messaging")],
    "incidents_opened": [s(2, **yj()), s(0, **jt()), s(0, **jt("maps"))],
    "incidents_resolved": [s(1, **yj()), s(0, **jt()), s(0, **jt("maps"))],
    "resolution_seconds": [s(600, **yj()), s(0, **jt())],
    "resolutions": [s(1, **yj()), s(0, **jt())],
    "feedback_count": [s(2, department="dept-yingji", component_type="messaging")],
    "feedback_sum": [s(7, department="dept-yingji", component_type="messaging")],
}


def report():  # type: ignore[no-untyped-def]
    period = build.period_of("2026-11", NOW)
    return build.assemble(
        RESULTS, period, Objectives(), NAMES, city="示例市", source="http://prom:9090", now=NOW
    )


def test_the_report_asks_prometheus_for_every_figure_it_reads() -> None:
    assert set(RESULTS) == set(QUERIES)


def test_json_gives_each_departments_figures_with_chinese_names_and_null_for_no_data() -> None:
    doc = json.loads(render_json.dumps(report()))
    assert doc["schema"] == "cityhub.io/report/v1" and doc["city"] == "示例市"
    assert doc["period"] == {
        "label": "2026-11",
        "start": "2026-11-01T00:00:00+08:00",
        "end": "2026-12-01T00:00:00+08:00",
        "evaluatedAt": "2026-12-01T00:00:00+08:00",
        "complete": True,
    }
    depts = {d["label"]: d for d in doc["departments"]}
    assert [d["name"] for d in doc["departments"]] == [
        "应急管理局",
        "城市管理局",
        "交通运输局",
    ]  # config order
    yingji = depts["dept-yingji"]["componentTypes"][0]
    assert yingji["components"] == {"ready": 2, "down": 1, "pending": 0}
    assert yingji["availability"] == {
        "probes": 1000,
        "probeFailures": 10,
        "availability": 0.99,
        "objectiveMet": False,
    }
    assert yingji["resolution"] == {
        "incidentsOpened": 2,
        "incidentsResolved": 1,
        "mttrSeconds": 600.0,
        "probeErrorBudgetSpent": 2.0,  # 1 % failed of a 0.5 % budget
        "provisioningErrorBudgetSpent": 5.0,  # 25 % slow of a 5 % budget
    }
    assert yingji["responsiveness"]["provisioningRequests"] == 4
    assert yingji["responsiveness"]["provisionedWithinThreshold"] == 0.75
    assert yingji["responsiveness"]["provisioningObjectiveMet"] is False
    assert yingji["responsiveness"]["provisioningP95Seconds"] == pytest.approx(108.0)  # as histogram_quantile
    assert yingji["satisfaction"]["apdex"] == 0.93 and yingji["satisfaction"]["apdexRating"]["zh"] == "良"
    assert yingji["satisfaction"]["feedbackMean"] == 3.5 and yingji["satisfaction"]["feedbackCount"] == 2
    # zero traffic: a department without any series, and a component type created late and never probed
    chengguan = depts["dept-chengguan"]
    assert chengguan["hasData"] is False and chengguan["componentTypes"] == []
    assert chengguan["summary"]["availability"]["availability"] is None
    maps = next(t for t in depts["dept-jiaotong"]["componentTypes"] if t["componentType"] == "maps")
    assert maps["components"]["pending"] == 1
    assert maps["availability"]["availability"] is None and maps["availability"]["objectiveMet"] is None
    assert maps["satisfaction"]["apdex"] is None and maps["resolution"]["mttrSeconds"] is None
    # the department's summary adds its rows up: jiaotong's availability is messaging's alone
    assert depts["dept-jiaotong"]["summary"]["availability"]["availability"] == 1.0
    # the city: 1500 probes, 10 failed
    assert doc["summary"]["availability"]["availability"] == pytest.approx(1490 / 1500, abs=1e-6)
    assert doc["summary"]["departments"] == 3 and doc["summary"]["departmentsWithData"] == 2


def test_attention_ranks_an_outage_first_and_leaves_healthy_departments_out() -> None:
    doc = json.loads(render_json.dumps(report()))
    ranked = [(a["rank"], a["severity"], a["code"], a["departmentName"]) for a in doc["attention"]]
    assert ranked[0] == (1, 3, "availability-objective-missed", "应急管理局")  # 200 % of the budget
    assert ranked[1] == (2, 3, "components-down", "应急管理局")
    codes = {a["code"] for a in doc["attention"]}
    assert {"incidents-unresolved", "provisioning-objective-missed"} <= codes
    assert all(a["department"] == "dept-yingji" for a in doc["attention"])


def test_html_is_self_contained_chinese_first_and_says_no_data() -> None:
    page = render_html.render(report())
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "<script" not in page and "http://" not in page.replace("http://prom:9090", "")
    assert page.index("城市概览") < page.index("City summary") < page.index("需要关注")
    assert "示例市城市数字底座运营评价报告 · 2026-11" in page
    chengguan = page[page.index('id="dept-chengguan"') : page.index('id="dept-jiaotong"')]
    assert "无数据 / no data" in chengguan
    yingji = page[page.index('id="dept-yingji"') : page.index('id="dept-chengguan"')]
    assert "应急管理局" in yingji and "99.00%" in yingji and "10.0 min" in yingji and "3.5 / 5" in yingji
    assert "NaN" not in page and "inf" not in page.lower().replace("info", "")


def test_quantile_interpolates_like_histogram_quantile() -> None:
    assert quantile(0.95, {0.1: 50, 0.5: 90, 1.0: 100, math.inf: 100}) == pytest.approx(0.75)
    assert quantile(0.95, {1.0: 0, 5.0: 3, math.inf: 4}) == 5.0  # in +Inf: the highest finite bound
    assert quantile(0.95, {1.0: 0, math.inf: 0}) is None


def test_periods_are_calendar_months_in_china_time() -> None:
    running = build.period_of("2026-12", NOW)
    assert not running.complete and running.evaluated_at == NOW
    assert running.end.isoformat() == "2027-01-01T00:00:00+08:00"
    for bad in ("2026-13", "November", "2027-01"):
        with pytest.raises(ValueError, match="--period"):
            build.period_of(bad, NOW)


def test_objectives_default_to_the_rules_slos_and_follow_the_stack() -> None:
    rules = RuleParams()
    assert Objectives() == Objectives(
        rules.probe_objective, rules.provisioning_objective, rules.provisioning_threshold_seconds
    )
    facts = command.stack_facts("dev")
    assert facts.city == "示例市" and facts.names["yingji"] == "应急管理局"


def test_the_cli_names_a_missing_or_unreachable_prometheus(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CITYHUB_PROMETHEUS_URL", raising=False)
    assert command.main(["--period", "2026-11"]) == 1
    assert "pass --prometheus URL or set CITYHUB_PROMETHEUS_URL" in capsys.readouterr().err
    monkeypatch.setenv("CITYHUB_PROMETHEUS_TIMEOUT", "2")
    assert command.main(["--period", "2026-11", "--prometheus", "http://127.0.0.1:9"]) == 1
    assert "cannot reach Prometheus at http://127.0.0.1:9" in capsys.readouterr().err
