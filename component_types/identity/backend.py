"""The identity backend in cluster mode: Keycloak (the city's OIDC provider) in the hub's system namespace.

    keycloak          Deployment (one replica, Recreate), `kc.sh start` with local caches, health on the
                      management port 9000, a modest heap; its H2 (dev-file) database on a PersistentVolume,
                      or an external PostgreSQL when `database_url` is given (production)
    keycloak          Service, port 8080: what the operator (CITYHUB_IDENTITY_URL) and, behind the city's
                      ingress, departments' applications (CITYHUB_IDENTITY_PUBLIC_URL) reach
    cityhub-identity-backend   Secret: the operator's admin client secret (identity-admin-secret) and the
                      database password; Keycloak creates the admin client (a master-realm service account)
                      from it on its first start

`operator_env` holds the CITYHUB_IDENTITY_* variables for the component operator when that Secret is mounted
at `backends_mount` (component_operator.BACKENDS_MOUNT).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from component_types.identity.driver.server import ADMIN_CLIENT_ID, HEAP, KEYCLOAK_VERSION

from cityhub_api import labels

NAME = "keycloak"
SECRET_NAME = "cityhub-identity-backend"
HTTP_PORT = 8080
MANAGEMENT_PORT = 9000
APP = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "identity"}


@dataclass(frozen=True)
class IdentityBackendArgs:
    namespace: pulumi.Input[str]
    """The hub's system namespace (labels.SYSTEM_NAMESPACE)."""
    admin_secret: pulumi.Input[str]
    """The operator's admin client secret (a Pulumi secret, at least 16 characters)."""
    realm: str = "city"
    """The city's realm (CITYHUB_IDENTITY_REALM); the operator creates it on first use."""
    public_url: str | None = None
    """The URL departments' applications use, e.g. https://id.city.gov (issuer of every token). None: the
    in-cluster Service URL (for clusters where every application runs inside)."""
    image: str = f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}"
    database_url: str | None = None
    """JDBC URL of an external PostgreSQL, e.g. jdbc:postgresql://pg.cityhub-system.svc/keycloak. None: the
    embedded H2 (dev-file) database on a PersistentVolume: one replica only, fine for a pilot."""
    database_username: str = "keycloak"
    database_password: pulumi.Input[str] = ""
    storage_class: str | None = None
    storage_size: str = "2Gi"
    memory: str = "1Gi"
    backends_mount: str = "/var/run/cityhub/backends"
    """Where the component operator mounts SECRET_NAME (component_operator.BACKENDS_MOUNT)."""


def keycloak_args(args: IdentityBackendArgs) -> list[str]:
    out = [
        "start",
        "--http-enabled=true",
        f"--http-port={HTTP_PORT}",
        "--health-enabled=true",
        "--cache=local",
        "--proxy-headers=xforwarded",
    ]
    if args.public_url:
        # Tokens name the public issuer even when fetched through the in-cluster Service (the operator's
        # admin calls and applications' back-channel requests).
        out += [f"--hostname={args.public_url}", "--hostname-backchannel-dynamic=true"]
    else:
        out.append("--hostname-strict=false")
    if args.database_url:
        out += ["--db=postgres", f"--db-url={args.database_url}", f"--db-username={args.database_username}"]
    else:
        out.append("--db=dev-file")
    return out


class IdentityBackend(pulumi.ComponentResource):
    """Keycloak for the identity component, and the Secret the operator's identity driver reads."""

    def __init__(
        self, name: str, args: IdentityBackendArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:backends:IdentityBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        meta_labels = {**labels.common(), **APP, labels.SERVICE: "identity"}
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": SECRET_NAME, "namespace": ns, "labels": meta_labels},
            string_data={
                "identity-admin-secret": pulumi.Output.secret(args.admin_secret),
                "identity-db-password": pulumi.Output.secret(args.database_password),
            },
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": NAME, "namespace": ns, "labels": meta_labels},
            spec={"selector": APP, "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}]},
            opts=child,
        )
        volumes: list[dict[str, object]] = []
        mounts: list[dict[str, object]] = []
        if not args.database_url:
            claim: dict[str, object] = {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": args.storage_size}},
            }
            if args.storage_class:
                claim["storageClassName"] = args.storage_class
            k8s.core.v1.PersistentVolumeClaim(
                f"{name}-data",
                metadata={"name": f"{NAME}-data", "namespace": ns, "labels": meta_labels},
                spec=claim,
                opts=child,
            )
            volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{NAME}-data"}})
            mounts.append({"name": "data", "mountPath": "/opt/keycloak/data"})

        def from_secret(key: str) -> dict[str, object]:
            return {"secretKeyRef": {"name": SECRET_NAME, "key": key}}

        env: list[dict[str, object]] = [
            # Used only when the master realm is created, i.e. on the first start with an empty database.
            {"name": "KC_BOOTSTRAP_ADMIN_CLIENT_ID", "value": ADMIN_CLIENT_ID},
            {"name": "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET", "valueFrom": from_secret("identity-admin-secret")},
            {"name": "JAVA_OPTS_APPEND", "value": HEAP},
        ]
        if args.database_url:
            env.append({"name": "KC_DB_PASSWORD", "valueFrom": from_secret("identity-db-password")})
        probe = {"httpGet": {"path": "/health/ready", "port": "management"}, "periodSeconds": 10}
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": ns, "labels": meta_labels},
            spec={
                "replicas": 1,
                # One writer of the embedded database at a time.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": APP},
                "template": {
                    "metadata": {"labels": meta_labels},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "keycloak",
                                "image": args.image,
                                "args": keycloak_args(args),
                                "env": env,
                                "ports": [
                                    {"name": "http", "containerPort": HTTP_PORT},
                                    {"name": "management", "containerPort": MANAGEMENT_PORT},
                                ],
                                "readinessProbe": probe,
                                # A first start creates the database: give it minutes before liveness counts.
                                "startupProbe": {**probe, "failureThreshold": 30},
                                "livenessProbe": {
                                    "httpGet": {"path": "/health/live", "port": "management"},
                                    "periodSeconds": 20,
                                },
                                "resources": {
                                    "requests": {"cpu": "250m", "memory": args.memory},
                                    "limits": {"memory": args.memory},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": mounts,
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret]),
        )
        self.url = pulumi.Output.concat("http://", NAME, ".", ns, f".svc:{HTTP_PORT}")
        public = args.public_url

        def env_of(url: str) -> dict[str, str]:
            out = {
                "CITYHUB_IDENTITY_URL": url,
                "CITYHUB_IDENTITY_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
                "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": f"{args.backends_mount}/identity-admin-secret",
                "CITYHUB_IDENTITY_REALM": args.realm,
            }
            if public:
                out["CITYHUB_IDENTITY_PUBLIC_URL"] = public
            return out

        self.operator_env = self.url.apply(env_of)
        self.secret_name = secret.metadata.name
        self.register_outputs({"url": self.url, "secret_name": self.secret_name})
