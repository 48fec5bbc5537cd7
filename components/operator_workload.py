"""The operator's pods as the stack runs them: a Deployment (leader election through kopf peering), its
PodDisruptionBudget and the metrics Service — for the hub's operator (components/component_operator.py) and
for each edge cluster's, which runs on the hub too, beside the backends (components/edge_operator.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import OperatorConfig
from cityhub_api import labels

METRICS_PORT = 9464
HEALTH_PORT = 8080
SCRAPED_NAME = "cityhub-operator"
"""app.kubernetes.io/name of every operator's metrics Service: the ServiceMonitor's selector and the job."""


@dataclass(frozen=True)
class OperatorPod:
    """What a type's backend adds to the operator's pods beside its Secret and env (a backend's optional
    `operator_pod`): init containers that prepare files its driver reads (inference: the model catalog from
    the models image), the volumes they fill, and where the operator container mounts those."""

    init_containers: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[Mapping[str, Any], ...] = ()
    mounts: tuple[Mapping[str, Any], ...] = ()

    def __add__(self, other: OperatorPod) -> OperatorPod:
        return OperatorPod(
            self.init_containers + other.init_containers,
            self.volumes + other.volumes,
            self.mounts + other.mounts,
        )


@dataclass(frozen=True)
class Workload:
    name: str
    """The Deployment's name (cityhub-operator, cityhub-operator-<edge>); the metrics Service's is
    <name>-metrics."""
    namespace: pulumi.Input[str]
    service_account: pulumi.Input[str]
    pod_labels: Mapping[str, str]
    """Selected by the Deployment, its PodDisruptionBudget and the metrics Service."""
    env: pulumi.Input[Sequence[Mapping[str, str]]]
    volumes: Sequence[Mapping[str, Any]] = ()
    mounts: Sequence[Mapping[str, Any]] = ()
    init_containers: Sequence[Mapping[str, Any]] = ()
    placement: Mapping[str, Any] = field(default_factory=dict)
    service_labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels of the metrics Service (an edge operator's `cityhub.io/edge`)."""
    service_account_token: bool = True
    """False for an edge's operator: without the hub's token it logs in to the edge through $KUBECONFIG (kopf
    and the kubernetes client try the in-cluster account first) and holds no right on the hub's API."""


def env_list(
    base: Mapping[str, str],
    parts: Sequence[Mapping[str, str]],
    overrides: Mapping[str, str],
    last: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The operator container's env: `base`, each backend's (or edge part's) settings, the stack's
    cityhub:operator.env overrides, then `last` (what no override may change, e.g. an edge's KUBECONFIG)."""
    merged = {**base}
    for part in parts:
        merged.update(part)
    merged.update(overrides)
    merged.update(last or {})
    return [{"name": k, "value": v} for k, v in sorted(merged.items())]


def _init_containers(workload: Workload) -> dict[str, Any]:
    return {"initContainers": list(workload.init_containers)} if workload.init_containers else {}


def operator_workload(
    resource: str,
    workload: Workload,
    settings: OperatorConfig,
    opts: pulumi.ResourceOptions,
    depends_on: Sequence[pulumi.Resource] = (),
) -> None:
    pod_labels = {**labels.common(), **workload.pod_labels}
    k8s.apps.v1.Deployment(
        resource,
        metadata={"name": workload.name, "namespace": workload.namespace, "labels": pod_labels},
        spec={
            "replicas": settings.replicas,
            # Peering keeps a new pod paused until it leads, so pods are replaced one at a time and the
            # old leader hands over as it stops (kopf leaves the peering on SIGTERM).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": dict(workload.pod_labels)},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {"kubectl.kubernetes.io/default-container": "operator"},
                },
                "spec": {
                    "serviceAccountName": workload.service_account,
                    **({} if workload.service_account_token else {"automountServiceAccountToken": False}),
                    "priorityClassName": "system-cluster-critical",
                    **workload.placement,
                    # A standby on another node survives the leader's node.
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": dict(workload.pod_labels)},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    **_init_containers(workload),
                    "containers": [
                        {
                            "name": "operator",
                            "image": settings.image,
                            "args": ["python", "-m", "cityhub_operator"],
                            "env": workload.env,
                            "ports": [
                                {"name": "metrics", "containerPort": METRICS_PORT},
                                {"name": "health", "containerPort": HEALTH_PORT},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "health"},
                                "periodSeconds": 20,
                                "timeoutSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": settings.cpu, "memory": settings.memory},
                                "limits": {"memory": _double(settings.memory)},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": list(workload.mounts),
                        }
                    ],
                    "volumes": list(workload.volumes),
                },
            },
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(depends_on))),
    )
    if settings.replicas > 1:
        # Node drains take one replica at a time, so a standby is always there to take over.
        k8s.policy.v1.PodDisruptionBudget(
            resource,
            metadata={"name": workload.name, "namespace": workload.namespace, "labels": pod_labels},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": dict(workload.pod_labels)}},
            opts=opts,
        )
    k8s.core.v1.Service(
        f"{resource}-metrics",
        metadata={
            "name": f"{workload.name}-metrics",
            "namespace": workload.namespace,
            "labels": {**pod_labels, labels.NAME: SCRAPED_NAME, **workload.service_labels},
        },
        spec={
            "selector": dict(workload.pod_labels),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        },
        opts=opts,
    )


def _double(quantity: str) -> str:
    """Twice a memory quantity (512Mi → 1024Mi): the limit leaves headroom for a burst of reconciles."""
    digits = "".join(c for c in quantity if c.isdigit())
    unit = quantity[len(digits) :]
    return f"{int(digits) * 2}{unit}" if digits and quantity.startswith(digits) else quantity
