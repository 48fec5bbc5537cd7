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

NAME = OPERATOR_ACCOUNT
METRICS_PORT = 9464
HEALTH_PORT = 8080
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
    placement: Mapping[str, Any] = field(default_factory=dict)
    """cityhub:systemPlacement as pod spec fields (nodeSelector, tolerations) for the operator's pods."""


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
        if settings.deploy:
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

        def env_list(backends: list[Mapping[str, str]]) -> list[dict[str, str]]:
            merged = {**env}
            for settings_of_backend in backends:
                merged.update(settings_of_backend)
            merged.update(settings.env)
            return [{"name": k, "value": v} for k, v in sorted(merged.items())]

        container_env = pulumi.Output.all(*(pulumi.Output.from_input(e) for e in args.backend_env)).apply(
            env_list
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
        memory_limit = _double(settings.memory)
        pod_labels = {**labels.common(), **APP_LABELS}
        k8s.apps.v1.Deployment(
            f"{name}-operator",
            metadata={"name": NAME, "namespace": account.metadata.namespace, "labels": pod_labels},
            spec={
                "replicas": settings.replicas,
                # Peering keeps a new pod paused until it leads, so pods are replaced one at a time and the
                # old leader hands over as it stops (kopf leaves the peering on SIGTERM).
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "selector": {"matchLabels": APP_LABELS},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {"kubectl.kubernetes.io/default-container": "operator"},
                    },
                    "spec": {
                        "serviceAccountName": account.metadata.name,
                        "priorityClassName": "system-cluster-critical",
                        **args.placement,
                        # A standby on another node survives the leader's node.
                        "affinity": {
                            "podAntiAffinity": {
                                "preferredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        "weight": 100,
                                        "podAffinityTerm": {
                                            "labelSelector": {"matchLabels": APP_LABELS},
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
                        "containers": [
                            {
                                "name": "operator",
                                "image": settings.image,
                                "args": ["python", "-m", "cityhub_operator"],
                                "env": container_env,
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
                                    "limits": {"memory": memory_limit},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": mounts,
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, peering]),
        )
        if settings.replicas > 1:
            # Node drains take one replica at a time, so a standby is always there to take over.
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-operator",
                metadata={"name": NAME, "namespace": account.metadata.namespace, "labels": pod_labels},
                spec={"maxUnavailable": 1, "selector": {"matchLabels": APP_LABELS}},
                opts=child,
            )
        k8s.core.v1.Service(
            f"{name}-operator-metrics",
            metadata={
                "name": f"{NAME}-metrics",
                "namespace": account.metadata.namespace,
                "labels": pod_labels,
            },
            spec={
                "selector": APP_LABELS,
                "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
            },
            opts=child,
        )


def _double(quantity: str) -> str:
    """Twice a memory quantity (512Mi → 1024Mi): the limit leaves headroom for a burst of reconciles."""
    digits = "".join(c for c in quantity if c.isdigit())
    unit = quantity[len(digits) :]
    return f"{int(digits) * 2}{unit}" if digits and quantity.startswith(digits) else quantity
