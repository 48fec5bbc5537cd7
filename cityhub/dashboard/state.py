"""The dashboard's state, one JSON document (schema cityhub.io/dashboard/v1): departments x component types
(requests Ready/unmet from the API server, components by state from Prometheus), SLOs and error budgets of the
month so far (the report's own queries and model: the two never disagree), firing alerts, 平/急 mode, the
stack's clusters (多级贯通: hub and edges, each read with its own kubeconfig; clusters.py), and the maturity
self-assessment when cityhub/maturity.py provides one.

A source that cannot be read is named in `errors` and its figures are null, never zeros.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cityhub.dashboard.cluster import ClusterState, Reader
from cityhub.dashboard.cluster import read as read_cluster
from cityhub.dashboard.clusters import Read, Topology, read_separately
from cityhub.report import build
from cityhub.report.command import StackFacts
from cityhub.report.model import Figures, Report
from cityhub.report.query import Prometheus, PrometheusError, fetch
from cityhub_api import registry

SCHEMA = "cityhub.io/dashboard/v1"
OPERATOR_JOB = "cityhub-operator"
"""The operator's scrape job (components/monitoring_rules.RuleParams.operator_job)."""
MATURITY_MODULE = "cityhub.maturity"
MATURITY_FUNCTION = "dashboard_section"
"""The maturity model's entry point the dashboard calls, when the module has it:
`dashboard_section(prometheus_url: str, kubeconfig: Path, stack: str) -> Mapping` with `dimensions`, a list
of {zh, en, level, maxLevel, evidence}, and optionally `overall` {level, maxLevel}."""


@dataclass(frozen=True)
class Sources:
    prometheus: Prometheus
    kubeconfig: Path
    stack: str
    facts: StackFacts
    topology: Topology = field(default_factory=Topology)
    """The stack's clusters and where its departments are placed (default: one ambient hub)."""


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _figures_json(f: Figures | None, probe_objective: float) -> dict[str, Any]:
    if f is None:
        return {
            "availability": None,
            "probes": 0,
            "probeFailures": 0,
            "budgetSpent": None,
            "apdex": None,
            "incidentsOpened": 0,
            "incidentsResolved": 0,
            "mttrSeconds": None,
        }
    return {
        "availability": _num(f.availability),
        "probes": f.probes,
        "probeFailures": f.probe_failures,
        "budgetSpent": _num(f.probe_budget_spent(probe_objective)),
        "apdex": _num(f.apdex_total.score),
        "incidentsOpened": f.incidents_opened,
        "incidentsResolved": f.incidents_resolved,
        "mttrSeconds": _num(f.mttr_seconds),
    }


def _components_now(prometheus: Prometheus, now: datetime) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for s in prometheus.query("sum by (department, component_type, state) (cityhub_components)", now):
        key = (s.labels.get("department", ""), s.labels.get("component_type", ""))
        out.setdefault(key, {"ready": 0, "down": 0, "pending": 0})[s.labels.get("state", "")] = round(
            s.value or 0
        )
    return out


def _alert_json(a: Mapping[str, Any]) -> dict[str, Any]:
    lab, ann = a.get("labels") or {}, a.get("annotations") or {}
    return {
        "name": lab.get("alertname", ""),
        "severity": lab.get("severity", ""),
        "department": lab.get("department"),
        "componentType": lab.get("component_type"),
        "since": a.get("activeAt"),
        "summary": ann.get("summary") or ann.get("description") or "",
        "runbookUrl": ann.get("runbook_url"),
    }


def maturity(prometheus_url: str, kubeconfig: Path, stack: str) -> dict[str, Any]:
    """The maturity section: the model's scores, or why there are none."""
    if importlib.util.find_spec(MATURITY_MODULE) is None:
        return {
            "available": False,
            "zh": "成熟度自评模型尚未提供（cityhub/maturity.py）",
            "en": "the maturity self-assessment is not provided yet (cityhub/maturity.py)",
        }
    try:
        module = importlib.import_module(MATURITY_MODULE)
        section = getattr(module, MATURITY_FUNCTION, None)
        if section is None:
            return {
                "available": False,
                "zh": f"{MATURITY_MODULE} 没有 {MATURITY_FUNCTION}()",
                "en": f"{MATURITY_MODULE} has no {MATURITY_FUNCTION}()",
            }
        scores = dict(section(prometheus_url, kubeconfig, stack))
    except Exception as e:  # the model is another module's code: its failure must not blank the page
        return {"available": False, "zh": "成熟度评分读取失败", "en": f"maturity scores failed: {e}"}
    return {"available": True, **scores}


def _mode(configured: str, read: Read) -> dict[str, Any]:
    """In force on every cluster read: an edge's responders count as the hub's do (平急切换 is stack-wide)."""
    every = ClusterState(namespaces=tuple(read.namespaces()))
    responders = [n for n in every.namespaces if n.emergency_responder]
    return {
        "configured": configured,
        "inForce": every.mode_in_force,
        "responders": len(responders),
        "respondersAtEmergencyPriority": sum(n.at_emergency_priority for n in responders),
    }


def collect(
    src: Sources,
    now: datetime | None = None,
    maturity_section: dict[str, Any] | None = None,
    edges: Mapping[str, ClusterState] | None = None,
    reader: Reader = read_cluster,
) -> dict[str, Any]:
    """Everything the page shows, read now; `maturity_section` and `edges` (clusters.read_separately) when the
    caller has recent ones (serve.Dashboard refreshes them less often than the rest); `reader` reads one API
    server (a test's fake)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    facts, errors = src.facts, []
    period = build.period_of(now.astimezone(build.CHINA_TIME).strftime("%Y-%m"), now)
    report: Report | None = None
    components: dict[tuple[str, str], dict[str, int]] = {}
    alerts: list[dict[str, Any]] | None = None
    operator_up: bool | None = None
    try:
        results = fetch(src.prometheus, period)
        report = build.assemble(
            results,
            period,
            facts.objectives,
            facts.names,
            city=facts.city,
            source=src.prometheus.url,
            now=now,
        )
        components = _components_now(src.prometheus, now)
        up = src.prometheus.query(f'max(up{{job="{OPERATOR_JOB}"}})', now)
        operator_up = bool(up[0].value) if up and up[0].value is not None else None
        alerts = [_alert_json(a) for a in src.prometheus.alerts() if a.get("state") == "firing"]
    except PrometheusError as e:
        errors.append({"source": "prometheus", "message": str(e)})
    cluster = reader(src.kubeconfig, None)
    if cluster.error:
        errors.append({"source": "kubernetes", "message": cluster.error})
    if edges is None:
        edges = read_separately(src.topology, src.kubeconfig, reader)
    read = Read(src.topology, src.kubeconfig, cluster, edges)
    errors += read.errors()
    if src.topology.error:
        errors.append({"source": "stack", "message": src.topology.error})
    requests, unreadable, placed = read.requests(), read.unreadable(), src.topology.placement()
    namespaces = read.namespaces()

    figures = {
        (d.label, r.component_type): r.figures for d in (report.departments if report else ()) for r in d.rows
    }
    names = (
        {d.label: d.name for d in report.departments}
        if report
        else {f"dept-{slug}": name for slug, name in facts.names.items()}
    )
    order = list(names) + list(dict.fromkeys(n.label for n in namespaces if n.label not in names))
    for n in namespaces:
        names[n.label] = names.get(n.label) or n.name
    keys = set(figures) | set(components) | set(requests)
    types = registry.component_types()
    order += sorted({d for d, _ in keys} - set(order))
    departments = []
    for label in order:
        cells = {}
        for ctype in types:
            key = (label, ctype)
            if key not in keys:
                continue
            asked = requests.get(key)
            known = label not in unreadable  # its cluster was read: no request there is a 0, else unknown
            cells[ctype] = {
                "requests": asked.total if asked else 0 if known else None,
                "ready": asked.ready if asked else 0 if known else None,
                "unmet": asked.unmet if asked else 0 if known else None,
                "components": components.get(key, {"ready": 0, "down": 0, "pending": 0}),
                **_figures_json(figures.get(key), facts.objectives.probe_objective),
            }
        departments.append(
            {
                "label": label,
                "slug": label.removeprefix("dept-"),
                "name": names.get(label),
                "cluster": placed.get(label),
                "clusterError": unreadable.get(label),
                "cells": cells,
            }
        )
    month = report.figures if report else None
    cells = [c for d in departments for c in d["cells"].values()]
    return {
        "schema": SCHEMA,
        "generatedAt": now.isoformat(),
        "city": facts.city,
        "stack": src.stack,
        "sources": {"prometheus": src.prometheus.url, "kubeconfig": str(src.kubeconfig)},
        "errors": errors,
        "operatorUp": operator_up,
        "mode": _mode(facts.mode, read),
        "period": {
            "label": period.label,
            "start": period.start.isoformat(),
            "evaluatedAt": period.evaluated_at.isoformat(),
        },
        "objectives": {
            "probeObjective": facts.objectives.probe_objective,
            "provisioningObjective": facts.objectives.provisioning_objective,
            "provisioningThresholdSeconds": facts.objectives.provisioning_threshold_seconds,
        },
        "componentTypes": [{"name": t.name, "displayName": t.display_name} for t in types.values()],
        "clusters": read.panel(names),
        "departments": departments,
        "totals": {  # of the clusters read (an unreadable one is named in `errors` and its clusters entry)
            "requests": sum(c["requests"] or 0 for c in cells),
            "ready": sum(c["ready"] or 0 for c in cells),
            "unmet": sum(c["unmet"] or 0 for c in cells),
            "componentsDown": sum(c["components"]["down"] for c in cells),
            "firingAlerts": None if alerts is None else len(alerts),
            **{
                k: v
                for k, v in _figures_json(month, facts.objectives.probe_objective).items()
                if k in ("availability", "budgetSpent", "apdex", "mttrSeconds")
            },
        },
        "alerts": alerts,
        "maturity": maturity_section or maturity(src.prometheus.url, src.kubeconfig, src.stack),
    }
