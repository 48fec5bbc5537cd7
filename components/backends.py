"""The component backends the stack runs in the cluster (cityhub:backends.deploy): for each named type, the
`Backend` ComponentResource of its folder (component_types/<type>/backend.py), found through the registry.

The contract every type's backend follows:

    Backend(name, args: BackendArgs, opts)
        creates the backend's workloads in `args.namespace` (or a pool's namespace), labels the pods that
        serve its front door with `args.pod_labels(...)` (so the front-door Service selects them by
        construction), and puts what the operator needs into the Secret `args.secret_name`, which the
        operator mounts at `args.mount`
    backend.operator_env
        the driver's CITYHUB_* settings (a dict, or an Output of one)
    backend.operator_pod (optional)
        an OperatorPod: init containers, volumes and mounts the operator's pods need for the driver

Every backend credential derives from one Pulumi secret, cityhub:backendsMasterKey, by HMAC with a purpose
(`args.key("nats")`): one value to set and rotate, and each backend still gets a different key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from cityhub_api import labels
from cityhub_api.registry import BACKEND, ComponentType, component_types
from components.operator_workload import OperatorPod

BACKENDS_MOUNT = "/var/run/cityhub/backends"
"""Where the operator mounts each deployed type's backend Secret: <mount>/<type>/<key>."""
OPERATOR_ACCOUNT = "cityhub-operator"
OPERATOR_LABELS = {labels.NAME: OPERATOR_ACCOUNT, labels.COMPONENT: "operator"}
"""The operator's pods: backends allow their ingress (the system namespace denies all other ingress)."""


def derive(master: str, purpose: str) -> str:
    return hmac.new(master.encode(), purpose.encode(), hashlib.sha256).hexdigest()


IMAGE_USER = 65532
"""The user of the images hack/images.sh builds (operator, nats): backend pods run as it."""


@dataclass(frozen=True)
class BackendArgs:
    """What the stack gives every type's backend."""

    ctype: ComponentType
    namespace: pulumi.Input[str]
    """The hub's system namespace: the front door's namespace and the backend's default home."""
    master_key: pulumi.Input[str]
    """cityhub:backendsMasterKey (a Pulumi secret); use `key(purpose)` rather than the key itself."""
    operator_image: str
    """The operator's image (holds every type's Python code, e.g. a gateway a backend runs)."""
    storage_class: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    """cityhub:backends.<type>, validated against the type's x-cityhub.backendSettings."""
    pools: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Node pool → namespace of that pool, e.g. {"gpu-inference": "cityhub-inference"} (when one exists)."""
    placement: Mapping[str, Any] = field(default_factory=dict)
    """cityhub:systemPlacement as pod spec fields (nodeSelector, tolerations): spread into the pod spec of
    every workload the backend runs in the system namespace (not in a pool's namespace, which has its own)."""
    edges: tuple[str, ...] = ()
    """The stack's edge clusters (on the hub): a type with an edge part opens what those parts dial."""

    def key(self, purpose: str) -> pulumi.Output[str]:
        """A secret derived from the master key for one purpose."""
        return pulumi.Output.secret(
            pulumi.Output.from_input(self.master_key).apply(lambda m: derive(m, purpose))
        )

    @property
    def secret_name(self) -> str:
        """The Secret (in `namespace`) holding what the operator needs; mounted at `mount`."""
        return f"cityhub-{self.ctype.name}-backend"

    @property
    def mount(self) -> str:
        return f"{BACKENDS_MOUNT}/{self.ctype.name}"

    @property
    def pod_security(self) -> dict[str, Any]:
        """The pod securityContext of the backend's workloads: Pod Security `restricted`, as the images'
        user; fsGroup makes the workload's volumes that user's own."""
        return {
            "runAsNonRoot": True,
            "runAsUser": IMAGE_USER,
            "runAsGroup": IMAGE_USER,
            "fsGroup": IMAGE_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    def pod_labels(self, component: str) -> dict[str, str]:
        """Labels of the pods that serve the type's front door (`component` names the workload)."""
        return {
            **labels.common(),
            **self.ctype.front_door.pod_labels,
            labels.NAME: component,
            labels.COMPONENT: self.ctype.name,
        }

    def labels(self, component: str) -> dict[str, str]:
        """Labels of the backend's other objects (not selected by the front door)."""
        return {**labels.common(), labels.NAME: component, labels.COMPONENT: self.ctype.name}


@dataclass(frozen=True)
class EdgeBackendArgs(BackendArgs):
    """What the stack gives a type's edge part (`EdgeBackend` in its backend.py, optional): the part of the
    backend an edge cluster runs itself so that it keeps working while its uplink is down (messaging's leaf
    node). `namespace` is the edge's system namespace; the other settings are the hub's backend's."""

    edge: str = ""
    departments: tuple[str, ...] = ()
    """The namespaces of the departments the stack places on the edge."""


EDGE_BACKEND = "EdgeBackend"
"""The optional class of a type's backend.py that an edge cluster runs (its operator_env: the settings the
edge's operator adds to the hub's backends' ones)."""


@dataclass(frozen=True)
class SharedBackendsArgs:
    deploy: tuple[str, ...]
    """Component types whose backends to deploy (validated against the registry)."""
    master_key: pulumi.Input[str] | None
    """cityhub:backendsMasterKey as a Pulumi secret (required when any backend is deployed)."""
    system_namespace: pulumi.Input[str]
    operator_image: str
    storage_class: str | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Type name → cityhub:backends.<type>."""
    pools: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    placement: Mapping[str, Any] = field(default_factory=dict)
    """cityhub:systemPlacement as pod spec fields."""
    edges: tuple[str, ...] = ()
    """On the hub: the stack's edge clusters."""
    edge: str | None = None
    """On an edge cluster: its name. Only the types' edge parts run there; every other request of its
    departments is served by the hub's backends (one identity realm, one map database, one model pool)."""
    edge_departments: tuple[str, ...] = ()


class SharedBackends(pulumi.ComponentResource):
    operator_env: list[pulumi.Input[Mapping[str, str]]]
    """Each deployed backend's driver settings (on an edge: its edge parts' settings for its operator)."""
    mounts: dict[str, str]
    """Type name → its backend Secret, mounted by the operator at BACKENDS_MOUNT/<type>."""
    operator_pod: OperatorPod
    """What the deployed backends add to the operator's pods."""

    def __init__(
        self, name: str, args: SharedBackendsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:backends:SharedBackends", name, {}, opts)
        self.operator_env, self.mounts, self.operator_pod = [], {}, OperatorPod()
        if args.deploy and args.master_key is None:
            raise ValueError(
                "cityhub:backendsMasterKey is required when cityhub:backends.deploy names a backend"
            )
        types = component_types()
        for type_name in args.deploy:
            ctype = types[type_name]
            module = ctype.load(BACKEND)
            common: dict[str, Any] = {
                "ctype": ctype,
                "namespace": args.system_namespace,
                "master_key": pulumi.Output.secret(args.master_key),  # type: ignore[arg-type]
                "operator_image": args.operator_image,
                "storage_class": args.storage_class,
                "settings": dict(args.settings.get(type_name, {})),
                "placement": dict(args.placement),
            }
            if args.edge is not None:
                if hasattr(module, EDGE_BACKEND):
                    edge_args = EdgeBackendArgs(**common, edge=args.edge, departments=args.edge_departments)
                    part = getattr(module, EDGE_BACKEND)(
                        f"{name}-{type_name}-edge", edge_args, pulumi.ResourceOptions(parent=self)
                    )
                    self.operator_env.append(part.operator_env)
                continue
            backend_args = BackendArgs(**common, pools=dict(args.pools), edges=args.edges)
            backend = module.Backend(f"{name}-{type_name}", backend_args, pulumi.ResourceOptions(parent=self))
            self.operator_env.append(backend.operator_env)
            self.mounts[type_name] = backend_args.secret_name
            self.operator_pod += getattr(backend, "operator_pod", None) or OperatorPod()
        self.register_outputs({"mounts": self.mounts})
