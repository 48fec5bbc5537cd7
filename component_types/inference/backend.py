"""The inference backend in cluster mode: the gateway, the shared model store and the operator's settings.

    inference-gateway   the cityhub inference gateway (Deployment + Service, CPU pool): checks departments'
                        API keys, enforces requestsPerMinute (429), proxies KServe V2 calls to the model
                        servers; its routes are the ConfigMap `inference-routes`, which the operator writes
    inference-routes    ConfigMap of route files (data is the operator's: Pulumi ignores changes to it)
    cityhub-models      PersistentVolumeClaim holding the model store, mounted read-only by model servers
    cityhub-inference-backend   Secret with the master secret the operator derives API keys from

Per-endpoint model servers (KServe InferenceService, or Deployment + Service on the CPU or GPU inference
pool) are created by the operator's inference driver in `namespace` (the GPU inference pool's namespace).
`operator_env` holds the CITYHUB_INFERENCE_* variables for the component operator when the Secret is
mounted at `backends_mount`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import labels

GATEWAY_NAME = "inference-gateway"
ROUTES_NAME = "inference-routes"
MODELS_PVC = "cityhub-models"
SECRET_NAME = "cityhub-inference-backend"
GATEWAY_PORT = 8090


@dataclass(frozen=True)
class InferenceBackendArgs:
    namespace: pulumi.Input[str]
    """Namespace of the gateway and the model servers: the GPU inference pool's (gpu_pool.GPU_NAMESPACE)."""
    master_secret: pulumi.Input[str]
    """At least 32 characters of random text (a Pulumi secret): departments' API keys derive from it."""
    gateway_image: str
    """An image with the cityhub_operator package (the component operator's image)."""
    mlserver_image: str = "docker.io/seldonio/mlserver:1.7.1-sklearn"
    gateway_replicas: int = 2
    storage_class: str | None = None
    models_size: str = "20Gi"
    backends_mount: str = "/var/run/cityhub/backends"
    """Where the component operator mounts SECRET_NAME (component_operator.BACKENDS_MOUNT)."""


class InferenceBackend(pulumi.ComponentResource):
    """The inference gateway, its routes ConfigMap, the model store claim and the operator's Secret."""

    operator_env: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: InferenceBackendArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:backends:InferenceBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        common = {**labels.common(), labels.SERVICE: "inference"}
        selector = {"app.kubernetes.io/name": GATEWAY_NAME}
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SECRET_NAME, namespace=ns, labels=common),
            string_data={"inference-secret": pulumi.Output.secret(args.master_secret)},
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-routes",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ROUTES_NAME, namespace=ns, labels=common),
            data={},
            # The operator adds and removes routes: Pulumi creates the ConfigMap and leaves its data alone.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["data"]),
        )
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=MODELS_PVC, namespace=ns, labels=common, annotations={labels.SKIP_AWAIT: "true"}
            ),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadOnlyMany"],
                storage_class_name=args.storage_class,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": args.models_size}),
            ),
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=GATEWAY_NAME, namespace=ns, labels=common, annotations={labels.SKIP_AWAIT: "true"}
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.gateway_replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={**common, **selector}),
                    spec=k8s.core.v1.PodSpecArgs(
                        automount_service_account_token=False,
                        node_selector={"cityhub.io/pool": "cpu"},
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="gateway",
                                image=args.gateway_image,
                                command=["python", "-m", "component_types.inference.driver.gateway"],
                                args=[
                                    "--listen",
                                    f"0.0.0.0:{GATEWAY_PORT}",
                                    "--routes",
                                    "/etc/cityhub/routes",
                                ],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(name="http", container_port=GATEWAY_PORT)
                                ],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(
                                        path="/v2/health/live", port=GATEWAY_PORT
                                    )
                                ),
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "200m", "memory": "128Mi"}, limits={"memory": "512Mi"}
                                ),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(
                                        name="routes", mount_path="/etc/cityhub/routes", read_only=True
                                    )
                                ],
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="routes",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=ROUTES_NAME),
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-gateway-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATEWAY_NAME, namespace=ns, labels=common),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=GATEWAY_PORT, target_port=GATEWAY_PORT)],
            ),
            opts=child,
        )
        mount = args.backends_mount.rstrip("/")
        self.operator_env = pulumi.Output.from_input(ns).apply(
            lambda namespace: {
                "CITYHUB_INFERENCE_MODE": "cluster",
                "CITYHUB_INFERENCE_NAMESPACE": namespace,
                "CITYHUB_INFERENCE_GATEWAY_URL": f"http://{GATEWAY_NAME}.{namespace}.svc:{GATEWAY_PORT}",
                "CITYHUB_INFERENCE_SECRET_FILE": f"{mount}/inference-secret",
                "CITYHUB_INFERENCE_ROUTES_CONFIGMAP": ROUTES_NAME,
                "CITYHUB_INFERENCE_MODELS_PVC": MODELS_PVC,
                "CITYHUB_INFERENCE_IMAGE": args.mlserver_image,
            }
        )
        self.register_outputs({"operator_env": self.operator_env})
