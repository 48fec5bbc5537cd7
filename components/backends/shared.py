"""The component backends the stack runs in the cluster (cityhub:backends.deploy), and what the operator
needs to reach them: environment, the Secrets to mount, and the Roles its drivers need.

Every backend credential derives from one Pulumi secret, cityhub:backendsMasterKey, by HMAC with the
backend's purpose: one value to set and rotate, and each backend still gets a different key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import Backends
from components import labels
from components.backends.identity import IdentityBackend, IdentityBackendArgs
from components.backends.inference import InferenceBackend, InferenceBackendArgs
from components.backends.maps import MapsBackend, MapsBackendArgs
from components.backends.messaging import MessagingBackend, MessagingBackendArgs

OPERATOR_SECRET = "cityhub-operator-backends"
"""Keys the operator needs from backends whose own Secret lives outside the system namespace."""


def derive(master: str, purpose: str) -> str:
    return hmac.new(master.encode(), purpose.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SharedBackendsArgs:
    backends: Backends
    master_key: pulumi.Input[str] | None
    """cityhub:backendsMasterKey as a Pulumi secret (required when any backend is deployed)."""
    system_namespace: pulumi.Input[str]
    inference_namespace: pulumi.Input[str] | None
    """The GPU inference pool's namespace (None: no pool; the inference backend then uses the system one)."""
    operator_image: str
    """The inference gateway runs from the operator's image (it is part of cityhub_operator)."""


class SharedBackends(pulumi.ComponentResource):
    operator_env: list[pulumi.Input[dict[str, str]]]
    """Each deployed backend's driver settings."""
    secret_names: list[str]
    """Secrets in the system namespace the operator mounts (projected) at its backends directory."""

    def __init__(
        self, name: str, args: SharedBackendsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:backends:SharedBackends", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        deploy = set(args.backends.deploy)
        self.operator_env, self.secret_names = [], []
        if not deploy:
            self.register_outputs({})
            return
        if args.master_key is None:
            raise ValueError(
                "cityhub:backendsMasterKey is required when cityhub:backends.deploy names a backend"
            )
        master = pulumi.Output.secret(args.master_key)

        def key(purpose: str) -> pulumi.Output[str]:
            return pulumi.Output.secret(master.apply(lambda m: derive(m, purpose)))

        storage = args.backends.storage_class
        operator_keys: dict[str, pulumi.Input[str]] = {}
        if "messaging" in deploy:
            nats = MessagingBackend(
                name,
                MessagingBackendArgs(
                    namespace=args.system_namespace, master_secret=key("nats"), storage_class=storage
                ),
                opts=child,
            )
            operator_keys["nats-secret"] = key("nats")
            self.operator_env.append(nats.operator_env)  # type: ignore[arg-type]
        if "identity" in deploy:
            identity = IdentityBackend(
                name,
                IdentityBackendArgs(
                    namespace=args.system_namespace,
                    admin_secret=key("identity-admin"),
                    database_password=key("identity-db"),
                    public_url=args.backends.identity_public_url,
                    storage_class=storage,
                ),
                opts=child,
            )
            self.secret_names.append("cityhub-identity-backend")
            self.operator_env.append(identity.operator_env)
        if "maps" in deploy:
            maps = MapsBackend(
                name,
                MapsBackendArgs(
                    namespace=args.system_namespace,
                    master_secret=key("maps"),
                    postgres_password=key("maps-postgres"),
                    storage_class=storage,
                ),
                opts=child,
            )
            self.secret_names.append("cityhub-maps-backend")
            self.operator_env.append(maps.operator_env)
        if "inference" in deploy:
            namespace = args.inference_namespace or args.system_namespace
            inference = InferenceBackend(
                name,
                InferenceBackendArgs(
                    namespace=namespace,
                    master_secret=key("inference"),
                    gateway_image=args.operator_image,
                    storage_class=storage,
                ),
                opts=child,
            )
            operator_keys["inference-secret"] = key("inference")
            self.operator_env.append(inference.operator_env)
            self._inference_role(name, namespace)
        if operator_keys:
            k8s.core.v1.Secret(
                f"{name}-operator-backends",
                metadata={
                    "name": OPERATOR_SECRET,
                    "namespace": args.system_namespace,
                    "labels": labels.common(),
                },
                string_data=operator_keys,
                opts=child,
            )
            self.secret_names.append(OPERATOR_SECRET)
        self.register_outputs({"secrets": self.secret_names})

    def _inference_role(self, name: str, namespace: pulumi.Input[str]) -> None:
        """The inference driver's cluster mode manages model servers, in the inference namespace only."""
        role = k8s.rbac.v1.Role(
            f"{name}-operator-inference",
            metadata={
                "name": "cityhub-operator-inference",
                "namespace": namespace,
                "labels": labels.common(),
            },
            rules=[
                # One Deployment + Service per endpoint (or a KServe InferenceService where KServe runs).
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["services"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": ["serving.kserve.io"],
                    "resources": ["inferenceservices"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                },
                # The gateway's routes table; the GPU quota is read to refuse endpoints that cannot fit.
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update", "patch"]},
                {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get", "list"]},
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-operator-inference",
            metadata={
                "name": "cityhub-operator-inference",
                "namespace": namespace,
                "labels": labels.common(),
            },
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[
                {"kind": "ServiceAccount", "name": "cityhub-operator", "namespace": labels.SYSTEM_NAMESPACE}
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
