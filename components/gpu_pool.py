"""The shared GPU inference pool (推理算力): a namespace whose GPU use is capped and whose pods land on the
tainted GPU nodes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import GpuPool
from cityhub_api import labels

GPU_NAMESPACE = "cityhub-inference"


def toleration_dicts(pool: GpuPool) -> list[dict[str, str]]:
    """Tolerations as Kubernetes writes them (camelCase keys, unset fields left out)."""
    return [
        {
            k: v
            for k, v in {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect}.items()
            if v
        }
        for t in pool.tolerations
    ]


@dataclass(frozen=True)
class GpuInferencePoolArgs:
    pool: GpuPool


class GpuInferencePool(pulumi.ComponentResource):
    """Namespace cityhub-inference with a ResourceQuota on `nvidia.com/gpu` (the pool's size) and the GPU
    nodes' scheduling constraints (node selector, tolerations) published for the operator in a ConfigMap; the
    operator puts them on the GPU model servers it makes.

    Not as the namespace's `scheduler.alpha.kubernetes.io/node-selector` / `defaultTolerations` annotations:
    the namespace also holds the gateway, the CPU model servers and the model store's Job, and on a cluster
    running the PodNodeSelector admission plugin every one of them would be bound to the GPU nodes (or
    refused for a conflicting nodeSelector)."""

    namespace_name: pulumi.Output[str]
    scheduling: dict[str, object]

    def __init__(
        self, name: str, args: GpuInferencePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:compute:GpuInferencePool", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        tolerations = toleration_dicts(args.pool)
        self.scheduling = {"nodeSelector": dict(args.pool.node_selector), "tolerations": tolerations}
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=GPU_NAMESPACE,
                labels={**labels.common(), "cityhub.io/pool": "gpu-inference"},
            ),
            opts=child,
        )
        ns = namespace.metadata.name
        k8s.core.v1.ResourceQuota(
            f"{name}-gpus",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="gpu-pool", namespace=ns, labels=labels.common()),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard={"requests.nvidia.com/gpu": str(args.pool.gpus)}),
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-scheduling",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="gpu-scheduling", namespace=ns, labels=labels.common()),
            data={"scheduling.json": json.dumps(self.scheduling, sort_keys=True)},
            opts=child,
        )
        self.namespace_name = ns
        self.register_outputs({"namespace_name": ns, "scheduling": self.scheduling})
