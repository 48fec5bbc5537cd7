"""The Grafana dashboard the stack delivers, under Pulumi's mocks: a ConfigMap Grafana's dashboard
sidecar loads (label grafana_dashboard: "1") in the system namespace, or in `grafanaNamespace`, holding the
hub overview with the stack's own objectives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import monitoring_dashboard, monitoring_rules
from components.monitoring import GRAFANA_CONFIGMAP
from components.monitoring_rules import RuleParams
from tests.unit.test_monitoring_stack import created


def grafana_configmaps(settings: dict[str, object]) -> list[dict[str, Any]]:
    return [
        obj
        for typ, obj in created(settings)
        if typ == "kubernetes:core/v1:ConfigMap" and obj["metadata"]["name"] == GRAFANA_CONFIGMAP
    ]


def test_with_the_prometheus_operator_grafanas_sidecar_gets_the_hub_dashboard() -> None:
    (cm,) = grafana_configmaps({"prometheus": "operator", "probeObjective": 0.999})
    meta = cm["metadata"]
    assert meta["namespace"] == "cityhub-system"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "cityhub"
    assert meta["annotations"] == {"grafana_folder": "cityhub"}
    ((name, text),) = cm["data"].items()
    assert name == "cityhub-hub-overview.json"
    board = json.loads(text)
    assert board == monitoring_dashboard.dashboard(RuleParams(probe_objective=0.999))
    titles = [p["title"] for p in board["panels"]]
    assert "Probe availability (30d) vs objective 99.90%" in titles  # the stack's objective, not the default
    assert board["uid"] == "cityhub-hub-overview" and board["templating"]["list"][0]["type"] == "datasource"


def test_without_the_prometheus_operator_no_grafana_dashboard() -> None:
    assert grafana_configmaps({"prometheus": "standalone"}) == []
    assert grafana_configmaps({}) == []


def test_grafana_namespace_puts_the_dashboard_where_grafanas_sidecar_watches() -> None:
    (cm,) = grafana_configmaps({"prometheus": "operator", "grafanaNamespace": "monitoring"})
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    # Only the dashboard moves: the rules stay in the system namespace, the rules are the default ones.
    objs = [o for _, o in created({"prometheus": "operator", "grafanaNamespace": "monitoring"})]
    others = {o["metadata"]["name"]: o["metadata"]["namespace"] for o in objs}
    assert others.pop(GRAFANA_CONFIGMAP) == "monitoring"
    assert set(others.values()) == {"cityhub-system"}  # rules and scrape stay beside the operator
    rule = next(o for o in objs if o.get("kind") == "PrometheusRule")
    assert rule["spec"]["groups"] == monitoring_rules.groups()  # the key changes no rule


def test_a_grafana_namespace_that_is_no_dns_label_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"cityhub:monitoring.grafanaNamespace='Grafana_NS': needs to be"):
        created({"prometheus": "operator", "grafanaNamespace": "Grafana_NS"})
    assert monitoring_rules.with_overrides(RuleParams(), {"grafanaNamespace": "monitoring"}) == RuleParams()
