"""The hub's Prometheus rules, from this one source: recording rules for the SLIs and every alert.

    python -m components.monitoring_rules            rewrite monitoring/rules/cityhub.rules.yaml and
                                                     monitoring/dashboards/hub-overview.json
    python -m components.monitoring_rules --check    fail if those files differ from what this module makes

The stack delivers the same groups as a PrometheusRule (prometheus-operator) and as a ConfigMap holding the
plain rule file (a standalone Prometheus). `RuleParams` holds every tunable; tests shrink its durations.

SLOs (per department x component type x offering, so an alert routes to the department it hurts):
    probe availability   share of black-box probes that succeed                     (objective 99.5 %)
    provisioning         share of requests Ready within the threshold (60 s)        (objective 95 %)
Burn-rate alerts follow the SRE workbook's multiwindow, multi-burn-rate pattern: page when 1h and 5m both
burn faster than 14.4x, or 6h and 30m faster than 6x; ticket when 3d and 6h burn faster than 1x.
Ratios divide by `(… > 0)`: at zero traffic a series is absent rather than NaN, so nothing fires.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from cityhub_api import api
from cityhub_api.api import PROVISIONING_BUCKETS

REPO = Path(__file__).resolve().parents[1]
RULES_FILE = REPO / "monitoring" / "rules" / "cityhub.rules.yaml"
DASHBOARD_FILE = REPO / "monitoring" / "dashboards" / "hub-overview.json"
RUNBOOKS_DIR = REPO / "docs" / "runbooks" / "cityhub"
"""One page per alert, named after it in lowercase: the runbooks' `cityhub` group (kube-prometheus style)."""
DEFAULT_RUNBOOK_BASE = "https://cityhub.io/docs/runbooks/cityhub"
"""Where the docs site publishes RUNBOOKS_DIR; a city hosting its own sets cityhub:monitoring.runbookBase."""
BY = "department, component_type, offering"
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
# (severity, long window, short window, burn factor, for): the SRE workbook's table.
BURNS = (
    ("page", "1h", "5m", 14.4, "2m", "Fast"),
    ("page", "6h", "30m", 6.0, "15m", "Slow"),
    ("ticket", "3d", "6h", 1.0, "1h", "Ticket"),
)


@dataclass(frozen=True)
class RuleParams:
    probe_objective: float = api.PROBE_OBJECTIVE
    """Share of probes that must succeed over the SLO period."""
    provisioning_objective: float = api.PROVISIONING_OBJECTIVE
    """Share of requests that must be Ready within provisioning_threshold_seconds."""
    provisioning_threshold_seconds: float = api.PROVISIONING_THRESHOLD_SECONDS
    """Must be a bucket bound of cityhub_provisioning_seconds."""
    slo_period: str = "30d"
    """Error budgets are measured over this period."""
    operator_job: str = "cityhub-operator"
    """The scrape job of the operator's /metrics (the ServiceMonitor's jobLabel value)."""
    platform_department: str = "platform"
    """Department label of hub-wide alerts (the platform team's route)."""
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    """The URL of the folder holding one runbook page per alert (`<runbook_base>/<alertname, lowercase>`, as
    kube-prometheus links runbooks.prometheus-operator.dev/runbooks/<group>/<alertname>). The stack sets it
    with cityhub:monitoring.runbookBase (a trailing / is fine); the default is docs/runbooks/cityhub/."""
    interval: str = "30s"
    long_interval: str = "2m30s"
    """Evaluation interval of the group holding the windows of a day or more (3d, the SLO period, the budgets,
    the 1-day report series): a 30-day `rate()` over raw counters is most of a cycle's cost, and a budget or a
    ticket that needs 1 h of burn loses nothing at 2.5-minute freshness. It stays under Prometheus's 5-minute
    lookback, so an alert reading these series never finds them momentarily absent between two evaluations
    (which would reset its `for`)."""
    component_down_for: str = "5m"
    uplink_down_for: str = "1m"
    """How long an edge's uplink must stay down before CityhubEdgeUplinkDown fires (the operator already
    waits CITYHUB_NATS_EDGE_SILENCE, 30 s, before calling it down)."""
    operator_down_for: str = "5m"
    min_provisioning_events: int = 3
    """Provisioning burn alerts need this many requests in the long window: one slow request of an
    otherwise idle department is not a page."""
    burn_for: tuple[str, str, str] | None = None
    """Override the `for` of the three burn alerts (tests); None keeps the workbook's 2m, 15m, 1h."""

    def validate(self) -> RuleParams:
        for name in ("probe_objective", "provisioning_objective"):
            value = getattr(self, name)
            if not 0.5 <= value < 1:
                raise ValueError(f"Invalid monitoring {name}={value}: needs to be a share from 0.5 to 0.9999")
        if self.provisioning_threshold_seconds not in PROVISIONING_BUCKETS:
            raise ValueError(
                f"Invalid monitoring provisioning_threshold_seconds={self.provisioning_threshold_seconds}: "
                f"needs to be one of the histogram's bounds {list(PROVISIONING_BUCKETS)}"
            )
        if not 0 < duration_seconds(self.long_interval) < LOOKBACK_SECONDS:
            raise ValueError(
                f"Invalid monitoring long_interval={self.long_interval}: needs to be a Prometheus duration "
                "under 5m (its lookback; a longer interval leaves the alerts gaps), e.g. 2m30s"
            )
        return self


LOOKBACK_SECONDS = 300
"""Prometheus's default query lookback (--query.lookback-delta)."""
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """A Prometheus duration ("2m30s") in seconds; 0 when it is not one."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        return 0
    return sum(int(n) * _UNITS[u] for n, u in parts)


def runbook_url(base: str, alert: str) -> str:
    """`<base>/<alertname in lowercase>`: one separator whether or not the configured base ends with /."""
    return f"{base.rstrip('/')}/{alert.lower()}"


def runbook_file(alert: str) -> Path:
    """The page in this repository that runbook_url(DEFAULT_RUNBOOK_BASE, alert) publishes."""
    return RUNBOOKS_DIR / f"{alert.lower()}.md"


def _runbook(params: RuleParams, alert: str) -> str:
    return runbook_url(params.runbook_base, alert)


def _ratio(num: str, den: str) -> str:
    """num / den without NaN: no series when den is zero."""
    return f"{num}\n  /\n({den} > 0)"


def _p95(histogram: str, window: str) -> str:
    """The 95th percentile, only where there were observations (histogram_quantile of nothing is NaN)."""
    return (
        f"histogram_quantile(0.95, sum by (le, {BY}) (rate({histogram}_bucket[{window}])))"
        f"\n  and\n(sum by ({BY}) (rate({histogram}_count[{window}])) > 0)"
    )


def recording_rules(params: RuleParams) -> list[dict[str, Any]]:
    le = floatToGoString(params.provisioning_threshold_seconds)
    rules: list[dict[str, Any]] = []
    for w in (*WINDOWS, params.slo_period):
        rules.append(
            {
                "record": f"cityhub:probe_errors:ratio_rate{w}",
                "expr": _ratio(
                    f'sum by ({BY}) (rate(cityhub_probe_total{{result="failure"}}[{w}]))',
                    f"sum by ({BY}) (rate(cityhub_probe_total[{w}]))",
                ),
            }
        )
        rules.append(
            {
                "record": f"cityhub:provisioning_slow:ratio_rate{w}",
                "expr": "1 - "
                + _ratio(
                    f'sum by ({BY}) (rate(cityhub_provisioning_seconds_bucket{{le="{le}"}}[{w}]))',
                    f"sum by ({BY}) (rate(cityhub_provisioning_seconds_count[{w}]))",
                ),
            }
        )
    p = params.slo_period
    rules += [
        {
            "record": "cityhub:probe_error_budget:remaining",
            "expr": f"1 - cityhub:probe_errors:ratio_rate{p} / {1 - params.probe_objective:.6g}",
        },
        {
            "record": "cityhub:provisioning_error_budget:remaining",
            "expr": f"1 - cityhub:provisioning_slow:ratio_rate{p} / {1 - params.provisioning_objective:.6g}",
        },
        {
            "record": "cityhub:probe_duration_seconds:p95_rate5m",
            "expr": _p95("cityhub_probe_duration_seconds", "5m"),
        },
        {
            "record": "cityhub:provisioning_seconds:p95_rate1d",
            "expr": _p95("cityhub_provisioning_seconds", "1d"),
        },
        {
            "record": "cityhub:probe_apdex:ratio_rate1h",
            "expr": _ratio(
                f'(sum by ({BY}) (rate(cityhub_probe_apdex_total{{zone="satisfied"}}[1h]))'
                f' + sum by ({BY}) (rate(cityhub_probe_apdex_total{{zone="tolerating"}}[1h])) / 2)',
                f"sum by ({BY}) (rate(cityhub_probe_apdex_total[1h]))",
            ),
        },
        {
            "record": "cityhub:probe_apdex_by_type:ratio_rate1h",
            "expr": _ratio(
                '(sum by (component_type) (rate(cityhub_probe_apdex_total{zone="satisfied"}[1h]))'
                ' + sum by (component_type) (rate(cityhub_probe_apdex_total{zone="tolerating"}[1h])) / 2)',
                "sum by (component_type) (rate(cityhub_probe_apdex_total[1h]))",
            ),
        },
        {"record": "cityhub:components:count", "expr": f"sum by ({BY}, state) (cityhub_components)"},
        {
            "record": "cityhub:incidents_opened:increase1d",
            "expr": f"sum by ({BY}) (increase(cityhub_incidents_opened_total[1d]))",
        },
        {
            "record": "cityhub:incidents_resolved:increase1d",
            "expr": f"sum by ({BY}) (increase(cityhub_incidents_resolved_total[1d]))",
        },
        {
            "record": "cityhub:incident_resolution_seconds:mean1d",
            "expr": _ratio(
                f"sum by ({BY}) (increase(cityhub_incident_resolution_seconds_sum[1d]))",
                f"sum by ({BY}) (increase(cityhub_incident_resolution_seconds_count[1d]))",
            ),
        },
        {
            "record": "cityhub:feedback_rating:mean",
            "expr": _ratio(
                "sum by (component_type) (cityhub_feedback_rating_sum)",
                "sum by (component_type) (cityhub_feedback_ratings)",
            ),
        },
        {
            "record": "cityhub:feedback_rating_by_department:mean",
            "expr": _ratio(
                "sum by (department, component_type) (cityhub_feedback_rating_sum)",
                "sum by (department, component_type) (cityhub_feedback_ratings)",
            ),
        },
    ]
    return rules


def _alert(
    params: RuleParams,
    name: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    **labels: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": _runbook(params, name),
        },
    }


def alert_rules(params: RuleParams) -> list[dict[str, Any]]:
    platform = params.platform_department
    job = params.operator_job
    alerts = [
        _alert(
            params,
            "CityhubOperatorDown",
            f'up{{job="{job}"}} == 0 or absent(up{{job="{job}"}})',
            params.operator_down_for,
            "page",
            "The cityhub operator is not being scraped",
            f"Prometheus cannot scrape job {job}: no component requests are reconciled or probed, and "
            "every component metric is stale. Check the operator's pod and logs.",
            department=platform,
        ),
        _alert(
            params,
            "CityhubComponentDown",
            f'sum by ({BY}) (cityhub_components{{state="down"}}) > 0',
            params.component_down_for,
            "page",
            "{{ $value }} {{ $labels.component_type }} component(s) of {{ $labels.department }} are down",
            "Components of offering {{ $labels.offering }} that were Ready fail their black-box probe "
            "(or lost Ready): department {{ $labels.department }} cannot use them. An incident is open "
            "until they pass again.",
        ),
        _alert(
            params,
            "CityhubEdgeUplinkDown",
            "min by (edge) (cityhub_edge_uplink_up) == 0",
            params.uplink_down_for,
            "page",
            "Edge cluster {{ $labels.edge }} has lost its uplink to the hub (边缘集群上行链路中断)",
            "The hub has not heard from edge cluster {{ $labels.edge }} through its channels' sourcing: "
            "its departments keep publishing on the edge (its JetStream keeps the messages), but nothing "
            "reaches the hub or other departments until the uplink returns, and the edge's requests report "
            "Synced=False naming it. The hub catches up by itself once the uplink is back.",
            department=platform,
        ),
        _alert(
            params,
            "CityhubReconcileErrors",
            'sum by (controller) (rate(cityhub_reconcile_total{result="error"}[15m])) > 0',
            "15m",
            "ticket",
            "The operator fails reconciles of {{ $labels.controller }}",
            "Reconciles of {{ $labels.controller }} end in unexpected errors (not backend outages, not "
            "refused requests) for 15 minutes: see the operator's log.",
            department=platform,
        ),
    ]
    fors = params.burn_for or tuple(b[4] for b in BURNS)
    for (severity, long, short, factor, _, label), for_ in zip(BURNS, fors, strict=True):
        threshold = f"{factor * (1 - params.probe_objective):.6g}"
        alerts.append(
            _alert(
                params,
                f"CityhubProbeBudgetBurn{label}",
                f"cityhub:probe_errors:ratio_rate{long} > {threshold}\n"
                f"and\ncityhub:probe_errors:ratio_rate{short} > {threshold}",
                for_,
                severity,
                "{{ $labels.component_type }} of {{ $labels.department }} burns its availability budget "
                f"{factor:g}x too fast",
                "Black-box probes of {{ $labels.component_type }} ({{ $labels.offering }}) in "
                "{{ $labels.department }} fail at {{ $value | humanizePercentage }} over "
                f"{long} (and above {threshold} over {short}); "
                f"at this rate the {params.slo_period} error budget of the "
                f"{params.probe_objective:.2%} objective is gone early.",
                slo="probe-availability",
                window=long,
            )
        )
        threshold = f"{factor * (1 - params.provisioning_objective):.6g}"
        alerts.append(
            _alert(
                params,
                f"CityhubProvisioningBudgetBurn{label}",
                f"cityhub:provisioning_slow:ratio_rate{long} > {threshold}\n"
                f"and\ncityhub:provisioning_slow:ratio_rate{short} > {threshold}\n"
                f"and on ({BY})\nsum by ({BY}) (increase(cityhub_provisioning_seconds_count[{long}]))"
                f" >= {params.min_provisioning_events}",
                for_,
                severity,
                "{{ $labels.component_type }} requests of {{ $labels.department }} take too long to be Ready",
                "{{ $value | humanizePercentage }} of {{ $labels.component_type }} requests over "
                f"{long} took longer than {params.provisioning_threshold_seconds:g}s to be Ready (burn "
                f"{factor:g}x over {long} and {short}); objective {params.provisioning_objective:.0%} within "
                f"{params.provisioning_threshold_seconds:g}s.",
                slo="provisioning-latency",
                window=long,
            )
        )
    return alerts


LONG_WINDOWS = ("3d", "1d")
"""Windows recorded in the long-interval group (with the SLO period)."""


def _is_long(rule: dict[str, Any], params: RuleParams) -> bool:
    name = rule["record"]
    return name.endswith(("_rate" + params.slo_period, "budget:remaining")) or any(
        name.endswith(("rate" + w, "increase" + w, "mean" + w)) for w in LONG_WINDOWS
    )


def groups(params: RuleParams | None = None) -> list[dict[str, Any]]:
    """cityhub-sli (short windows) and cityhub-sli-long (a day or more, evaluated every long_interval) before
    cityhub-alerts, which reads both."""
    params = (params or RuleParams()).validate()
    recorded = recording_rules(params)
    return [
        {"name": "cityhub-sli", "interval": params.interval,
         "rules": [r for r in recorded if not _is_long(r, params)]},
        {"name": "cityhub-sli-long", "interval": params.long_interval,
         "rules": [r for r in recorded if _is_long(r, params)]},
        {"name": "cityhub-alerts", "interval": params.interval, "rules": alert_rules(params)},
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, so the rule file reads like the expressions."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rules_yaml(params: RuleParams | None = None) -> str:
    header = "# Generated by `python -m components.monitoring_rules` from components/monitoring_rules.py.\n"
    body = yaml.dump(
        {"groups": groups(params)}, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True
    )
    return header + body


def prometheus_rule(params: RuleParams, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """The same groups as a prometheus-operator PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "cityhub", "namespace": namespace, "labels": labels},
        "spec": {"groups": groups(params)},
    }


def service_monitor(params: RuleParams, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """Scrapes the operator's metrics Service (app.kubernetes.io/name=cityhub-operator, port `metrics`);
    its job label is the Service's app.kubernetes.io/name, which the rules call operator_job."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": params.operator_job, "namespace": namespace, "labels": labels},
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": {"app.kubernetes.io/name": params.operator_job}},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": "metrics", "interval": params.interval, "path": "/metrics"}],
        },
    }


DELIVERY_KEYS = ("prometheus", "grafanaNamespace")
"""Keys of `cityhub:monitoring` about delivery (the Prometheus mode, the Grafana dashboard's namespace), read
by components/monitoring.py; they change no rule."""


def with_overrides(params: RuleParams, settings: dict[str, object]) -> RuleParams:
    """RuleParams from the stack's `cityhub:monitoring` object (camelCase keys); unknown keys are refused."""
    fields = {
        "probeObjective": ("probe_objective", float),
        "provisioningObjective": ("provisioning_objective", float),
        "provisioningThresholdSeconds": ("provisioning_threshold_seconds", float),
        "runbookBase": ("runbook_base", str),
        "platformDepartment": ("platform_department", str),
        "interval": ("interval", str),
        "longInterval": ("long_interval", str),
    }
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        if key in DELIVERY_KEYS:  # where and how the rules go: components/monitoring.py
            continue
        if key not in fields:
            raise ValueError(
                f"Invalid cityhub:monitoring.{key}: unknown; known: " + ", ".join((*DELIVERY_KEYS, *fields))
            )
        attr, kind = fields[key]
        try:
            changes[attr] = kind(value)  # type: ignore[operator]
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Invalid cityhub:monitoring.{key}={value!r}: needs to be a {kind.__name__}"
            ) from e
    return replace(params, **changes).validate()


def main(argv: list[str] | None = None) -> int:
    from components import monitoring_dashboard  # it imports this module
    parser = argparse.ArgumentParser(
        prog="python -m components.monitoring_rules", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the generated files are out of date")
    args = parser.parse_args(argv)
    outputs = {
        RULES_FILE: rules_yaml(),
        DASHBOARD_FILE: json.dumps(monitoring_dashboard.dashboard(), ensure_ascii=False, indent=2) + "\n",
    }
    stale = False
    for path, text in outputs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale = True
            sys.stdout.writelines(
                difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(path))
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(
            "generated monitoring files are stale: run python -m components.monitoring_rules", file=sys.stderr
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
