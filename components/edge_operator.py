"""The operator serving an edge cluster (多级贯通), as the stack runs it: on the hub, in the system namespace
beside the backends, watching the edge's API server with the edge's own `cityhub-operator` ServiceAccount.

Why on the hub and not on the edge: the operator holds the backends' admin credentials (Keycloak's admin, the
PostGIS owner, the messaging master secret). On the hub they never leave the hub's system namespace; an edge —
a street office's machine room — gets only what its departments' requests produce and its own nats-server's
leaf credentials. What crosses the line: the edge's API server (reached at cityhub:clusters[].apiServer with a
token of that ServiceAccount, which the stack makes on the edge) and, for types with an edge part, that part's
own Service (messaging-uplink). Karmada's push mode makes the same choice for the same reason.

    cityhub-operator-<edge>             Deployment on the hub: the operator image, the hub's backends'
                                        settings plus the edge parts' (CITYHUB_NATS_EDGE*), KUBECONFIG = the
                                        edge's; no token of the hub's (automountServiceAccountToken: false)
    cityhub-operator-<edge>-kubeconfig  Secret on the hub: server, CA and token of the edge's ServiceAccount
    cityhub-operator-<edge>-metrics     Service on the hub (app.kubernetes.io/name=cityhub-operator, so the
                                        hub's ServiceMonitor scrapes it; cityhub.io/edge names the edge)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from cityhub.config_model import OperatorConfig
from cityhub_api import labels
from components.operator_workload import Workload, env_list, operator_workload

MOUNT = "/var/run/cityhub/edge"
TOKEN_SECRET = "cityhub-operator-token"
"""The edge's Secret of type kubernetes.io/service-account-token for its cityhub-operator ServiceAccount."""


@dataclass(frozen=True)
class EdgeLink:
    """What the hub needs to run an edge's operator."""

    edge: str
    api_server: str
    access: pulumi.Input[Mapping[str, str]]
    """The data of the edge's TOKEN_SECRET (base64 `token` and `ca.crt`), filled by the edge's token
    controller; pulumi-kubernetes waits for it."""
    env: Sequence[pulumi.Input[Mapping[str, str]]] = field(default_factory=tuple)
    """The edge parts' settings (types' EdgeBackend.operator_env)."""


def kubeconfig(edge: str, server: str, data: Mapping[str, str]) -> str:
    token = base64.b64decode(data["token"]).decode()
    user = "cityhub-operator"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": edge, "cluster": {"server": server, "certificate-authority-data": data["ca.crt"]}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": edge, "context": {"cluster": edge, "user": user}}],
            "current-context": edge,
        }
    )


def edge_operator(
    name: str,
    link: EdgeLink,
    *,
    settings: OperatorConfig,
    namespace: pulumi.Input[str],
    service_account: pulumi.Input[str],
    env: Mapping[str, str],
    backend_env: Sequence[pulumi.Input[Mapping[str, str]]],
    volumes: Sequence[Mapping[str, Any]],
    mounts: Sequence[Mapping[str, Any]],
    init_containers: Sequence[Mapping[str, Any]],
    placement: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> None:
    """The edge's operator on the hub: `env` and `backend_env` are the hub operator's; the edge's parts and
    its kubeconfig are added."""
    workload_name = f"cityhub-operator-{link.edge}"
    secret = k8s.core.v1.Secret(
        f"{name}-operator-{link.edge}-kubeconfig",
        metadata={"name": f"{workload_name}-kubeconfig", "namespace": namespace, "labels": labels.common()},
        string_data=pulumi.Output.secret(
            pulumi.Output.from_input(link.access).apply(
                lambda data: {"kubeconfig": kubeconfig(link.edge, link.api_server, data)}
            )
        ),
        opts=opts,
    )

    every = [*backend_env, *link.env]
    kubeconfig_env = {"KUBECONFIG": f"{MOUNT}/kubeconfig"}
    container_env = pulumi.Output.all(*(pulumi.Output.from_input(e) for e in every)).apply(
        lambda parts: env_list(env, parts, settings.env, kubeconfig_env)
    )
    pod_labels = {labels.NAME: workload_name, labels.COMPONENT: "operator", labels.EDGE: link.edge}
    workload = Workload(
        name=workload_name,
        namespace=namespace,
        service_account=service_account,
        pod_labels=pod_labels,
        env=container_env,
        volumes=[*volumes, {"name": "edge", "secret": {"secretName": secret.metadata.name}}],
        mounts=[*mounts, {"name": "edge", "mountPath": MOUNT, "readOnly": True}],
        init_containers=init_containers,
        placement=placement,
        service_labels={labels.EDGE: link.edge},
        service_account_token=False,
    )
    operator_workload(f"{name}-operator-{link.edge}", workload, settings, opts)
