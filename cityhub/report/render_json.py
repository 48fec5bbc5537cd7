"""The report as JSON for publication: schema cityhub.io/report/v1, documented in docs/report.md.

Stable by design: keys are camelCase and only ever added within v1; a figure without data is null (never NaN,
never 0); shares are fractions (0.995, not 99.5); times are RFC 3339 with the offset; durations in seconds.
"""

from __future__ import annotations

import json
from typing import Any

from cityhub.maturity.render import to_dict as maturity_dict
from cityhub.report.cost import BILLED_STATES, OfferingCost, Showback, TypeCost
from cityhub.report.model import Department, Figures, Objectives, Report, apdex_band

SCHEMA = "cityhub.io/report/v1"


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _met(value: float | None, ok: bool) -> bool | None:
    return None if value is None else ok


def figures(f: Figures, objectives: Objectives) -> dict[str, Any]:
    threshold = objectives.provisioning_threshold_seconds
    within = f.provisioned_within(threshold)
    p95, target = f.probe_p95_seconds, f.apdex_threshold_seconds
    availability = f.availability
    score = f.apdex_total.score
    band = apdex_band(score)
    return {
        "components": {state: f.components.get(state, 0) for state in ("ready", "down", "pending")},
        "responsiveness": {
            "provisioningRequests": f.provisioned,
            "provisionedWithinThreshold": _num(within),
            "provisioningP95Seconds": _num(f.provisioning_p95_seconds),
            "provisioningObjectiveMet": _met(within, (within or 0) >= objectives.provisioning_objective),
            "probeP95Seconds": _num(p95),
            "probeLatencyTargetSeconds": _num(target),
            "probeLatencyTargetMet": None if p95 is None or target is None else p95 <= target,
        },
        "resolution": {
            "incidentsOpened": f.incidents_opened,
            "incidentsResolved": f.incidents_resolved,
            "mttrSeconds": _num(f.mttr_seconds),
            "probeErrorBudgetSpent": _num(f.probe_budget_spent(objectives.probe_objective)),
            "provisioningErrorBudgetSpent": _num(f.provisioning_budget_spent(objectives)),
        },
        "satisfaction": {
            "apdex": _num(score),
            "apdexRating": None if band is None else {"zh": band[0], "en": band[1]},
            "apdexByOffering": {o: _num(a.score) for o, a in f.apdex.items()},
            "feedbackCount": f.feedback_count,
            "feedbackMean": _num(f.feedback_mean),
        },
        "availability": {
            "probes": f.probes,
            "probeFailures": f.probe_failures,
            "availability": _num(availability),
            "objectiveMet": _met(availability, (availability or 0) >= objectives.probe_objective),
        },
    }


def department(d: Department, objectives: Objectives) -> dict[str, Any]:
    return {
        "label": d.label,
        "slug": d.slug,
        "name": d.name,
        "hasData": d.figures.has_data,
        "summary": figures(d.figures, objectives),
        "componentTypes": [
            {"componentType": r.component_type, **figures(r.figures, objectives)} for r in d.rows
        ],
    }


def _priced(item: OfferingCost | TypeCost) -> dict[str, Any]:
    return {
        "componentHours": _num(item.component_hours),
        "componentHourPrice": item.price,
        "cost": _num(item.cost),
    }


def cost(showback: Showback | None, depts: tuple[Department, ...]) -> dict[str, Any] | None:
    """成本分摊: null without a price sheet; amounts in `currency`, shares as fractions."""
    if showback is None:
        return None
    named = {d.label: d for d in depts}
    return {
        "currency": showback.currency,
        "priceSheet": {"name": showback.sheet_name, "source": showback.sheet_source},
        "billedStates": list(BILLED_STATES),
        "resolutionSeconds": showback.resolution_seconds,
        "measuredFrom": None if showback.measured_from is None else showback.measured_from.isoformat(),
        "componentHours": _num(showback.component_hours),
        "total": _num(showback.total),
        "unpriced": [{"componentType": t, "componentHours": _num(h)} for t, h in showback.unpriced.items()],
        "departments": [
            {
                "label": d.label,
                "slug": named[d.label].slug if d.label in named else None,
                "name": named[d.label].name if d.label in named else None,
                "componentHours": _num(d.component_hours),
                "cost": _num(d.cost),
                "share": _num(showback.share(d)),
                "componentTypes": [
                    {
                        "componentType": t.component_type,
                        **_priced(t),
                        "offerings": [{"offering": o.offering, **_priced(o)} for o in t.offerings],
                    }
                    for t in d.types
                ],
            }
            for d in showback.departments
        ],
    }


def to_dict(report: Report) -> dict[str, Any]:
    p, o = report.period, report.objectives
    depts = report.departments
    return {
        "schema": SCHEMA,
        "city": report.city,
        "period": {
            "label": p.label,
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
            "evaluatedAt": p.evaluated_at.isoformat(timespec="seconds"),
            "complete": p.complete,
        },
        "generatedAt": report.generated_at.isoformat(),
        "source": report.source,
        "objectives": {
            "probeAvailability": o.probe_objective,
            "provisionedWithinThreshold": o.provisioning_objective,
            "provisioningThresholdSeconds": o.provisioning_threshold_seconds,
        },
        "summary": {
            "departments": len(depts),
            "departmentsWithData": sum(1 for d in depts if d.figures.has_data),
            "componentTypes": list(report.component_types),
            "attention": len(report.findings),
            **figures(report.figures, o),
            "cost": None
            if report.cost is None
            else {
                "currency": report.cost.currency,
                "total": _num(report.cost.total),
                "componentHours": _num(report.cost.component_hours),
            },
        },
        "departments": [department(d, o) for d in depts],
        "attention": [
            {
                "rank": i,
                "severity": f.severity,
                "code": f.code,
                "department": f.department,
                "departmentName": f.department_name,
                "componentType": f.component_type,
                "value": _num(f.value),
                "zh": f.zh,
                "en": f.en,
            }
            for i, f in enumerate(report.findings, 1)
        ],
        "maturity": None if report.maturity is None else maturity_dict(report.maturity),
        "cost": cost(report.cost, depts),
    }


def dumps(report: Report) -> str:
    return json.dumps(to_dict(report), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
