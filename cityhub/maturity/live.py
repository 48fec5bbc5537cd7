"""The evidence from the live hub: the hub cluster's API server (kubectl, as the drill reads it), the stack
config (clusters and districts, which only it knows), the drill records, and Prometheus (the figures of
cityhub.report over the last WINDOW_DAYS).

    from cityhub.maturity import assess
    assessment = assess(stack="dev", prometheus=Prometheus(url))      # or figures=report.figures
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths
from cityhub.config_model import LEVEL_LABELS, HubConfig
from cityhub.drill import cluster, record
from cityhub.drill.cluster import Target
from cityhub.drill.command import hub_config, stack_document
from cityhub.maturity.dimensions import score
from cityhub.maturity.model import Assessment, DrillSummary, Evidence
from cityhub.report import build
from cityhub.report.model import Figures, Period
from cityhub.report.query import Prometheus, fetch
from cityhub_api import labels, registry
from cityhub_api.api import GROUP

WINDOW_DAYS = 30
RUNBOOKS = Path("docs") / "runbooks"
"""Runbook pages in the checkout: an alert's runbook_url must name one of them (by its last path segment)."""


def _items(target: Target, *args: str) -> list[dict[str, Any]]:
    return list(target.get(*args)["items"])


def _default_deny(policy: Mapping[str, Any]) -> bool:
    """Selects every pod, both directions, allows nothing."""
    spec = policy.get("spec") or {}
    return (
        not (spec.get("podSelector") or {})
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _alerts(target: Target) -> tuple[int | None, int]:
    """(alert rules in the stack's rule files, those with a runbook page): the rule files are the ConfigMaps
    of cityhub in the system namespace whose values are Prometheus rule files (`groups:`)."""
    pages = {p.stem.lower() for p in (paths.repo_root() / RUNBOOKS).rglob("*.md")}
    alerts: int | None = None
    with_runbook = 0
    for cm in _items(target, "configmaps", "-n", labels.SYSTEM_NAMESPACE, "-l", f"{labels.PART_OF}=cityhub"):
        for text in (cm.get("data") or {}).values():
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
                continue
            for group in doc["groups"]:
                for rule in group.get("rules") or []:
                    if "alert" not in rule:
                        continue
                    alerts = (alerts or 0) + 1
                    url = str((rule.get("annotations") or {}).get("runbook_url", ""))
                    if url and url.rstrip("/").rsplit("/", 1)[-1].lower() in pages:
                        with_runbook += 1
    return alerts, with_runbook


def _drills(hub: Target) -> tuple[DrillSummary, ...]:
    """The cluster's drill records and this checkout's, by id, oldest first."""
    docs = {d["id"]: d for d in record.load_local()}
    docs.update({d["id"]: d for d in record.load_cluster(hub)})
    out = []
    for _, doc in sorted(docs.items()):
        emergency = doc.get("emergency") or {}
        out.append(
            DrillSummary(
                id=doc["id"],
                passed=doc.get("result") == "passed",
                started_at=datetime.fromisoformat(doc["startedAt"]),
                emergency_in_force_seconds=emergency.get("inForceSeconds"),
                clusters=tuple(c["cluster"] for c in emergency.get("clusters") or []),
            )
        )
    return tuple(out)


def window_figures(prometheus: Prometheus, now: datetime, days: int = WINDOW_DAYS) -> Figures:
    """The city's figures (cityhub.report's) over the last `days`."""
    period = Period(label=f"last-{days}d", start=now - timedelta(days=days), end=now, evaluated_at=now)
    total = Figures()
    for types in build.rows_by_department(fetch(prometheus, period)).values():
        for figures in types.values():
            total = total + figures
    return total


def gather(
    config: HubConfig,
    *,
    figures: Figures | None = None,
    now: datetime | None = None,
    kubeconfig: Path | None = None,
) -> Evidence:
    """`kubeconfig`: the hub cluster's, if the caller names one (else the stack's, as the drill finds it)."""
    now = now or datetime.now(UTC)
    targets = cluster.targets(config)
    if not targets:
        raise RuntimeError("the stack config has no departments: nothing to assess")
    hub = next((t for t in targets if t.role == "hub"), targets[0])
    if kubeconfig is not None:
        hub = replace(hub, kubeconfig=kubeconfig, context=None)
    namespaces = _items(hub, "namespaces", "-l", f"{labels.TENANT}=department")
    names = {n["metadata"]["name"] for n in namespaces}
    ns_labels = [n["metadata"].get("labels") or {} for n in namespaces]
    plurals = ",".join(f"{t.plural}.{GROUP}" for t in registry.component_types().values())
    requests = [r for r in _items(hub, plurals, "--all-namespaces") if r["metadata"]["namespace"] in names]
    offerings = _items(hub, f"componentofferings.{GROUP}")
    policies = _items(hub, "networkpolicies", "--all-namespaces")
    denied = {p["metadata"]["namespace"] for p in policies if _default_deny(p)} & names
    alerts, with_runbook = _alerts(hub)
    levels = Counter(lab.get(labels.LEVEL, "") for lab in ns_labels)
    edges = [c for c in config.clusters if c.role == "edge"]
    serving = tuple(c.name for c in edges if config.departments_on(c.name))
    edge_divisions = {c.division_code for c in edges if c.division_code}
    return Evidence(
        assessed_at=now,
        departments=len(names),
        departments_using=len({r["metadata"]["namespace"] for r in requests}),
        catalog_types=tuple(sorted({str(o["spec"].get("componentType", "")) for o in offerings})),
        types_in_use=tuple(sorted({registry.component_type_by_kind(r["kind"]).name for r in requests})),
        offerings=len(offerings),
        offerings_with_apdex=sum(
            1 for o in offerings if (o["spec"].get("apdex") or {}).get("thresholdSeconds")
        ),
        graded=sum(1 for lab in ns_labels if lab.get(labels.DATA_GRADE)),
        default_deny=len(denied),
        restricted=sum(1 for lab in ns_labels if lab.get(labels.POD_SECURITY_ENFORCE) == "restricted"),
        requests=len(requests),
        requests_graded=sum(
            1 for r in requests if (r["metadata"].get("labels") or {}).get(labels.DATA_GRADE)
        ),
        alerts=alerts,
        alerts_with_runbook=with_runbook,
        responders=sum(1 for lab in ns_labels if lab.get(labels.EMERGENCY_RESPONDER) == "true"),
        drills=_drills(hub),
        levels={v: levels.get(v, 0) for v in LEVEL_LABELS.values()},
        edge_clusters=len(edges),
        edge_clusters_serving=serving,
        districts=len(config.districts),
        districts_with_edge=len(set(config.districts) & edge_divisions),
        figures=figures,
        window_days=WINDOW_DAYS,
    )


def assess(
    stack: str = "dev",
    *,
    prometheus: Prometheus | None = None,
    figures: Figures | None = None,
    now: datetime | None = None,
    kubeconfig: Path | None = None,
) -> Assessment:
    """The maturity self-assessment of `stack` from its live hub.

    `figures`: the city's figures when the caller has them (cityhub report passes its period's); else they
    are read from `prometheus` over the last WINDOW_DAYS; with neither, the problem-resolution and
    satisfaction dimension stays at level 1 (not measured).
    """
    now = now or datetime.now(UTC)
    if figures is None and prometheus is not None:
        figures = window_figures(prometheus, now)
    config = hub_config(stack_document(stack))
    return score(gather(config, figures=figures, now=now, kubeconfig=kubeconfig))


def dashboard_section(prometheus_url: str, kubeconfig: Path, stack: str = "dev") -> dict[str, Any]:
    """What the dashboard (cityhub.dashboard.state.maturity) shows: the assessment of the hub in `kubeconfig`
    with the last WINDOW_DAYS from `prometheus_url` (empty: not measured)."""
    from cityhub.maturity.render import dashboard_dict

    prometheus = Prometheus(prometheus_url) if prometheus_url else None
    return dashboard_dict(assess(stack, prometheus=prometheus, kubeconfig=kubeconfig))
