"""The validated stack configuration as typed, immutable values: what the components are built from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Mode = Literal["normal", "emergency"]
Level = Literal["市", "区", "街道"]
DataGrade = Literal["一般", "重要", "核心"]

LEVEL_LABELS: dict[str, str] = {"市": "city", "区": "district", "街道": "street"}
"""Kubernetes label values are ASCII, so levels and grades are labelled with these English words."""
GRADE_LABELS: dict[str, str] = {"一般": "general", "重要": "important", "核心": "core"}
GRADE_RANK: dict[str, int] = {"一般": 0, "重要": 1, "核心": 2}


@dataclass(frozen=True)
class Quota:
    """What a department's namespace may consume. Quantities are Kubernetes quantity strings."""

    cpu: str
    """CPU cores, requested and limited, e.g. "8" or "500m"."""
    memory: str
    """Memory, requested and limited, e.g. "16Gi"."""
    pods: int | None = None
    """Maximum pods; None means no limit."""
    gpu: int = 0
    """GPUs (nvidia.com/gpu) that may be requested."""
    storage: str = "0"
    """Total persistent volume capacity that may be claimed."""
    components: int = 10
    """Component requests the department may hold of each component type (a Kubernetes object-count quota:
    the API server refuses one more)."""

    def overlay(self, changes: dict[str, str | int]) -> Quota:
        """This quota with the keys in `changes` replaced (used for emergencyQuota)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Department:
    """A department (委办局) and everything the hub needs to know to give it a tenancy."""

    slug: str
    name: str
    credit_code: str
    level: Level
    division_code: str
    zone: str
    data_grade: DataGrade
    emergency_responder: bool
    quota: Quota
    """The normal-mode quota."""
    emergency_quota: Quota
    """The emergency-mode quota: `quota` with the department's emergencyQuota keys applied."""
    cluster: str
    admins: tuple[str, ...] = ()
    """Sign-in names (the identity provider's preferred_username) of the department's administrators
    (管理员), bound as users oidc:<name> to its admin role besides the group cityhub-<slug>-admins."""

    @property
    def namespace(self) -> str:
        return f"dept-{self.slug}"

    def quota_for(self, mode: Mode) -> Quota:
        return self.emergency_quota if mode == "emergency" else self.quota


@dataclass(frozen=True)
class Zone:
    slug: str
    name: str
    public: bool
    """Reachable from, and may reach, outside the cluster."""


@dataclass(frozen=True)
class Flow:
    source: str
    """Zone whose pods open the connection."""
    target: str
    """Zone whose pods accept it."""
    ports: tuple[int, ...] = ()
    """TCP ports; empty means all."""


@dataclass(frozen=True)
class SharedService:
    """cityhub:sharedServices[]: which zones reach a component type's front door."""

    name: str
    """A component type (its front-door Service has this name; its port comes from the type)."""
    zones: tuple[str, ...]
    """Zones whose departments may call the service."""
    display_name: str | None = None
    """Overrides the type's display name on the Service."""


@dataclass(frozen=True)
class Cluster:
    name: str
    role: Literal["hub", "edge"] = "hub"
    division_code: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    api_server: str | None = None
    """An edge's API server as the hub's pods reach it (its operator runs on the hub); default: the
    server of its kubeconfig."""

    @property
    def ambient(self) -> bool:
        """True when the cluster is whatever $KUBECONFIG points at (no explicit provider needed)."""
        return self.kubeconfig is None and self.context is None


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


@dataclass(frozen=True)
class Placement:
    """cityhub:systemPlacement: where the operator and the deployed backends run."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    def pod_fields(self) -> dict[str, object]:
        """The pod spec fields to add (none when unset, so pods stay as they were)."""
        fields: dict[str, object] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [
                {k: v for k, v in vars(t).items() if v is not None} for t in self.tolerations
            ]
        return fields


@dataclass(frozen=True)
class GpuPool:
    gpus: int = 0
    node_selector: dict[str, str] = field(default_factory=lambda: {"cityhub.io/pool": "gpu-inference"})
    tolerations: tuple[Toleration, ...] = (Toleration(key="nvidia.com/gpu", effect="NoSchedule"),)


@dataclass(frozen=True)
class StorageClassSpec:
    name: str
    tier: str
    encrypted: bool
    max_grade: DataGrade
    default: bool = False
    provisioner: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    def allows(self, grade: DataGrade) -> bool:
        return GRADE_RANK[grade] <= GRADE_RANK[self.max_grade]


@dataclass(frozen=True)
class Storage:
    mode: Literal["preprovisioned", "dynamic"]
    classes: tuple[StorageClassSpec, ...]
    volumes_per_class: int = 4
    volume_size: str = "10Gi"
    host_path_root: str = "/var/lib/cityhub/volumes"


@dataclass(frozen=True)
class ContainerLimits:
    default_request_cpu: str = "100m"
    default_request_memory: str = "128Mi"
    default_cpu: str = "500m"
    default_memory: str = "512Mi"


@dataclass(frozen=True)
class OperatorConfig:
    """cityhub:operator (schema defaults filled in)."""

    deploy: bool = True
    image: str = "registry.cityhub.local/cityhub/operator:0.1.0"
    components: tuple[str, ...] = ()
    """Component types served; empty: every declared type."""
    catalog: tuple[str, ...] = ()
    """Offerings published (by name, from the types' catalog.yaml); empty: all."""
    log_level: str = "INFO"
    drift_interval: int = 60
    replicas: int = 2
    """Operator pods; one leads (kopf peering), the others take over within the peering lifetime."""
    worker_limit: int = 0
    cpu: str = "100m"
    memory: str = "256Mi"
    env: dict[str, str] = field(default_factory=dict)
    backend_secret: str | None = None


@dataclass(frozen=True)
class Backends:
    """cityhub:backends."""

    deploy: tuple[str, ...] = ()
    """Component types whose backends the stack runs in the cluster."""
    storage_class: str | None = None
    settings: dict[str, dict[str, object]] = field(default_factory=dict)
    """Type name → that type's own settings (cityhub:backends.<type>, validated by its schema)."""


@dataclass(frozen=True)
class HubConfig:
    city: str
    division_code: str
    mode: Mode
    clusters: tuple[Cluster, ...]
    districts: dict[str, str]
    """Division code -> district name."""
    zones: tuple[Zone, ...]
    flows: tuple[Flow, ...]
    shared_services: tuple[SharedService, ...]
    limits: ContainerLimits
    gpu_pool: GpuPool
    storage: Storage | None
    departments: tuple[Department, ...]
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    backends: Backends = field(default_factory=Backends)
    backends_master_key: str | None = field(default=None, repr=False)
    """cityhub:backendsMasterKey (a Pulumi secret): never printed, wrapped as a secret by the stack."""
    monitoring: dict[str, object] = field(default_factory=dict)
    system_placement: Placement = field(default_factory=Placement)

    def zone(self, slug: str) -> Zone:
        return next(z for z in self.zones if z.slug == slug)

    def departments_on(self, cluster: str) -> tuple[Department, ...]:
        return tuple(d for d in self.departments if d.cluster == cluster)
