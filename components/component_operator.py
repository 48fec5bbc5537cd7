"""The component operator as the stack installs it: CRDs generated from the schemas, the catalog from each
type's catalog.yaml, least-privilege RBAC, and (with `deploy`) the operator's Deployment and metrics Service.

Availability: `replicas` pods elect a leader through kopf peering (the ClusterKopfPeering PEERING_NAME; kopf
ships no CRD, so the stack installs kopf's own definition): the live pod of highest priority reconciles, the
others stand by, paused, and the next takes over once the leader's keep-alive lapses
(CITYHUB_PEERING_LIFETIME) or at once when it stops cleanly. So pods may be replaced one at a time.

The module is not called `operator` so it can never shadow the standard library's `operator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import OperatorConfig
from cityhub_api import labels
from cityhub_api.api import API_VERSION, FEEDBACK_PLURAL, GROUP, OFFERING_KIND, OFFERING_PLURAL
from cityhub_api.catalog import Offering
from cityhub_api.crds import install_set
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.registry import component_types
from components.backends import BACKENDS_MOUNT, OPERATOR_ACCOUNT, OPERATOR_LABELS
from components.edge_operator import TOKEN_SECRET, EdgeLink, edge_operator
from components.operator_workload import (
    HEALTH_PORT,
    METRICS_PORT,
    OperatorPod,
    Workload,
    env_list,
    operator_workload,
)

NAME = OPERATOR_ACCOUNT
APP_LABELS = OPERATOR_LABELS
PEERING_NAME = NAME
"""The ClusterKopfPeering the operator's replicas elect their leader in (CITYHUB_PEERING)."""
PEERING_GROUP = "kopf.dev"


def peering_crd() -> dict[str, Any]:
    """kopf's ClusterKopfPeering CRD, as kopf defines it (peering.yaml in kopf's repository): each replica
    keeps itself alive in the object's status (identity → priority, lifetime, lastseen)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"clusterkopfpeerings.{PEERING_GROUP}"},
        "spec": {
            "scope": "Cluster",
            "group": PEERING_GROUP,
            "names": {
                "kind": "ClusterKopfPeering",
                "plural": "clusterkopfpeerings",
                "singular": "clusterkopfpeering",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }


@dataclass(frozen=True)
class ComponentOperatorArgs:
    settings: OperatorConfig
    """The stack's `cityhub:operator`."""
    offerings: tuple[Offering, ...] = ()
    """The catalog to publish (validated by cityhub.catalog)."""
    department_namespaces: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Department slug → namespace: the only namespaces where the operator may write Secrets."""
    namespace: pulumi.Input[str] = SYSTEM_NAMESPACE
    """Where the operator runs."""
    backend_env: Sequence[pulumi.Input[Mapping[str, str]]] = ()
    """Driver settings of the backends the stack deploys (cityhub:operator.env overrides them)."""
    backend_mounts: Mapping[str, str] = field(default_factory=dict)
    """Type name → the Secret (in the operator's namespace) with its driver's credentials, mounted at
    BACKENDS_MOUNT/<type>."""
    backend_pod: OperatorPod = field(default_factory=OperatorPod)
    """What the deployed backends add to the operator's pods (init containers, their volumes and mounts)."""
    placement: Mapping[str, Any] = field(default_factory=dict)
    """cityhub:systemPlacement as pod spec fields (nodeSelector, tolerations) for the operator's pods."""
    edge: str | None = None
    """On an edge cluster: its name. Its operator runs on the hub (components/edge_operator.py): here the
    stack makes the ServiceAccount's token for it, and no Deployment."""
    edge_links: Sequence[EdgeLink] = ()
    """On the hub: the edges whose operators run here."""


def operator_rules(plurals: list[str]) -> list[dict[str, Any]]:
    """The operator's cluster-wide rules. Secrets are not here: they are granted per department namespace."""
    return [
        # Watch every department's requests; patch them for finalizers and kopf's progress annotations.
        {"apiGroups": [GROUP], "resources": plurals, "verbs": ["get", "list", "watch", "patch"]},
        # Conditions, endpoints and observedGeneration: only the operator writes status.
        {"apiGroups": [GROUP], "resources": [f"{p}/status" for p in plurals], "verbs": ["get", "patch"]},
        # The catalog is read (in-memory index), never written: the stack publishes it. Departments'
        # feedback ratings are read for the satisfaction metrics.
        {
            "apiGroups": [GROUP],
            "resources": [OFFERING_PLURAL, FEEDBACK_PLURAL],
            "verbs": ["get", "list", "watch"],
        },
        # Events on requests tell a department what happened (kopf only creates core/v1 events).
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        # kopf notices CRDs installed after it started (a new component type) by watching them.
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        # Leader election (kopf peering): see every replica's keep-alive, write its own into the operator's
        # peering object only (list and watch cannot be narrowed by name).
        {"apiGroups": [PEERING_GROUP], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch"]},
        {
            "apiGroups": [PEERING_GROUP],
            "resources": ["clusterkopfpeerings"],
            "resourceNames": [PEERING_NAME],
            "verbs": ["get", "patch"],
        },
    ]


SECRET_RULES = [
    # Each request's credentials Secret: created, updated and deleted by the operator; read to compare
    # before writing (so an unchanged Secret is not rewritten) and to check it is the request's own.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update", "patch", "delete"]},
    # The department's quota (e.g. requests.nvidia.com/gpu), read to refuse requests that cannot fit.
    {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list"]},
]


class ComponentOperator(pulumi.ComponentResource):
    """What departments' component requests need from the platform: the API (CRDs; kept on `pulumi destroy`,
    because deleting a CRD deletes every request and would orphan their backend objects), the unified
    catalog, RBAC, and the operator itself."""

    crd_names: list[str]

    def __init__(
        self, name: str, args: ComponentOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:operator:ComponentOperator", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        served = set(settings.components) or set(component_types())
        crds = []
        api = install_set()
        for crd in api:
            crds.append(
                k8s.apiextensions.v1.CustomResourceDefinition(
                    f"{name}-crd-{crd['metadata']['name']}",
                    metadata={
                        "name": crd["metadata"]["name"],
                        "labels": labels.common(),
                        "annotations": {labels.PATCH_FORCE: "true"},
                    },
                    spec=crd["spec"],
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
                )
            )
        self.crd_names = [c["metadata"]["name"] for c in api]
        for offering in args.offerings:
            k8s.apiextensions.CustomResource(
                f"{name}-offering-{offering.name}",
                api_version=API_VERSION,
                kind=OFFERING_KIND,
                metadata={
                    "name": offering.name,
                    "labels": labels.common(),
                    "annotations": {labels.PATCH_FORCE: "true"},
                },
                spec=offering.spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=crds),
            )

        plurals = sorted(t.plural for t in component_types().values() if t.name in served)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-operator",
            metadata={"name": NAME, "namespace": args.namespace, "labels": {**labels.common(), **APP_LABELS}},
            opts=child,
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-operator",
            metadata={"name": NAME, "labels": labels.common()},
            rules=operator_rules(plurals),
            opts=child,
        )
        subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": account.metadata.namespace}]
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-operator",
            metadata={"name": NAME, "labels": labels.common()},
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role.metadata.name,
            },
            subjects=subject,
            opts=child,
        )
        secrets_role = k8s.rbac.v1.ClusterRole(
            f"{name}-operator-secrets",
            metadata={"name": f"{NAME}-secrets", "labels": labels.common()},
            rules=SECRET_RULES,
            opts=child,
        )
        for slug, namespace in sorted(args.department_namespaces.items()):
            # A RoleBinding per department namespace: the operator cannot touch Secrets anywhere else
            # (not in cityhub-system, not in kube-system).
            k8s.rbac.v1.RoleBinding(
                f"{name}-operator-secrets-{slug}",
                metadata={"name": f"{NAME}-secrets", "namespace": namespace, "labels": labels.common()},
                role_ref={
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": secrets_role.metadata.name,
                },
                subjects=subject,
                opts=child,
            )
        self.edge_access: pulumi.Output[Mapping[str, str]] | None = None
        """On an edge with `deploy`: the data of its operator's token Secret, for the hub's EdgeLink."""
        if settings.deploy and args.edge is not None:
            self._peering(name)
            token = k8s.core.v1.Secret(
                f"{name}-operator-token",
                metadata={
                    "name": TOKEN_SECRET,
                    "namespace": account.metadata.namespace,
                    "labels": labels.common(),
                    "annotations": {"kubernetes.io/service-account.name": account.metadata.name},
                },
                type="kubernetes.io/service-account-token",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
            )
            self.edge_access = token.data
        elif settings.deploy:
            self._deploy(name, args, sorted(served), account, self._peering(name))
        self.register_outputs({"crds": self.crd_names, "offerings": [o.name for o in args.offerings]})

    def _peering(self, name: str) -> pulumi.Resource:
        """The peering CRD (kept on destroy, like ours: another kopf operator may use it) and the object."""
        crd = peering_crd()
        definition = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-crd-{crd['metadata']['name']}",
            metadata={
                "name": crd["metadata"]["name"],
                "labels": labels.common(),
                "annotations": {labels.PATCH_FORCE: "true"},
            },
            spec=crd["spec"],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        return k8s.apiextensions.CustomResource(
            f"{name}-peering",
            api_version=f"{PEERING_GROUP}/v1",
            kind="ClusterKopfPeering",
            metadata={"name": PEERING_NAME, "labels": labels.common()},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[definition]),
        )

    def _deploy(
        self,
        name: str,
        args: ComponentOperatorArgs,
        served: list[str],
        account: k8s.core.v1.ServiceAccount,
        peering: pulumi.Resource,
    ) -> None:
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        env = {
            "CITYHUB_COMPONENTS": ",".join(served),
            "CITYHUB_LOG_FORMAT": "json",
            "CITYHUB_LOG_LEVEL": settings.log_level,
            "CITYHUB_DRIFT_INTERVAL": str(settings.drift_interval),
            "CITYHUB_WORKER_LIMIT": str(settings.worker_limit),
            "CITYHUB_METRICS_PORT": str(METRICS_PORT),
            "CITYHUB_HEALTH_PORT": str(HEALTH_PORT),
            "CITYHUB_PEERING": PEERING_NAME,
        }

        container_env = pulumi.Output.all(*(pulumi.Output.from_input(e) for e in args.backend_env)).apply(
            lambda parts: env_list(env, parts, settings.env)
        )
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        # One directory per type (<mount>/<type>/<key>): types' key names cannot collide.
        for type_name, secret in sorted(args.backend_mounts.items()):
            volumes.append({"name": f"backend-{type_name}", "secret": {"secretName": secret}})
            mounts.append(
                {
                    "name": f"backend-{type_name}",
                    "mountPath": f"{BACKENDS_MOUNT}/{type_name}",
                    "readOnly": True,
                }
            )
        if settings.backend_secret:
            volumes.append({"name": "backend-extra", "secret": {"secretName": settings.backend_secret}})
            mounts.append({"name": "backend-extra", "mountPath": f"{BACKENDS_MOUNT}/extra", "readOnly": True})
        volumes.extend(args.backend_pod.volumes)
        mounts.extend(args.backend_pod.mounts)
        workload = Workload(
            name=NAME,
            namespace=account.metadata.namespace,
            service_account=account.metadata.name,
            pod_labels=APP_LABELS,
            env=container_env,
            volumes=volumes,
            mounts=mounts,
            init_containers=args.backend_pod.init_containers,
            placement=args.placement,
        )
        operator_workload(f"{name}-operator", workload, settings, child, depends_on=[account, peering])
        for link in args.edge_links:
            edge_operator(
                name,
                link,
                settings=settings,
                namespace=account.metadata.namespace,
                service_account=account.metadata.name,
                env=env,
                backend_env=args.backend_env,
                volumes=volumes,
                mounts=mounts,
                init_containers=args.backend_pod.init_containers,
                placement=args.placement,
                opts=child,
            )
