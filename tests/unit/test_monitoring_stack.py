"""The Monitoring component under Pulumi's mocks: what each `cityhub:monitoring.prometheus` mode makes."""

from __future__ import annotations

import asyncio
from typing import Any

import pulumi
import pytest
import yaml

from components import monitoring_rules
from components.monitoring import Monitoring, MonitoringArgs, mode_of


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.custom:
            self.created.append((args.typ, args.inputs))
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def created(settings: dict[str, object]) -> list[tuple[str, dict[str, Any]]]:
    recorder = Recorder()
    asyncio.set_event_loop(asyncio.new_event_loop())  # Pulumi's mocks need one; asyncio.run() leaves none
    pulumi.runtime.set_mocks(recorder, preview=False)

    @pulumi.runtime.test
    def program() -> None:
        Monitoring("hub", MonitoringArgs(settings=settings, departments=("yingji",)))

    program()
    return recorder.created


def test_with_the_prometheus_operator_rules_and_scrape_are_custom_resources() -> None:
    objs = created({"prometheus": "operator"})
    kinds = {o[1].get("kind") or o[0] for o in objs}
    assert {"PrometheusRule", "ServiceMonitor", "ConfigMap"} <= kinds
    rule = next(o for _, o in objs if o.get("kind") == "PrometheusRule")
    assert rule["spec"]["groups"] == monitoring_rules.groups()
    assert rule["metadata"]["namespace"] == "cityhub-system"
    monitor = next(o for _, o in objs if o.get("kind") == "ServiceMonitor")
    # Every series scraped carries the cluster it came from: the hub and each edge apart in one view.
    # An edge's operator runs on the hub: its metrics Service's cityhub.io/edge label names its cluster.
    assert monitor["spec"]["endpoints"][0]["relabelings"] == [
        {"action": "replace", "targetLabel": "cluster", "replacement": "hub"},
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_service_label_cityhub_io_edge"],
            "regex": "(.+)",
            "targetLabel": "cluster",
            "replacement": "$1",
        },
    ]


def test_a_standalone_prometheus_gets_the_plain_rule_file() -> None:
    objs = created({"prometheus": "standalone", "probeObjective": 0.999})
    ((typ, cm),) = objs
    assert typ == "kubernetes:core/v1:ConfigMap" and cm["metadata"]["name"] == "cityhub-prometheus-rules"
    rules = yaml.safe_load(cm["data"]["cityhub.rules.yaml"])
    fast = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "CityhubProbeBudgetBurnFast"
    )
    assert "> 0.0144" in fast["expr"]  # 14.4 x (1 - 0.999)


def test_no_prometheus_no_objects_and_bad_settings_name_the_field() -> None:
    assert created({}) == []
    with pytest.raises(ValueError, match=r"cityhub:monitoring.prometheus='grafana': needs to be one of"):
        mode_of({"prometheus": "grafana"})
    with pytest.raises(ValueError, match=r"cityhub:monitoring.probeObjective='high': needs to be a float"):
        monitoring_rules.with_overrides(monitoring_rules.RuleParams(), {"probeObjective": "high"})
