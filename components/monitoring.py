"""The hub's monitoring: the SLI recording rules and alerts of components/monitoring_rules.py, delivered to
whichever Prometheus the city runs, chosen by the stack's `cityhub:monitoring.prometheus`:

    operator     a PrometheusRule and a ServiceMonitor (the cluster has the prometheus-operator CRDs), the
                 plain rule file in a ConfigMap, and the Grafana dashboard (monitoring_dashboard.py) in
                 ConfigMap cityhub-grafana-dashboard labelled grafana_dashboard: "1", the label Grafana's
                 dashboard sidecar (kube-prometheus-stack's default) loads dashboards from
    standalone   the plain rule file in ConfigMap cityhub-prometheus-rules (mount it into Prometheus and
                 list it under rule_files; scrape the operator's Service cityhub-operator-metrics:9464
                 with job name cityhub-operator and the static label cluster: <the cluster's name>, and
                 each edge's, cityhub-operator-<edge>-metrics, with cluster: <edge>)
    none         nothing (the default: a stack without Prometheus gets no orphan objects)

`grafanaNamespace` puts that ConfigMap in the namespace Grafana's sidecar watches (default: the system
namespace); the stack does not create that namespace, Grafana's installation does.

Other keys of `cityhub:monitoring` tune the SLOs (monitoring_rules.with_overrides): probeObjective,
provisioningObjective, provisioningThresholdSeconds, runbookBase, platformDepartment, interval.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import labels
from cityhub_api.labels import SYSTEM_NAMESPACE
from components import monitoring_dashboard, monitoring_rules

EDGE_SERVICE_LABEL = "__meta_kubernetes_service_label_" + "".join(
    c if c.isalnum() else "_" for c in labels.EDGE
)
"""Prometheus's name for the scraped Service's cityhub.io/edge label."""
MODES = ("operator", "standalone", "none")
RULES_CONFIGMAP = "cityhub-prometheus-rules"
GRAFANA_CONFIGMAP = "cityhub-grafana-dashboard"
GRAFANA_SIDECAR_LABEL = ("grafana_dashboard", "1")
"""The label Grafana's k8s-sidecar watches for dashboards (kube-prometheus-stack: sidecar.dashboards.label and
labelValue); its searchNamespace must include the monitoring namespace (or be ALL)."""
GRAFANA_FOLDER_ANNOTATION = ("grafana_folder", "cityhub")
"""The folder the dashboard goes to, when the sidecar's folderAnnotation is grafana_folder."""
GRAFANA_NAMESPACE_KEY = "grafanaNamespace"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A namespace name (RFC 1123 label), as in the schema's monitoring.grafanaNamespace."""


@dataclass(frozen=True)
class MonitoringArgs:
    settings: dict[str, object] = field(default_factory=dict)
    """The stack's `cityhub:monitoring` object: `prometheus` (operator, standalone, none), `grafanaNamespace`
    and SLO tuning."""
    departments: tuple[str, ...] = ()
    """Department slugs. Rules are per department by label, so a new department needs no new rule."""
    namespace: pulumi.Input[str] = SYSTEM_NAMESPACE
    cluster: str = "hub"
    """The cluster's name in the stack (`cityhub:clusters`): every series scraped from it carries
    `cluster="<name>"`, so one Prometheus (or a federation of them) tells the hub and each edge apart."""


def mode_of(settings: dict[str, object]) -> str:
    mode = str(settings.get("prometheus", "none"))
    if mode not in MODES:
        raise ValueError(
            f"Invalid cityhub:monitoring.prometheus={mode!r}: needs to be one of {', '.join(MODES)}"
        )
    return mode


def grafana_namespace_of(settings: dict[str, object], default: pulumi.Input[str]) -> pulumi.Input[str]:
    """Where the Grafana dashboard ConfigMap goes: `grafanaNamespace` when set (cities often run Grafana's
    sidecar watching only Grafana's own namespace), else `default` (the system namespace, as before)."""
    value = settings.get(GRAFANA_NAMESPACE_KEY)
    if value is None:
        return default
    if not isinstance(value, str) or not DNS_LABEL.match(value):
        raise ValueError(
            f"Invalid cityhub:monitoring.{GRAFANA_NAMESPACE_KEY}={value!r}: needs to be a namespace name "
            "(a DNS label: lowercase letters, digits and '-', at most 63), e.g. monitoring"
        )
    return value


def grafana_dashboard(
    name: str,
    params: monitoring_rules.RuleParams,
    namespace: pulumi.Input[str],
    common: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.ConfigMap:
    """The hub overview as a ConfigMap Grafana's sidecar picks up: same panels as
    monitoring/dashboards/hub-overview.json, with this stack's objectives."""
    key, value = GRAFANA_SIDECAR_LABEL
    folder_key, folder = GRAFANA_FOLDER_ANNOTATION
    board = monitoring_dashboard.dashboard(params)
    return k8s.core.v1.ConfigMap(
        f"{name}-grafana-dashboard",
        metadata={
            "name": GRAFANA_CONFIGMAP,
            "namespace": namespace,
            "labels": {**common, key: value},
            "annotations": {folder_key: folder},
        },
        data={f"{board['uid']}.json": json.dumps(board, ensure_ascii=False, indent=2) + "\n"},
        opts=opts,
    )


class Monitoring(pulumi.ComponentResource):
    """Prometheus rules (and, with the prometheus-operator, the operator's scrape) for the hub."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:monitoring:Monitoring", name, {}, opts)
        mode = mode_of(args.settings)
        grafana_namespace = grafana_namespace_of(args.settings, args.namespace)  # refused in any mode
        params = monitoring_rules.with_overrides(monitoring_rules.RuleParams(), args.settings)
        child = pulumi.ResourceOptions(parent=self)
        common = {**labels.common(), labels.PART_OF: "cityhub"}
        self.mode = mode
        if mode != "none":
            k8s.core.v1.ConfigMap(
                f"{name}-prometheus-rules",
                metadata={"name": RULES_CONFIGMAP, "namespace": args.namespace, "labels": common},
                data={"cityhub.rules.yaml": monitoring_rules.rules_yaml(params)},
                opts=child,
            )
        if mode == "operator":
            rule = monitoring_rules.prometheus_rule(params, "", common)
            k8s.apiextensions.CustomResource(
                f"{name}-prometheus-rule",
                api_version=rule["apiVersion"],
                kind=rule["kind"],
                metadata={**rule["metadata"], "namespace": args.namespace},
                spec=rule["spec"],
                opts=child,
            )
            grafana_dashboard(name, params, grafana_namespace, common, child)
            monitor = monitoring_rules.service_monitor(params, "", common)
            monitor["spec"]["namespaceSelector"] = {"matchNames": [args.namespace]}
            for endpoint in monitor["spec"]["endpoints"]:
                endpoint["relabelings"] = [
                    {"action": "replace", "targetLabel": "cluster", "replacement": args.cluster},
                    # An edge's operator runs on the hub (components/edge_operator.py): its series are the
                    # edge's, named by its metrics Service's cityhub.io/edge label.
                    {
                        "action": "replace",
                        "sourceLabels": [EDGE_SERVICE_LABEL],
                        "regex": "(.+)",
                        "targetLabel": "cluster",
                        "replacement": "$1",
                    },
                ]
            k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version=monitor["apiVersion"],
                kind=monitor["kind"],
                metadata={**monitor["metadata"], "namespace": args.namespace},
                spec=monitor["spec"],
                opts=child,
            )
        self.register_outputs({"mode": mode})
