"""What the rules see: plain resources (type, logical name, URN, input properties) and the violations they
report. Keeping pulumi-policy's proxies out of the rules lets unit tests call them with plain dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"
RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"
LIMIT_RANGE = "kubernetes:core/v1:LimitRange"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
POD = "kubernetes:core/v1:Pod"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
WORKLOADS_WITH_TEMPLATE = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:core/v1:ReplicationController",
)
CRON_JOB = "kubernetes:batch/v1:CronJob"
WORKLOADS = (POD, *WORKLOADS_WITH_TEMPLATE, CRON_JOB)


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    """The Pulumi logical name (what `pulumi preview` prints next to the type)."""
    props: Mapping[str, Any] = field(default_factory=dict)
    urn: str = ""

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.props.get("metadata") or {}

    @property
    def k8s_name(self) -> str:
        return str(self.metadata.get("name") or self.name)

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.props.get("spec") or {}

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def title(self) -> str:
        """How a violation names the object: Kind namespace/name."""
        ns = self.metadata.get("namespace")
        return f"{self.kind} {ns}/{self.k8s_name}" if ns else f"{self.kind} {self.k8s_name}"

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:") and not self.type.startswith("kubernetes:index")


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str = ""


def plain(value: Any) -> Any:
    """pulumi-policy's read-only proxies (and anything mapping- or list-like) as dicts and lists."""
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [plain(v) for v in value]
    return value


def pod_spec(resource: Resource) -> Mapping[str, Any] | None:
    """The pod spec a workload runs, wherever its kind keeps it."""
    if resource.type == POD:
        return resource.spec
    if resource.type in WORKLOADS_WITH_TEMPLATE:
        return (resource.spec.get("template") or {}).get("spec") or {}
    if resource.type == CRON_JOB:
        job = (resource.spec.get("jobTemplate") or {}).get("spec") or {}
        return (job.get("template") or {}).get("spec") or {}
    return None


def containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def by_namespace(resources: Iterable[Resource], type_: str) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for r in resources:
        if r.type == type_:
            out.setdefault(r.namespace, []).append(r)
    return out
