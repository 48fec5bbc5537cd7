"""The hub overview dashboard (Grafana JSON), built on the recording rules of monitoring_rules.py so its
panels and the alerts read the same series: monitoring/dashboards/hub-overview.json."""

from __future__ import annotations

from typing import Any

from components.monitoring_rules import RuleParams


def _panel(
    pid: int,
    title: str,
    kind: str,
    grid: tuple[int, int, int, int],
    targets: list[tuple[str, str]],
    **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "refId": chr(65 + i),
                "expr": expr,
                "legendFormat": legend,
                "instant": kind in ("table", "bargauge"),
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        **extra,
    }


def dashboard(params: RuleParams | None = None) -> dict[str, Any]:
    """The hub overview (Grafana JSON): departments x components status, SLOs and budgets, outcomes."""
    params = (params or RuleParams()).validate()
    sel = 'department=~"$department", component_type=~"$component_type"'
    percent = {"defaults": {"unit": "percentunit", "min": 0, "max": 1}, "overrides": []}
    seconds = {"defaults": {"unit": "s"}, "overrides": []}
    p = params.slo_period
    panels = [
        _panel(1, "Operator up", "stat", (0, 0, 4, 4), [(f'up{{job="{params.operator_job}"}}', "operator")]),
        _panel(
            2,
            "Components by state",
            "stat",
            (4, 0, 8, 4),
            [(f"sum by (state) (cityhub_components{{{sel}}})", "{{state}}")],
        ),
        _panel(
            3,
            "Open incidents",
            "stat",
            (12, 0, 4, 4),
            [(f'sum(cityhub_components{{{sel}, state="down"}}) or vector(0)', "down")],
        ),
        _panel(
            4,
            "Mean time to resolve (1d)",
            "stat",
            (16, 0, 4, 4),
            [(f"avg(cityhub:incident_resolution_seconds:mean1d{{{sel}}})", "MTTR")],
            fieldConfig=seconds,
        ),
        _panel(
            5,
            "Feedback (mean rating, 1-5)",
            "stat",
            (20, 0, 4, 4),
            [('cityhub:feedback_rating:mean{component_type=~"$component_type"}', "{{component_type}}")],
        ),
        _panel(
            6,
            "Departments x components: ready / down / pending",
            "table",
            (0, 4, 12, 10),
            [
                (f'sum by (department, component_type) (cityhub_components{{{sel}, state="{s}"}})', s)
                for s in ("ready", "down", "pending")
            ],
            transformations=[
                {"id": "merge"},
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            ],
        ),
        _panel(
            7,
            f"Probe availability ({p}) vs objective {params.probe_objective:.2%}",
            "bargauge",
            (12, 4, 12, 5),
            [(f"1 - cityhub:probe_errors:ratio_rate{p}{{{sel}}}", "{{department}} {{component_type}}")],
            fieldConfig=percent,
        ),
        _panel(
            8,
            "Error budget remaining (probe availability)",
            "bargauge",
            (12, 9, 12, 5),
            [
                (
                    f"clamp_min(cityhub:probe_error_budget:remaining{{{sel}}}, 0)",
                    "{{department}} {{component_type}}",
                )
            ],
            fieldConfig=percent,
        ),
        _panel(
            9,
            "Burn rate (probe errors / budget), 1h",
            "timeseries",
            (0, 14, 12, 8),
            [
                (
                    f"cityhub:probe_errors:ratio_rate1h{{{sel}}} / {1 - params.probe_objective:.6g}",
                    "{{department}} {{component_type}}",
                )
            ],
        ),
        _panel(
            10,
            "Apdex (probe latency against the offering's T), 1h",
            "timeseries",
            (12, 14, 12, 8),
            [(f"cityhub:probe_apdex:ratio_rate1h{{{sel}}}", "{{department}} {{component_type}}")],
            fieldConfig=percent,
        ),
        _panel(
            11,
            "Probe latency p95",
            "timeseries",
            (0, 22, 12, 8),
            [(f"cityhub:probe_duration_seconds:p95_rate5m{{{sel}}}", "{{department}} {{component_type}}")],
            fieldConfig=seconds,
        ),
        _panel(
            12,
            f"Request to Ready p95 (1d); objective {params.provisioning_objective:.0%} within "
            f"{params.provisioning_threshold_seconds:g}s",
            "timeseries",
            (12, 22, 12, 8),
            [(f"cityhub:provisioning_seconds:p95_rate1d{{{sel}}}", "{{department}} {{component_type}}")],
            fieldConfig=seconds,
        ),
        _panel(
            13,
            "Incidents opened / resolved (1d)",
            "timeseries",
            (0, 30, 12, 8),
            [
                (f"sum(cityhub:incidents_opened:increase1d{{{sel}}})", "opened"),
                (f"sum(cityhub:incidents_resolved:increase1d{{{sel}}})", "resolved"),
            ],
        ),
        _panel(
            14,
            "Operator: reconciles by result, retries, in flight",
            "timeseries",
            (12, 30, 12, 8),
            [
                ("sum by (result) (rate(cityhub_reconcile_total[5m]))", "{{result}}"),
                ("sum(rate(cityhub_workqueue_retries_total[5m]))", "retries"),
                ("sum(cityhub_workqueue_depth)", "in flight"),
            ],
        ),
    ]

    def variable(name: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": name},
            "includeAll": True,
            "multi": True,
            "current": {"text": "All", "value": "$__all"},
            "refresh": 2,
        }

    return {
        "uid": "cityhub-hub-overview",
        "title": "cityhub: hub overview",
        "tags": ["cityhub"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                variable("department", "label_values(cityhub_components, department)"),
                variable("component_type", "label_values(cityhub_components, component_type)"),
            ]
        },
        "panels": panels,
    }
