"""From query results to the report: the period, rows per department x component type, what to look at."""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from cityhub.report import cost
from cityhub.report.model import (
    Apdex,
    Department,
    Figures,
    Finding,
    Objectives,
    Period,
    Report,
    Row,
)
from cityhub.report.prices import PriceSheet
from cityhub.report.query import Metered, Results, le_bound

CHINA_TIME = timezone(timedelta(hours=8), "CST")
"""Periods are calendar months in China Standard Time (UTC+8, no daylight saving)."""
APDEX_ATTENTION = 0.85
"""Below 良 (good): users are noticeably dissatisfied."""
RATING_ATTENTION = 3.0
"""Mean feedback below 3 of 5."""
BUDGET_WARNING = 0.5
"""Half the period's error budget spent: on the way to missing the objective."""


def period_of(label: str, now: datetime) -> Period:
    """`YYYY-MM` as a calendar month in China Standard Time; a running month is reported up to now."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", label.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"Invalid --period {label!r}: needs to be a month as YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=CHINA_TIME)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA_TIME)
    if start >= now:
        raise ValueError(f"Invalid --period {label}: it has not started yet (now is {now.isoformat()})")
    return Period(label=f"{year:04d}-{month:02d}", start=start, end=end, evaluated_at=min(end, now))


@dataclass
class _Acc:
    """Mutable sums of one department x component type while the results are read."""

    components: dict[str, int] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    probe_latency: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    provisioning: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    apdex: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


def _figures(acc: _Acc, thresholds: Mapping[str, float]) -> Figures:
    offerings = sorted(acc.apdex)
    known = [thresholds[o] for o in offerings if o in thresholds]
    v = acc.values
    # increase() extrapolates to the range's edges (1 event may read 1.03): counts are rounded to events,
    # and the sum of times to resolve is scaled alike, so MTTR stays the mean of the same events.
    resolutions = round(v["resolutions"])
    resolution_seconds = v["resolution_seconds"] * resolutions / v["resolutions"] if resolutions else 0.0
    return Figures(
        components=dict(sorted(acc.components.items())),
        probes=round(v["probe_success"] + v["probe_failure"]),
        probe_failures=round(v["probe_failure"]),
        probe_latency=dict(sorted(acc.probe_latency.items())),
        provisioning=dict(sorted(acc.provisioning.items())),
        apdex={
            o: Apdex(acc.apdex[o]["satisfied"], acc.apdex[o]["tolerating"], acc.apdex[o]["frustrated"])
            for o in offerings
        },
        apdex_threshold_seconds=max(known) if known else None,
        incidents_opened=round(v["incidents_opened"]),
        incidents_resolved=round(v["incidents_resolved"]),
        resolution_seconds=resolution_seconds,
        resolutions=resolutions,
        feedback_count=round(v["feedback_count"]),
        feedback_sum=v["feedback_sum"],
    )


def rows_by_department(results: Results) -> dict[str, dict[str, Figures]]:
    """Department label → component type → its figures (only label sets Prometheus knows)."""
    accs: dict[tuple[str, str], _Acc] = defaultdict(_Acc)
    thresholds: dict[str, dict[str, float]] = defaultdict(dict)
    for sample in results.get("apdex_threshold", []):
        if sample.value is not None:
            thresholds[sample.labels.get("component_type", "")][sample.labels.get("offering", "")] = (
                sample.value
            )
    for name, samples in results.items():
        if name == "apdex_threshold":
            continue
        for sample in samples:
            if sample.value is None:
                continue  # NaN: nothing to add
            labels = sample.labels
            acc = accs[(labels.get("department", ""), labels.get("component_type", ""))]
            if name == "components":
                state = labels.get("state", "")
                acc.components[state] = acc.components.get(state, 0) + round(sample.value)
            elif name == "probes":
                acc.values[f"probe_{labels.get('result', '')}"] += sample.value
            elif name == "probe_latency":
                acc.probe_latency[le_bound(labels["le"])] += round(sample.value)
            elif name == "provisioning":
                acc.provisioning[le_bound(labels["le"])] += round(sample.value)
            elif name == "apdex":
                acc.apdex[labels.get("offering", "")][labels.get("zone", "")] += round(sample.value)
            else:
                acc.values[name] += sample.value
    rows: dict[str, dict[str, Figures]] = defaultdict(dict)
    for (department, ctype), acc in sorted(accs.items()):
        rows[department][ctype] = _figures(acc, thresholds.get(ctype, {}))
    return rows


def _slug_of(label: str, names: Mapping[str, str]) -> str | None:
    """The stack's slug for a department label: the namespace dept-<slug>, or the slug itself."""
    slug = label.removeprefix("dept-")
    return slug if slug in names else (label if label in names else None)


def departments(results: Results, names: Mapping[str, str]) -> tuple[Department, ...]:
    """Every department of the stack (those without metrics have no rows: 无数据) and every department label
    the metrics name, in the stack's order, then by label."""
    rows = rows_by_department(results)
    out: list[Department] = []
    for label, types in rows.items():
        slug = _slug_of(label, names)
        figures = tuple(Row(t, f) for t, f in sorted(types.items()))
        out.append(Department(label=label, slug=slug, name=names.get(slug or ""), rows=figures))
    seen = {d.slug for d in out}
    out += [Department(label=f"dept-{s}", slug=s, name=n, rows=()) for s, n in names.items() if s not in seen]
    order = list(names)
    out.sort(key=lambda d: (order.index(d.slug) if d.slug in order else len(order), d.label))
    return tuple(out)


def _finding(
    severity: int, code: str, dept: Department, ctype: str, value: float | None, zh: str, en: str
) -> Finding:
    return Finding(severity, code, dept.label, dept.name, ctype, value, zh, en)


def findings(depts: tuple[Department, ...], objectives: Objectives) -> tuple[Finding, ...]:
    """What needs attention, worst first: open incidents, missed objectives, dissatisfied users."""
    out: list[Finding] = []
    for dept in depts:
        for row in dept.rows:
            f, t = row.figures, row.component_type
            down = f.components.get("down", 0)
            if down:
                out.append(
                    _finding(
                        3,
                        "components-down",
                        dept,
                        t,
                        down,
                        f"{down} 个组件在期末处于故障状态",
                        f"{down} component(s) down at the period's end",
                    )
                )
            spent = f.probe_budget_spent(objectives.probe_objective)
            if spent is not None and spent > 1:
                out.append(
                    _finding(
                        3,
                        "availability-objective-missed",
                        dept,
                        t,
                        spent,
                        f"可用性低于目标 {objectives.probe_objective:.2%}，错误预算已用 {spent:.0%}",
                        f"availability below the {objectives.probe_objective:.2%} objective: "
                        f"{spent:.0%} of the error budget spent",
                    )
                )
            elif spent is not None and spent > BUDGET_WARNING:
                out.append(
                    _finding(
                        1,
                        "availability-budget-low",
                        dept,
                        t,
                        spent,
                        f"错误预算已用 {spent:.0%}",
                        f"{spent:.0%} of the availability error budget spent",
                    )
                )
            unresolved = f.incidents_opened - f.incidents_resolved
            if unresolved > 0:
                out.append(
                    _finding(
                        2,
                        "incidents-unresolved",
                        dept,
                        t,
                        unresolved,
                        f"本期 {unresolved} 个事件未解决",
                        f"{unresolved} incident(s) of the period unresolved",
                    )
                )
            threshold = objectives.provisioning_threshold_seconds
            within = f.provisioned_within(threshold)
            if within is not None and within < objectives.provisioning_objective:
                out.append(
                    _finding(
                        2,
                        "provisioning-objective-missed",
                        dept,
                        t,
                        within,
                        f"仅 {within:.0%} 的申请在 {threshold:g} 秒内就绪（目标 "
                        f"{objectives.provisioning_objective:.0%}）",
                        f"only {within:.0%} of requests Ready within {threshold:g} s (objective "
                        f"{objectives.provisioning_objective:.0%})",
                    )
                )
            p95, limit = f.probe_p95_seconds, f.apdex_threshold_seconds
            if p95 is not None and limit is not None and p95 > limit:
                out.append(
                    _finding(
                        1,
                        "probe-latency-over-target",
                        dept,
                        t,
                        p95,
                        f"探测时延 p95 {p95:.3g} 秒，超过 Apdex 阈值 T={limit:g} 秒",
                        f"probe latency p95 {p95:.3g} s is over the Apdex threshold T={limit:g} s",
                    )
                )
            score = f.apdex_total.score
            if score is not None and score < APDEX_ATTENTION:
                out.append(
                    _finding(
                        2 if score < 0.7 else 1,
                        "apdex-low",
                        dept,
                        t,
                        score,
                        f"Apdex {score:.2f} 低于 {APDEX_ATTENTION}",
                        f"Apdex {score:.2f} below {APDEX_ATTENTION}",
                    )
                )
            rating = f.feedback_mean
            if rating is not None and rating < RATING_ATTENTION:
                out.append(
                    _finding(
                        2,
                        "feedback-low",
                        dept,
                        t,
                        rating,
                        f"用户评分均值 {rating:.1f}/5（{f.feedback_count} 条）",
                        f"mean rating {rating:.1f}/5 ({f.feedback_count} ratings)",
                    )
                )
    # Worst first; within a severity, the larger deviation (lower scores and shares are worse).
    worse_when_low = {"apdex-low", "feedback-low", "provisioning-objective-missed"}
    out.sort(
        key=lambda x: (
            -x.severity,
            (x.value or 0) if x.code in worse_when_low else -(x.value or 0),
            x.department,
        )
    )
    return tuple(out)


def showback(metered: Metered, sheet: PriceSheet, depts: tuple[Department, ...]) -> cost.Showback:
    """The period's component-hours (query.fetch_usage) priced by the sheet, for the report's departments."""
    usage: dict[tuple[str, str, str], float] = defaultdict(float)
    for sample in metered.samples:
        if sample.value is None or metered.resolution_seconds is None:
            continue
        labels = sample.labels
        key = (labels.get("department", ""), labels.get("component_type", ""), labels.get("offering", ""))
        usage[key] += cost.component_hours(sample.value, metered.resolution_seconds)
    return cost.allocate(
        usage,
        sheet,
        [d.label for d in depts],
        resolution_seconds=metered.resolution_seconds,
        measured_from=metered.measured_from,
    )


def assemble(
    results: Results,
    period: Period,
    objectives: Objectives,
    names: Mapping[str, str],
    *,
    city: str | None,
    source: str,
    now: datetime | None = None,
    usage: Metered | None = None,
    prices: PriceSheet | None = None,
) -> Report:
    """The report; with a price sheet and the period's usage, its cost showback too."""
    depts = departments(results, names)
    return Report(
        city=city,
        period=period,
        objectives=objectives,
        departments=depts,
        findings=findings(depts, objectives),
        source=source,
        generated_at=(now or datetime.now(UTC)).replace(microsecond=0),
        cost=showback(usage, prices, depts) if usage is not None and prices is not None else None,
    )
