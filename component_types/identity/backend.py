"""The identity backend in the cluster: Keycloak (the city's OIDC provider) in the hub's system namespace.

    keycloak                   Deployment (one replica, Recreate), `kc.sh start` with local caches, health on
                               the management port, a modest heap; its H2 (dev-file) database on the
                               PersistentVolumeClaim keycloak-data, or an external PostgreSQL when
                               cityhub:backends.identity sets databaseUrl (production). Its pods carry the
                               front-door labels and serve HTTP on the front door's target port, so the
                               operator and (behind the city's ingress) departments' applications reach it
                               through the Service `identity` the stack creates: no Service of its own.
    cityhub-identity-backend   Secret (args.secret_name): admin-secret, the operator's admin client secret,
                               from which Keycloak creates that client on its first start; db-password, the
                               external database's password (set the database user's password to it)

Runs where cityhub:systemPlacement says (args.placement), as keycloak.USER.

Settings (cityhub:backends.identity, schema.json x-cityhub.backendSettings): image, storageSize, publicUrl,
databaseUrl, databaseUsername.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import labels
from component_types.identity import keycloak
from components.backends import BackendArgs

NAME = "keycloak"
ADMIN_SECRET_KEY = "admin-secret"
DB_PASSWORD_KEY = "db-password"
STORAGE_SIZE = "2Gi"
MEMORY = "1Gi"
DATA_DIR = "/opt/keycloak/data"


class Backend(pulumi.ComponentResource):
    """Keycloak for the identity component type, and the Secret the operator's identity driver reads."""

    operator_env: pulumi.Output[dict[str, str]]
    """CITYHUB_IDENTITY_* for the operator, which mounts the Secret at args.mount."""

    def __init__(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:IdentityBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns, door = args.namespace, args.ctype.front_door
        image = str(args.settings.get("image") or keycloak.IMAGE)
        public_url = str(args.settings.get("publicUrl") or "")
        database_url = str(args.settings.get("databaseUrl") or "")
        database_username = str(args.settings.get("databaseUsername") or "keycloak")
        meta_labels = args.labels(NAME)

        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": args.secret_name, "namespace": ns, "labels": meta_labels},
            string_data={
                ADMIN_SECRET_KEY: args.key("identity-admin"),
                DB_PASSWORD_KEY: args.key("identity-db"),
            },
            opts=child,
        )
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if not database_url:
            claim: dict[str, Any] = {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": str(args.settings.get("storageSize") or STORAGE_SIZE)}},
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
            mounts.append({"name": "data", "mountPath": DATA_DIR})

        def from_secret(key: str) -> dict[str, Any]:
            return {"secretKeyRef": {"name": args.secret_name, "key": key}}

        env: list[dict[str, Any]] = [
            {"name": keycloak.BOOTSTRAP_CLIENT_ID, "value": keycloak.ADMIN_CLIENT_ID},
            {"name": keycloak.BOOTSTRAP_CLIENT_SECRET, "valueFrom": from_secret(ADMIN_SECRET_KEY)},
            {"name": "JAVA_OPTS_APPEND", "value": keycloak.HEAP},
        ]
        if database_url:
            env.append({"name": "KC_DB_PASSWORD", "valueFrom": from_secret(DB_PASSWORD_KEY)})
        probe = {"httpGet": {"path": keycloak.READY_PATH, "port": "management"}, "periodSeconds": 10}
        pod_labels = args.pod_labels(NAME)
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": ns, "labels": meta_labels},
            spec={
                "replicas": 1,
                # One writer of the embedded database at a time.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {k: pod_labels[k] for k in (labels.NAME, labels.COMPONENT)}},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        **args.placement,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": keycloak.USER,
                            "runAsGroup": keycloak.USER,
                            "fsGroup": keycloak.USER,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": NAME,
                                "image": image,
                                "args": keycloak.cluster_args(
                                    door.target_port,
                                    public_url=public_url,
                                    database_url=database_url,
                                    database_username=database_username,
                                ),
                                "env": env,
                                "ports": [
                                    {"name": "http", "containerPort": door.target_port},
                                    {"name": "management", "containerPort": keycloak.CLUSTER_MANAGEMENT_PORT},
                                ],
                                "readinessProbe": probe,
                                # A first start creates the database: give it minutes before liveness counts.
                                "startupProbe": {**probe, "failureThreshold": 30},
                                "livenessProbe": {
                                    "httpGet": {"path": keycloak.LIVE_PATH, "port": "management"},
                                    "periodSeconds": 20,
                                },
                                "resources": {
                                    "requests": {"cpu": "250m", "memory": MEMORY},
                                    "limits": {"memory": MEMORY},
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
        # The front door: the Service named after the type in the system namespace, selecting these pods.
        self.url = pulumi.Output.from_input(ns).apply(lambda n: f"http://{door.host(n)}:{door.port}")
        admin_secret_file = f"{args.mount}/{ADMIN_SECRET_KEY}"
        self.operator_env = self.url.apply(
            lambda url: keycloak.operator_env(url, admin_secret_file, public_url=public_url)
        )
        self.register_outputs({"url": self.url})
