"""成熟度 scoring and the drill's checks, from made-up evidence and cluster snapshots (no cluster)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cityhub.drill import cluster, record
from cityhub.drill.cluster import Quota, Snapshot, Target
from cityhub.maturity.dimensions import score
from cityhub.maturity.model import DrillSummary, Evidence
from cityhub.maturity.render import html, text, to_dict
from cityhub.report.model import Apdex, Figures

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# The dev stack just after `cityhub up`: six graded, isolated departments, nine alerts with runbooks, one of
# five offerings with an Apdex threshold, two responders, district and street departments, no edge cluster.
DEV = Evidence(
    assessed_at=NOW,
    departments=6,
    catalog_types=("identity", "inference", "maps", "messaging", "sensing"),
    offerings=5,
    offerings_with_apdex=1,
    graded=6,
    default_deny=6,
    restricted=6,
    alerts=9,
    alerts_with_runbook=9,
    responders=2,
    levels={"city": 4, "district": 1, "street": 1},
    districts=2,
)


def drill(days_ago: int, passed: bool = True, in_force: float = 8.0) -> DrillSummary:
    return DrillSummary(f"d{days_ago}", passed, NOW - timedelta(days=days_ago), in_force, ("hub",))


def levels(e: Evidence) -> dict[str, int]:
    return {d.key: d.level for d in score(e).dimensions}


def test_a_fresh_hub_scores_what_it_has_and_names_the_next_step() -> None:
    a = score(DEV)
    assert levels(DEV) == {
        "shared-components": 1,
        "data-grade-isolation": 3,
        "slo-alerts": 3,
        "resolution-satisfaction": 1,
        "emergency-readiness": 2,
        "multi-level": 2,
    }
    assert a.overall == 1  # the weakest dimension
    assert "cityhub drill" in a.dimension("emergency-readiness").next_step.zh  # type: ignore[union-attr]
    assert "0 until edge clusters exist" in a.dimension("multi-level").evidence.en


def test_drills_move_the_city_up_while_they_are_recent_fast_and_regular() -> None:
    assert levels(replace(DEV, drills=(drill(3, passed=False),)))["emergency-readiness"] == 2
    assert levels(replace(DEV, drills=(drill(200),)))["emergency-readiness"] == 3  # passed, but stale
    assert levels(replace(DEV, drills=(drill(3),)))["emergency-readiness"] == 4
    assert levels(replace(DEV, drills=(drill(3, in_force=400),)))["emergency-readiness"] == 3
    assert levels(replace(DEV, drills=(drill(100), drill(3))))["emergency-readiness"] == 5
    assert levels(replace(DEV, responders=0, drills=(drill(3),)))["emergency-readiness"] == 1


def test_reuse_isolation_and_slo_levels_follow_the_shares() -> None:
    half = replace(DEV, departments_using=3, types_in_use=("messaging",))
    assert levels(half)["shared-components"] == 3
    most = replace(DEV, departments_using=5, types_in_use=("identity", "maps", "messaging"))
    assert levels(most)["shared-components"] == 4
    every = replace(DEV, departments_using=6, types_in_use=DEV.catalog_types)
    assert levels(every)["shared-components"] == 5
    assert levels(replace(DEV, restricted=2))["data-grade-isolation"] == 1
    assert levels(replace(DEV, requests=4, requests_graded=4))["data-grade-isolation"] == 5
    assert levels(replace(DEV, alerts=None))["slo-alerts"] == 1
    assert levels(replace(DEV, alerts_with_runbook=8))["slo-alerts"] == 2
    assert levels(replace(DEV, offerings_with_apdex=5))["slo-alerts"] == 5


def test_resolution_and_satisfaction_come_from_the_reports_figures() -> None:
    good = Figures(
        probes=100,
        apdex={"messaging": Apdex(satisfied=96, tolerating=4)},
        incidents_opened=2,
        incidents_resolved=2,
        resolution_seconds=600.0,
        resolutions=2,
        feedback_count=2,
        feedback_sum=9.0,
    )
    assert levels(replace(DEV, figures=good))["resolution-satisfaction"] == 5
    slow = replace(good, resolution_seconds=2 * 7200.0)
    assert levels(replace(DEV, figures=slow))["resolution-satisfaction"] == 3
    open_incident = replace(good, incidents_opened=3)
    assert levels(replace(DEV, figures=open_incident))["resolution-satisfaction"] == 2
    assert levels(replace(DEV, figures=Figures()))["resolution-satisfaction"] == 1  # zero traffic


def test_edge_clusters_count_once_they_serve_and_are_drilled() -> None:
    edge = replace(DEV, edge_clusters=2, edge_clusters_serving=("dongcheng", "xihu"), districts_with_edge=2)
    assert levels(edge)["multi-level"] == 4
    drilled = DrillSummary("d1", True, NOW, 9.0, ("hub", "dongcheng", "xihu"))
    assert levels(replace(edge, drills=(drilled,)))["multi-level"] == 5


def test_json_text_and_html_say_it_is_cityhubs_own_model() -> None:
    a = score(replace(DEV, drills=(drill(3),)))
    doc = json.loads(json.dumps(to_dict(a), ensure_ascii=False))
    assert doc["schema"] == "cityhub.io/maturity/v1" and doc["overall"]["level"] == 1
    assert "不是国家标准" in doc["disclaimer"]["zh"] and "not a national standard" in doc["disclaimer"]["en"]
    dims = {d["key"]: d for d in doc["dimensions"]}
    assert dims["emergency-readiness"]["facts"]["lastPassedDrill"] == "d3"
    assert dims["multi-level"]["nextStep"]["en"].startswith("an edge cluster")
    assert "不是国家标准" in text(a) and "<table>" in html(a)


def snap(compute_cpu: str, priority_pods: str, label: str, in_force: bool = True) -> Snapshot:
    hard = {"requests.cpu": compute_cpu}
    return Snapshot(
        quotas={
            "dept-yingji/compute": Quota("dept-yingji", "compute", hard, hard if in_force else {}, False),
            "dept-yingji/emergency-priority": Quota(
                "dept-yingji", "emergency-priority", {"pods": priority_pods}, {"pods": priority_pods}, True
            ),
        },
        priority={"dept-yingji": label},
    )


TARGET = Target("hub", "hub", record.directory(), None, ("dept-yingji",), frozenset({"dept-yingji"}))


def test_the_drill_checks_emergency_and_that_normal_mode_is_restored() -> None:
    before = snap("8", "0", "cityhub-normal")
    during = snap("32", "200", "cityhub-emergency")
    assert cluster.moved(before, during) == ["dept-yingji/compute", "dept-yingji/emergency-priority"]
    assert cluster.emergency_problems(TARGET, before, during) == []
    stuck = cluster.emergency_problems(TARGET, before, snap("32", "0", "cityhub-normal"))
    assert any("allows no pods" in p for p in stuck) and any("did not move" in p for p in stuck)
    assert cluster.restored_problems(TARGET, before, snap("8", "0", "cityhub-normal")) == []
    assert cluster.restored_problems(TARGET, before, during)
    assert snap("32", "200", "x", in_force=False).waiting == ("dept-yingji/compute",)


def test_a_drill_passes_only_when_both_modes_were_in_force_without_problems() -> None:
    phase = record.Phase(
        "emergency", 7.0, 0, (record.ClusterPhase("hub", "hub", 7.2, 6, 24, ("dept-yingji/compute",)),)
    )
    back = replace(phase, mode="normal")
    ok = record.Drill("20261130T000000Z", "dev", "示例市", "a", "b", (phase, back))
    assert ok.passed and record.to_dict(ok)["emergency"]["inForceSeconds"] == 7.2
    late = replace(back, clusters=(replace(back.clusters[0], in_force_seconds=None),))
    failed = record.to_dict(replace(ok, phases=(phase, late)))
    assert failed["result"] == "failed" and failed["normal"]["inForceSeconds"] is None


def test_the_report_carries_the_assessment_in_json_and_html() -> None:
    from cityhub.report import build, render_html, render_json
    from cityhub.report.model import Objectives

    period = build.period_of("2026-11", NOW)
    report = build.assemble(
        {}, period, Objectives(), {"yingji": "应急管理局"}, city="示例市", source="x", now=NOW
    )
    assert json.loads(render_json.dumps(report))["maturity"] is None
    assert "无法读取集群" in render_html.render(report)
    report = replace(report, maturity=score(replace(DEV, drills=(drill(3),))))
    doc = json.loads(render_json.dumps(report))["maturity"]
    assert doc["schema"] == "cityhub.io/maturity/v1" and len(doc["dimensions"]) == 6
    page = render_html.render(report)
    assert "成熟度自评" in page and "不是国家标准" in page and "d3" in page


def test_the_dashboard_gets_the_shape_it_reads() -> None:
    from cityhub.maturity.render import dashboard_dict

    section = dashboard_dict(score(DEV))
    assert section["overall"] == {"level": 1, "maxLevel": 5}
    assert {"zh", "en", "level", "maxLevel", "evidence"} <= set(section["dimensions"][0])
    assert section["model"]["schema"] == "cityhub.io/maturity/v1"
