"""`cityhub report`: the model and the renderers on fixed query results (what Prometheus would answer)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cityhub.report import build, command, cost, prices, query, render_html, render_json
from cityhub.report.model import Objectives, quantile
from cityhub.report.query import QUERIES, Metered, Sample
from components.monitoring_rules import RuleParams

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SHEET = REPO / "docs" / "price-sheet.example.yaml"

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


SHEET = prices.parse(
    {
        "name": "示例市价目表",
        "currency": "CNY",
        "componentTypes": {"messaging": {"componentHour": 0.05}, "maps": {"componentHour": 0.3}},
    },
    "prices.yaml",
)
STEP = 60
USAGE = Metered(
    samples=[
        # 2 channels all November (720 h): 1440 component-hours, a point a minute
        s(1440 * 60, **yj(offering="messaging")),
        # 3 channels, created mid-month: 500 component-hours
        s(500 * 60, **jt(offering="messaging")),
        # pending all along: held nothing billed
        s(0, **jt("maps", offering="maps")),
        # a type the sheet does not price: 10 component-hours, no cost
        s(10 * 60, **jt("identity", offering="identity")),
    ],
    resolution_seconds=STEP,
    measured_from=datetime(2026, 11, 1, tzinfo=build.CHINA_TIME),
)


def report(priced: bool = True):  # type: ignore[no-untyped-def]
    period = build.period_of("2026-11", NOW)
    return build.assemble(
        RESULTS,
        period,
        Objectives(),
        NAMES,
        city="示例市",
        source="http://prom:9090",
        now=NOW,
        usage=USAGE if priced else None,
        prices=SHEET if priced else None,
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


# -- 成本分摊 / cost showback ------------------------------------------------------------------------------


def test_cost_is_component_hours_times_the_price_and_shares_add_up_to_the_city() -> None:
    c = json.loads(render_json.dumps(report()))["cost"]
    assert c["currency"] == "CNY" and c["billedStates"] == ["ready", "down"] and c["resolutionSeconds"] == 60
    depts = {d["label"]: d for d in c["departments"]}
    assert [d["name"] for d in c["departments"]] == ["应急管理局", "城市管理局", "交通运输局"]
    yingji = depts["dept-yingji"]
    assert yingji["componentHours"] == 1440 and yingji["cost"] == pytest.approx(72.0)  # 1440 h x 0.05
    (row,) = yingji["componentTypes"]
    assert row["componentType"] == "messaging" and row["componentHourPrice"] == 0.05
    jiaotong = {t["componentType"]: t for t in depts["dept-jiaotong"]["componentTypes"]}
    assert jiaotong["messaging"]["cost"] == pytest.approx(25.0)  # 500 h x 0.05
    assert jiaotong["maps"]["componentHours"] == 0 and jiaotong["maps"]["cost"] == 0  # pending: not billed
    # unpriced: the hours are kept, the cost is null (not 0), and the type is named
    assert jiaotong["identity"]["componentHours"] == 10 and jiaotong["identity"]["cost"] is None
    assert c["unpriced"] == [{"componentType": "identity", "componentHours": 10.0}]
    assert depts["dept-jiaotong"]["cost"] == pytest.approx(25.0)
    # the city: the departments' sum; shares of it add up to 1, a department that held nothing has 0
    assert c["total"] == pytest.approx(97.0) and c["componentHours"] == pytest.approx(1950.0)
    assert yingji["share"] == pytest.approx(72 / 97, abs=1e-6)
    assert depts["dept-chengguan"] == {
        "label": "dept-chengguan",
        "slug": "chengguan",
        "name": "城市管理局",
        "componentHours": 0,
        "cost": 0,
        "share": 0.0,
        "componentTypes": [],
    }
    assert sum(d["share"] for d in c["departments"]) == pytest.approx(1.0)


def test_component_hours_integrate_the_subquery_points_of_billed_states() -> None:
    assert cost.component_hours(1440 * 60, 60) == 1440  # a point a minute, each a minute long
    assert cost.component_hours(3600, 1) == 1  # one component for an hour, a point a second
    expr = query.component_hours_query(3_600_000, 1)
    assert 'cityhub_components{state=~"ready|down"}' in expr and "pending" not in expr
    # one millisecond short: the point at the range's very start stands for the time before it
    assert re.search(r"sum_over_time\(.*\[3599999ms:1s\]\)", expr)
    # a minute over a month, a second over the hour or two a late component (or a test) lived
    assert query.resolution(31 * 86400) == 60 and query.resolution(30 * 86400) == 60
    assert query.resolution(7200) == 1 and query.resolution(86400) == 2
    assert all(3600 % r == 0 for r in query.RESOLUTIONS)  # points fall on the period's hourly grid


def test_html_shows_the_cost_showback_in_the_city_summary_chinese_first() -> None:
    page = render_html.render(report())
    assert page.index("成本分摊") < page.index("Cost showback") < page.index("成熟度自评")
    section = page[page.index("成本分摊") : page.index("成熟度自评")]
    assert "示例市价目表" in section and "CNY" in section and "97.00" in section
    assert "74.2%" in section and "25.8%" in section  # 72 and 25 of 97
    assert "identity" in section and "未定价" in section  # named, not silently dropped
    assert "待定" in section and "CPU/内存不在此列" in section
    summary = page[page.index("城市概览") : page.index("需要关注")]
    assert "成本合计" in summary and "97.00" in summary


def test_without_a_price_sheet_the_report_says_it_has_no_cost_showback() -> None:
    plain = report(priced=False)
    doc = json.loads(render_json.dumps(plain))
    assert doc["cost"] is None and doc["summary"]["cost"] is None
    page = render_html.render(plain)
    section = page[page.index("成本分摊") : page.index("成熟度自评")]
    assert "未提供价目表" in section and "--prices" in section and "<table" not in section


def test_the_example_price_sheet_is_valid_and_shown_in_the_docs() -> None:
    sheet = prices.load(EXAMPLE_SHEET)
    assert sheet.currency == "CNY" and sheet.price("messaging", "messaging") == 0.05
    assert set(sheet.component_types) == {"messaging", "identity", "maps", "inference", "sensing"}
    docs = (REPO / "docs" / "report.md").read_text(encoding="utf-8")
    assert EXAMPLE_SHEET.read_text(encoding="utf-8").strip() in docs  # the docs show the file as it is


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            {"currency": "CNY", "componentTypes": {"messaging": {"componentHour": -0.5}}},
            "componentTypes.messaging.componentHour: -0.5 must be a price per component-hour: a number, 0 or "
            "more",
        ),
        (
            {"currency": "CNY", "componentTypes": {"messaging": {"componentHour": "0.5 元"}}},
            'componentTypes.messaging.componentHour: "0.5 元" must be a price per component-hour',
        ),
        (
            {"currency": "元", "componentTypes": {"messaging": {"componentHour": 1}}},
            'currency: "元" must be an ISO 4217 currency code in capitals, e.g. CNY',
        ),
        ({"componentTypes": {"maps": {"componentHour": 1}}}, "currency: is required but missing"),
        (
            {"currency": "CNY", "componentTypes": {"mesaging": {"componentHour": 1}}},
            "componentTypes.mesaging: no such component type; did you mean 'messaging'?",
        ),
        (
            {"currency": "CNY", "componentTypes": {"maps": {"componentHour": 1, "offerings": {"tiles": 2}}}},
            "componentTypes.maps.offerings.tiles: no offering of maps is named so; offerings of maps in the "
            "catalog: maps",
        ),
        (
            {"currency": "CNY", "componentTypes": {"maps": {"componentHours": 1}}},
            "componentTypes.maps.componentHours: unknown key; did you mean 'componentHour'?",
        ),
    ],
)
def test_a_wrong_price_sheet_names_the_field_and_the_fix(doc: dict[str, object], problem: str) -> None:
    with pytest.raises(prices.PriceSheetError, match=r"Invalid price sheet prices\.yaml") as e:
        prices.parse(doc, "prices.yaml")
    assert problem in str(e.value)


def test_offerings_priced_apart_are_charged_their_own_price() -> None:
    sheet = prices.parse(
        {"currency": "CNY", "componentTypes": {"maps": {"componentHour": 1, "offerings": {"maps": 3}}}}, "p"
    )
    assert sheet.price("maps", "maps") == 3 and sheet.price("maps", "other") == 1
    assert sheet.price("sensing", "sensing") is None  # not in the sheet: unpriced
    showback = cost.allocate(
        {("dept-a", "maps", "maps"): 2.0, ("dept-a", "maps", "other"): 4.0},
        sheet,
        ["dept-a", "dept-b"],
        resolution_seconds=60,
        measured_from=None,
    )
    (maps,) = showback.departments[0].types
    assert maps.cost == 2 * 3 + 4 * 1 and maps.price is None  # two prices: per offering
    assert showback.share(showback.departments[1]) == 0.0 and showback.total == 10


def test_the_cli_refuses_a_wrong_price_sheet_before_asking_prometheus(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sheet = tmp_path / "prices.yaml"
    sheet.write_text("currency: CNY\ncomponentTypes:\n  messaging: {componentHour: -1}\n", encoding="utf-8")
    # Prometheus is unreachable here: the price sheet's error comes first
    assert (
        command.main(["--period", "2026-11", "--prometheus", "http://127.0.0.1:9", "--prices", str(sheet)])
        == 1
    )
    err = capsys.readouterr().err
    assert "componentTypes.messaging.componentHour: -1 must be a price per component-hour" in err
    assert "cannot reach Prometheus" not in err
