"""The six dimensions of the maturity model (成熟度), levels 1 to 5, scored from the evidence (pure).

Each dimension's level is 1 plus every consecutive condition ("rung") that holds, so the first condition that
does not hold is the city's next step. The conditions and thresholds are cityhub's own (docs/maturity.md).
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from collections.abc import Callable

from cityhub.maturity.model import (
    DRILL_FRESH_DAYS,
    DRILL_IN_FORCE_FAST_SECONDS,
    DRILL_IN_FORCE_SECONDS,
    MTTR_FAST_SECONDS,
    MTTR_GOOD_SECONDS,
    Assessment,
    Dimension,
    Evidence,
    Text,
)

Rung = tuple[bool, Text]
"""Whether a level's condition holds, and what the condition is (the next step while it does not)."""


def _climb(rungs: list[Rung]) -> tuple[int, Text | None]:
    """Level 1 plus every consecutive rung that holds; the first that fails is the next step."""
    level = 1
    for ok, condition in rungs:
        if not ok:
            return level, condition
        level += 1
    return level, None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def shared_components(e: Evidence) -> Dimension:
    using, catalog = _share(e.departments_using, e.departments), set(e.catalog_types)
    in_use = set(e.types_in_use) & catalog
    types = _share(len(in_use), len(catalog))
    level, step = _climb(
        [
            (
                e.departments_using > 0,
                Text("至少一个部门使用共享组件", "one department uses a shared component"),
            ),
            (
                (using or 0) >= 0.5,
                Text("半数以上部门使用共享组件", "half the departments use shared components"),
            ),
            (
                (using or 0) >= 0.8 and (types or 0) >= 0.5,
                Text(
                    "八成部门使用共享组件，且目录中半数组件类型在用",
                    "80 % of departments and half the catalog's types in use",
                ),
            ),
            (
                using == 1 and types == 1,
                Text(
                    "所有部门都使用共享组件，目录中每种组件类型都在用",
                    "every department and every catalog type in use",
                ),
            ),
        ]
    )
    return Dimension(
        "shared-components",
        Text("统筹集约的数字底座（共享组件复用）", "shared digital foundation (shared-component reuse)"),
        level,
        Text(
            f"{e.departments_using}/{e.departments} 个部门使用共享组件；"
            f"目录 {len(catalog)} 种组件类型中 {len(in_use)} 种在用",
            f"{e.departments_using}/{e.departments} departments use shared components; {len(in_use)} of the "
            f"catalog's {len(catalog)} component types in use",
        ),
        step,
        {
            "departments": e.departments,
            "departmentsUsing": e.departments_using,
            "catalogTypes": len(catalog),
            "typesInUse": len(in_use),
        },
    )


def data_isolation(e: Evidence) -> Dimension:
    n = e.departments
    base = min(e.graded, e.default_deny, e.restricted)
    explicit = _share(e.requests_graded, e.requests)
    level, step = _climb(
        [
            (
                n > 0 and base * 2 >= n,
                Text(
                    "半数以上部门命名空间已定级、默认拒绝、restricted",
                    "half the departments graded, default-deny, restricted",
                ),
            ),
            (
                n > 0 and base == n,
                Text(
                    "所有部门命名空间已定级、默认拒绝网络策略、Pod 安全 restricted",
                    "every department graded, default-deny and restricted",
                ),
            ),
            (
                (explicit or 0) >= 0.5,
                Text(
                    "半数以上组件申请带数据分级标签 cityhub.io/data-grade",
                    "half the requests carry a cityhub.io/data-grade label",
                ),
            ),
            (
                e.requests > 0 and explicit == 1,
                Text("每个组件申请都带数据分级标签", "every request carries a data-grade label"),
            ),
        ]
    )
    return Dimension(
        "data-grade-isolation",
        Text("数据分类分级与隔离", "data grades and isolation"),
        level,
        Text(
            f"部门命名空间 {n} 个：已定级 {e.graded}，默认拒绝 {e.default_deny}，restricted {e.restricted}；"
            f"组件申请 {e.requests} 个，自带分级标签 {e.requests_graded}",
            f"{n} department namespaces: {e.graded} graded, {e.default_deny} default-deny, {e.restricted} "
            f"restricted; {e.requests_graded} of {e.requests} requests carry their own grade label",
        ),
        step,
        {
            "departments": n,
            "graded": e.graded,
            "defaultDeny": e.default_deny,
            "restricted": e.restricted,
            "requests": e.requests,
            "requestsGraded": e.requests_graded,
        },
    )


def slo_alerts(e: Evidence) -> Dimension:
    alerts = e.alerts or 0
    apdex = _share(e.offerings_with_apdex, e.offerings)
    level, step = _climb(
        [
            (
                alerts > 0,
                Text(
                    "栈下发告警规则（cityhub:monitoring.prometheus）",
                    "the stack delivers alert rules (cityhub:monitoring.prometheus)",
                ),
            ),
            (
                alerts > 0 and e.alerts_with_runbook == alerts,
                Text("每条告警都有处置手册（docs/runbooks/）", "every alert has a runbook (docs/runbooks/)"),
            ),
            (
                (apdex or 0) >= 0.5,
                Text(
                    "半数以上服务目录项设定 Apdex 阈值 spec.apdex.thresholdSeconds",
                    "half the offerings set spec.apdex.thresholdSeconds",
                ),
            ),
            (apdex == 1, Text("每个服务目录项都设定 Apdex 阈值", "every offering sets an Apdex threshold")),
        ]
    )
    return Dimension(
        "slo-alerts",
        Text("服务目标与告警覆盖", "SLO and alert coverage"),
        level,
        Text(
            f"告警 {'未下发' if e.alerts is None else alerts} 条，其中有处置手册 {e.alerts_with_runbook}；"
            f"服务目录项 {e.offerings} 个，设定 Apdex 阈值 {e.offerings_with_apdex}",
            f"{'no' if e.alerts is None else alerts} alert rules delivered, {e.alerts_with_runbook} with a "
            f"runbook; {e.offerings_with_apdex} of {e.offerings} offerings set an Apdex threshold",
        ),
        step,
        {
            "alerts": e.alerts,
            "alertsWithRunbook": e.alerts_with_runbook,
            "offerings": e.offerings,
            "offeringsWithApdex": e.offerings_with_apdex,
        },
    )


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def resolution_satisfaction(e: Evidence) -> Dimension:
    f = e.figures
    measured = f is not None and f.has_data
    apdex = f.apdex_total.score if f else None
    mttr = f.mttr_seconds if f else None
    rating = f.feedback_mean if f else None
    resolved = f is not None and f.incidents_resolved >= f.incidents_opened
    fast = f is not None and (f.incidents_opened == 0 or (mttr is not None and mttr <= MTTR_GOOD_SECONDS))
    faster = f is not None and (f.incidents_opened == 0 or (mttr is not None and mttr <= MTTR_FAST_SECONDS))
    level, step = _climb(
        [
            (
                measured,
                Text(
                    "Prometheus 抓取运营器指标（cityhub report 有数据）",
                    "Prometheus scrapes the operator (cityhub report has data)",
                ),
            ),
            (
                measured and resolved and (apdex or 0) >= 0.7,
                Text(
                    "Apdex ≥ 0.70 且窗口内事件全部解决",
                    "Apdex ≥ 0.70 and every incident of the window resolved",
                ),
            ),
            (
                measured and fast and (apdex or 0) >= 0.85 and (rating or 0) >= 3.5,
                Text(
                    "Apdex ≥ 0.85、MTTR ≤ 1 小时、部门评分均值 ≥ 3.5",
                    "Apdex ≥ 0.85, MTTR ≤ 1 h, mean rating ≥ 3.5",
                ),
            ),
            (
                measured and faster and (apdex or 0) >= 0.94 and (rating or 0) >= 4.5,
                Text(
                    "Apdex ≥ 0.94、MTTR ≤ 15 分钟、评分均值 ≥ 4.5",
                    "Apdex ≥ 0.94, MTTR ≤ 15 min, mean rating ≥ 4.5",
                ),
            ),
        ]
    )
    if f is None:
        evidence = Text("未查询 Prometheus：问题解决度与用户满意度无数据", "Prometheus not asked: no figures")
    else:
        evidence = Text(
            f"近 {e.window_days} 天：事件 {f.incidents_opened} 起、解决 {f.incidents_resolved} 起，"
            f"MTTR {_minutes(mttr)}；"
            f"Apdex {'无数据' if apdex is None else f'{apdex:.2f}'}，评分 "
            f"{'无数据' if rating is None else f'{rating:.1f}/5'}（{f.feedback_count} 条）",
            f"last {e.window_days} days: {f.incidents_opened} incidents, {f.incidents_resolved} resolved, "
            "MTTR "
            f"{_minutes(mttr)}; Apdex {'no data' if apdex is None else f'{apdex:.2f}'}, rating "
            f"{'no data' if rating is None else f'{rating:.1f}/5'} ({f.feedback_count})",
        )
    return Dimension(
        "resolution-satisfaction",
        Text("问题解决度与用户满意度", "problem resolution and satisfaction"),
        level,
        evidence,
        step,
        {
            "mttrSeconds": mttr,
            "apdex": apdex,
            "feedbackMean": rating,
            "incidentsOpened": f.incidents_opened if f else None,
            "incidentsResolved": f.incidents_resolved if f else None,
        },
    )


def emergency_readiness(e: Evidence) -> Dimension:
    passed = [d for d in e.drills if d.passed]
    last = passed[-1] if passed else None
    age = (e.assessed_at - last.started_at).days if last else None
    fresh = last is not None and age is not None and age <= DRILL_FRESH_DAYS
    in_force = last.emergency_in_force_seconds if last else None
    this_year = [d for d in passed if (e.assessed_at - d.started_at).days <= 365]
    level, step = _climb(
        [
            (
                e.responders > 0,
                Text(
                    "在栈配置中指定应急部门（emergencyResponder）与 emergencyQuota",
                    "name emergency responders (emergencyResponder) and emergencyQuotas in the stack",
                ),
            ),
            (last is not None, Text("完成一次平急演练：cityhub drill", "pass a drill: cityhub drill")),
            (
                fresh and (in_force or 1e9) <= DRILL_IN_FORCE_SECONDS,
                Text(
                    f"{DRILL_FRESH_DAYS} 天内演练通过且急时配额 5 分钟内生效",
                    f"a drill passed within {DRILL_FRESH_DAYS} days, emergency in force within 5 min",
                ),
            ),
            (
                fresh and (in_force or 1e9) <= DRILL_IN_FORCE_FAST_SECONDS and len(this_year) >= 2,
                Text(
                    "一年内至少两次演练通过且急时配额 2 分钟内生效",
                    "two drills passed within a year, emergency in force within 2 min",
                ),
            ),
        ]
    )
    if last is None:
        tried = f"（已演练 {len(e.drills)} 次，均未通过）" if e.drills else ""
        tried_en = f" ({len(e.drills)} failed)" if e.drills else ""
        evidence = Text(
            f"应急部门 {e.responders} 个；没有通过的演练{tried}",
            f"{e.responders} emergency responders; no drill passed{tried_en}",
        )
    else:
        evidence = (
            Text(
                f"应急部门 {e.responders} 个；最近通过的演练 {last.id}（{age} 天前），"
                f"急时配额 {in_force:.1f} 秒生效；"
                f"一年内通过 {len(this_year)} 次",
                f"{e.responders} emergency responders; last passed drill {last.id} ({age} days ago), "
                "emergency "
                f"in force after {in_force:.1f} s; {len(this_year)} passed within a year",
            )
            if in_force is not None
            else Text(f"最近通过的演练 {last.id}", f"last passed drill {last.id}")
        )
    return Dimension(
        "emergency-readiness",
        Text("平急切换就绪度", "平急切换 readiness (drills)"),
        level,
        evidence,
        step,
        {
            "responders": e.responders,
            "drills": len(e.drills),
            "drillsPassed": len(passed),
            "lastPassedDrill": last.id if last else None,
            "emergencyInForceSeconds": in_force,
        },
    )


def multi_level(e: Evidence) -> Dimension:
    below_city = e.levels.get("district", 0) + e.levels.get("street", 0)
    serving = set(e.edge_clusters_serving)
    drilled = {c for d in e.drills if d.passed for c in d.clusters}
    level, step = _climb(
        [
            (below_city > 0, Text("区县、街道部门接入中枢", "district and street departments on the hub")),
            (
                bool(serving),
                Text(
                    "配置边缘集群（cityhub:clusters 中 role: edge）并承载部门",
                    "an edge cluster (cityhub:clusters role: edge) serving departments",
                ),
            ),
            (
                e.districts > 0 and e.districts_with_edge == e.districts,
                Text("每个区县都有边缘集群", "an edge cluster for every district"),
            ),
            (
                bool(serving) and serving <= drilled,
                Text("平急演练覆盖每个边缘集群", "drills cover every edge cluster"),
            ),
        ]
    )
    return Dimension(
        "multi-level",
        Text("多级贯通", "multi-level coverage (city, district, street)"),
        level,
        Text(
            f"区县部门 {e.levels.get('district', 0)} 个、街道 {e.levels.get('street', 0)} 个；"
            f"边缘集群 {e.edge_clusters} "
            f"个已配置、{len(serving)} 个承载部门（尚无边缘集群时为 0）",
            f"{e.levels.get('district', 0)} district and {e.levels.get('street', 0)} street departments; "
            f"{e.edge_clusters} edge clusters configured, {len(serving)} serving "
            "(0 until edge clusters exist)",
        ),
        step,
        {
            "districtDepartments": e.levels.get("district", 0),
            "streetDepartments": e.levels.get("street", 0),
            "edgeClusters": e.edge_clusters,
            "edgeClustersServing": len(serving),
            "districts": e.districts,
            "districtsWithEdge": e.districts_with_edge,
        },
    )


DIMENSIONS: tuple[Callable[[Evidence], Dimension], ...] = (
    shared_components,
    data_isolation,
    slo_alerts,
    resolution_satisfaction,
    emergency_readiness,
    multi_level,
)


def score(evidence: Evidence) -> Assessment:
    return Assessment(evidence.assessed_at, tuple(d(evidence) for d in DIMENSIONS))
