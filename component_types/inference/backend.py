"""The inference backend in a cluster (cityhub:backends.deploy includes inference): the gateway, its routes,
the model store, and what the operator's driver needs to run model servers.

In the hub's system namespace (`args.namespace`, where the front door Service `inference` is):
    inference-gateway       Deployment (CPU pool) of `python -m component_types.inference.gateway` from the
                            operator's image: checks departments' API keys, enforces requestsPerMinute (429),
                            proxies KServe V2 calls to the model servers. Its pods carry the front door's
                            labels and serve its target port (8090), so the front door selects them
    inference-routes        ConfigMap the gateway mounts as its route files; its data is the operator's
                            (the driver writes routes; Pulumi ignores changes to it)
    cityhub-inference-backend   Secret `secret`: the master secret departments' API keys derive from
                            (args.key("inference")); the operator mounts it at args.mount

In the GPU inference pool's namespace (`args.pools[gpu-inference]`, else the system namespace), where the
driver creates one model server per endpoint (CITYHUB_INFERENCE_MODE=kubernetes):
    cityhub-models          PersistentVolumeClaim holding the model store, mounted read-only by model servers
    inference-models-*      Job (with `modelsImage`): copies the models image's store into cityhub-models, as
                            the model servers' user; a new image makes a new Job (its tag names its content).
                            It adds and updates models and removes none (a served model stays)
    inference-model-servers NetworkPolicy: model servers take ingress from the gateway's pods only
    cityhub-operator-inference  Role + RoleBinding: the operator manages model servers there, and nowhere else
and, when that is the GPU pool's own namespace (the system namespace has its own default-deny policy and
hosts other backends):
    inference-default-deny  NetworkPolicy: no ingress to the namespace's pods but what the policy above allows
    Pod Security labels     `restricted` enforced on the namespace (a NamespacePatch: components/gpu_pool.py
                            creates it); the driver's model servers are restricted-compliant (manifests.py)

With `modelsImage` the operator's pods also get an init container from it that copies the store's catalog
(the model.json files) to CATALOG_MOUNT, where the driver reads which models exist (operator_pod).
Model servers of CPU plans and the store's Job run where `serverPlacement` says (default the CPU pool).

The gateway runs where cityhub:systemPlacement says (default the CPU pool), as a non-root user with a
read-only root filesystem and no capabilities, and is told how many replicas run (`--replicas`): each admits
requestsPerMinute // replicas of an endpoint's calls.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import labels
from component_types.inference import naming
from component_types.inference.gateway_limits import GatewayLimits
from components.backends import OPERATOR_ACCOUNT, BackendArgs
from components.operator_workload import OperatorPod

OPERATOR_ROLE = "cityhub-operator-inference"
MODEL_SERVERS_POLICY = "inference-model-servers"
DEFAULT_DENY_POLICY = "inference-default-deny"
POD_SECURITY_LEVEL = "restricted"
GATEWAY_UID = 65532
"""The operator image's user (operator/Dockerfile: USER 65532); the gateway runs from that image."""
STORE_UID = 1000
"""The model servers' user (driver/manifests.py MLSERVER_UID): the store's Job writes the files as it."""
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
COPY_CATALOG = (
    'for f in */model.json; do [ -f "$f" ] || continue; mkdir -p "$0/${f%/model.json}" && cp "$f" "$0/$f" '
    "|| exit 1; done; ls \"$0\""
)
"""Run in the models image's store by `sh -c COPY_CATALOG <target>`: only the catalog, not the model files."""
CRUD = ["get", "list", "create", "update", "patch", "delete"]
MODEL_SERVER_RULES: list[dict[str, Any]] = [
    # One Deployment + Service per endpoint (or a KServe InferenceService where KServe runs).
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": CRUD},
    {"apiGroups": [""], "resources": ["services"], "verbs": CRUD},
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": CRUD},
    # The pool's scheduling (ConfigMap gpu-scheduling, from components/gpu_pool.py) and the pool's quota.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list"]},
]
ROUTES_RULES: list[dict[str, Any]] = [
    # The gateway's routes and nothing else of the system namespace (the stack creates the ConfigMap).
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [naming.ROUTES_CONFIGMAP],
        "verbs": ["get", "update", "patch"],
    },
]
GATEWAY_RULES: list[dict[str, Any]] = [
    # The gateway watches its routes (gateway_routes.py) and reads nothing else: a list/watch narrowed by
    # fieldSelector metadata.name is authorized against resourceNames.
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [naming.ROUTES_CONFIGMAP],
        "verbs": ["get", "list", "watch"],
    },
]


class Backend(pulumi.ComponentResource):
    """The inference gateway, its routes, the model store claim, the model servers' fence, the operator's
    Secret and permissions."""

    operator_env: pulumi.Output[dict[str, str]]
    operator_pod: OperatorPod

    def __init__(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:InferenceBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        system = args.namespace
        servers = args.pools.get(labels.GPU_POOL, args.namespace)
        settings = args.settings
        image = str(settings.get("mlserverImage") or naming.MLSERVER_IMAGE)
        models_image = str(settings.get("modelsImage") or "")
        server_placement = dict(settings.get("serverPlacement") or naming.CPU_SCHEDULING)

        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.secret_name, namespace=system, labels=args.labels(args.secret_name)
            ),
            string_data={naming.SECRET_KEY: args.key("inference")},
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-routes",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=naming.ROUTES_CONFIGMAP, namespace=system, labels=args.labels(naming.ROUTES_CONFIGMAP)
            ),
            data={},
            # The operator adds and removes routes: Pulumi creates the ConfigMap and leaves its data alone.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["data"]),
        )
        self._gateway(name, args, int(settings.get("gatewayReplicas", 2)))
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=naming.MODELS_PVC,
                namespace=servers,
                labels=args.labels(naming.MODELS_PVC),
                annotations={labels.SKIP_AWAIT: "true"},
            ),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=[str(settings.get("modelsAccessMode", "ReadOnlyMany"))],
                storage_class_name=args.storage_class,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                    requests={"storage": str(settings.get("modelsSize", "20Gi"))}
                ),
            ),
            opts=child,
        )
        if models_image:
            self._fill_store(name, args, servers, models_image, server_placement)
        self.operator_pod = self._catalog(models_image)
        self._model_servers_policy(name, args, servers)
        if labels.GPU_POOL in args.pools:
            self._fence_pool_namespace(name, args, servers)
        self._operator_role(f"{name}-operator", OPERATOR_ROLE, args, servers, MODEL_SERVER_RULES)
        self._operator_role(f"{name}-operator-routes", f"{OPERATOR_ROLE}-routes", args, system, ROUTES_RULES)

        door = args.ctype.front_door
        self.operator_env = pulumi.Output.all(system, servers).apply(
            lambda ns: {
                "CITYHUB_INFERENCE_MODE": "kubernetes",
                "CITYHUB_INFERENCE_NAMESPACE": ns[1],
                "CITYHUB_INFERENCE_GATEWAY_URL": f"http://{door.host(ns[0])}:{door.port}",
                "CITYHUB_INFERENCE_SECRET_FILE": f"{args.mount}/{naming.SECRET_KEY}",
                "CITYHUB_INFERENCE_ROUTES_CONFIGMAP": naming.ROUTES_CONFIGMAP,
                **({"CITYHUB_INFERENCE_ROUTES_NAMESPACE": ns[0]} if ns[0] != ns[1] else {}),
                "CITYHUB_INFERENCE_MODELS_PVC": naming.MODELS_PVC,
                "CITYHUB_INFERENCE_IMAGE": image,
                **({"CITYHUB_INFERENCE_MODELS_DIR": naming.CATALOG_MOUNT} if models_image else {}),
                **(
                    {"CITYHUB_INFERENCE_CPU_SCHEDULING": json.dumps(server_placement, sort_keys=True)}
                    if "serverPlacement" in settings
                    else {}
                ),
            }
        )
        self.register_outputs({"operator_env": self.operator_env})

    def gateway_selector(self, args: BackendArgs) -> dict[str, str]:
        """The gateway's pods among the front door's (the Deployment's selector, the policy's peer)."""
        return {**args.ctype.front_door.selector, labels.NAME: naming.GATEWAY}

    def _gateway(self, name: str, args: BackendArgs, replicas: int) -> None:
        port = args.ctype.front_door.target_port
        account = self._gateway_account(name, args)
        container = k8s.core.v1.ContainerArgs(
            name="gateway",
            image=args.operator_image,
            command=["python", "-m", naming.GATEWAY_MODULE],
            # --replicas: the rate limit is per replica (gateway_limits.py); the other limits keep their
            # defaults (4 MiB bodies, 16 calls at once per endpoint, 32 per department, 256 in all).
            args=[
                "--listen",
                f"0.0.0.0:{port}",
                "--routes",
                naming.ROUTES_MOUNT,
                "--routes-configmap",
                pulumi.Output.concat(args.namespace, "/", naming.ROUTES_CONFIGMAP),
                *GatewayLimits(replicas=replicas).argv(),
            ],
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=port)],
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/v2/health/live", port=port)
            ),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "200m", "memory": "128Mi"}, limits={"memory": "512Mi"}
            ),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="routes", mount_path=naming.ROUTES_MOUNT, read_only=True)
            ],
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
        )
        k8s.apps.v1.Deployment(
            f"{name}-gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=naming.GATEWAY,
                namespace=args.namespace,
                labels=args.labels(naming.GATEWAY),
                annotations={labels.SKIP_AWAIT: "true"},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.gateway_selector(args)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=args.pod_labels(naming.GATEWAY)),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account,
                        # Its token reads the routes' ConfigMap and nothing else (GATEWAY_RULES).
                        automount_service_account_token=True,
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=GATEWAY_UID,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        node_selector=args.placement.get("nodeSelector", {labels.POOL: labels.CPU_POOL}),
                        tolerations=args.placement.get("tolerations"),
                        containers=[container],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="routes",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=naming.ROUTES_CONFIGMAP
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _fill_store(
        self,
        name: str,
        args: BackendArgs,
        servers: pulumi.Input[str],
        image: str,
        placement: dict[str, Any],
    ) -> None:
        """The models image's store into the claim. Named by Pulumi (a suffix): a new image replaces the Job,
        the old one goes after the new one exists. Not awaited: model servers wait for their file."""
        k8s.batch.v1.Job(
            f"{name}-models-store",
            metadata={
                "namespace": servers,
                "labels": args.labels("inference-models"),
                "annotations": {labels.SKIP_AWAIT: "true"},
            },
            spec={
                "backoffLimit": 6,
                "template": {
                    "metadata": {"labels": args.labels("inference-models")},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "automountServiceAccountToken": False,
                        **placement,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": STORE_UID,
                            "runAsGroup": STORE_UID,
                            "fsGroup": STORE_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "copy",
                                "image": image,
                                "command": ["cp", "-R", f"{naming.MODELS_IMAGE_ROOT}/.", naming.MODELS_MOUNT],
                                "securityContext": RESTRICTED_CONTAINER,
                                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                                "volumeMounts": [{"name": "models", "mountPath": naming.MODELS_MOUNT}],
                            }
                        ],
                        "volumes": [
                            {"name": "models", "persistentVolumeClaim": {"claimName": naming.MODELS_PVC}}
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _catalog(image: str) -> OperatorPod:
        """The operator's copy of the catalog from the models image (nothing without one: the driver then
        reads CITYHUB_INFERENCE_MODELS_DIR as set by cityhub:operator.env)."""
        if not image:
            return OperatorPod()
        volume = {"name": "inference-catalog", "emptyDir": {"sizeLimit": "16Mi"}}
        init = {
            "name": "inference-catalog",
            "image": image,
            "workingDir": naming.MODELS_IMAGE_ROOT,
            "command": ["sh", "-c", COPY_CATALOG, naming.CATALOG_MOUNT],
            "securityContext": RESTRICTED_CONTAINER,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            "volumeMounts": [{"name": "inference-catalog", "mountPath": naming.CATALOG_MOUNT}],
        }
        mount = {"name": "inference-catalog", "mountPath": naming.CATALOG_MOUNT, "readOnly": True}
        return OperatorPod(init_containers=(init,), volumes=(volume,), mounts=(mount,))

    def _model_servers_policy(self, name: str, args: BackendArgs, servers: pulumi.Input[str]) -> None:
        """Model servers answer the gateway only: a department must go through the key check and the rate
        limit. In the system namespace (no GPU pool) this adds to its default-deny-ingress policy."""
        gateway = k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                match_labels={labels.NAMESPACE_NAME: args.namespace}
            ),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.gateway_selector(args)),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-model-servers",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=MODEL_SERVERS_POLICY, namespace=servers, labels=args.labels(MODEL_SERVERS_POLICY)
            ),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=naming.MANAGED_LABELS),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[gateway])],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _fence_pool_namespace(self, name: str, args: BackendArgs, servers: pulumi.Input[str]) -> None:
        """The model servers' own namespace: nothing reaches its pods but the gateway (the policy above adds
        that to this default-deny), and its pods meet Pod Security `restricted`."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEFAULT_DENY_POLICY, namespace=servers, labels=args.labels(DEFAULT_DENY_POLICY)
            ),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress"]
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.core.v1.NamespacePatch(
            f"{name}-pod-security",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=servers,
                labels={
                    labels.POD_SECURITY_ENFORCE: POD_SECURITY_LEVEL,
                    labels.POD_SECURITY_ENFORCE_VERSION: "latest",
                    labels.POD_SECURITY_WARN: POD_SECURITY_LEVEL,
                    labels.POD_SECURITY_AUDIT: POD_SECURITY_LEVEL,
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _gateway_account(self, name: str, args: BackendArgs) -> pulumi.Output[str]:
        """The gateway's own ServiceAccount, allowed GATEWAY_RULES in the system namespace."""
        meta = {"name": naming.GATEWAY, "namespace": args.namespace, "labels": args.labels(naming.GATEWAY)}
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-gateway", metadata=meta, automount_service_account_token=False, opts=child
        )
        role = k8s.rbac.v1.Role(f"{name}-gateway", metadata=meta, rules=GATEWAY_RULES, opts=child)
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-gateway",
            metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": naming.GATEWAY, "namespace": args.namespace}],
            opts=child,
        )
        # The Deployment waits for the binding too: its pods' first watch is then allowed.
        return pulumi.Output.all(account.metadata.name, binding.metadata.name).apply(lambda names: names[0])

    def _operator_role(
        self,
        resource: str,
        role_name: str,
        args: BackendArgs,
        namespace: pulumi.Input[str],
        rules: list[dict[str, Any]],
    ) -> None:
        """What the driver's kubernetes mode may do in `namespace`, bound to the operator's account."""
        role = k8s.rbac.v1.Role(
            resource,
            metadata={"name": role_name, "namespace": namespace, "labels": args.labels(role_name)},
            rules=rules,
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.RoleBinding(
            resource,
            metadata={"name": role_name, "namespace": namespace, "labels": args.labels(role_name)},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": args.namespace}],
            opts=pulumi.ResourceOptions(parent=self),
        )
