"""The maps backend in cluster mode: PostGIS and martin in the hub's system namespace.

    maps-postgis   PostgreSQL 15 + PostGIS (StatefulSet); on first start its init script (from the
                   Secret) creates the catalog, tile function and tiles role (drivers/maps/catalog_sql.py)
    maps-tiles     martin (Deployment), connected as the tiles role, serving only /layers/{z}/{x}/{y}; the
                   tile function decides per request which department may read which layer; stateless

Every credential is derived from one master secret (a Pulumi secret): the operator reads it from the Secret
`cityhub-maps-backend`, which this component also fills with the operator's DSN. `operator_env` holds the
CITYHUB_MAPS_* variables for the component operator when that Secret is mounted at `backends_mount`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from component_types.maps.driver.catalog_sql import bootstrap_script
from component_types.maps.driver.credentials import Credentials
from component_types.maps.driver.naming import TILES_ROLE
from component_types.maps.driver.server import DATABASE, martin_config

from cityhub_api import labels

POSTGIS_NAME = "maps-postgis"
TILES_NAME = "maps-tiles"
SECRET_NAME = "cityhub-maps-backend"
POSTGRES_PORT = 5432
TILES_PORT = 3000


@dataclass(frozen=True)
class MapsBackendArgs:
    namespace: pulumi.Input[str]
    """The hub's system namespace (labels.SYSTEM_NAMESPACE)."""
    master_secret: pulumi.Input[str]
    """At least 32 characters of random text (a Pulumi secret): every maps credential derives from it."""
    postgres_password: pulumi.Input[str]
    """The PostgreSQL superuser's password (a Pulumi secret); the operator connects with it."""
    postgis_image: str = "docker.io/postgis/postgis:15-3.5"
    martin_image: str = "ghcr.io/maplibre/martin:1.14.0"
    storage_class: str | None = None
    storage_size: str = "20Gi"
    tiles_replicas: int = 2
    backends_mount: str = "/var/run/cityhub/backends"
    """Where the component operator mounts SECRET_NAME (component_operator.BACKENDS_MOUNT)."""


class MapsBackend(pulumi.ComponentResource):
    """PostGIS + martin for the maps component, and the Secret the operator's maps driver reads."""

    def __init__(self, name: str, args: MapsBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:MapsBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        host = pulumi.Output.concat(POSTGIS_NAME, ".", ns, ".svc")
        tiles_password = pulumi.Output.secret(
            pulumi.Output.from_input(args.master_secret).apply(
                lambda s: Credentials(s.encode()).tiles_password()
            )
        )
        init_sql = pulumi.Output.secret(tiles_password.apply(bootstrap_script))
        dsn = pulumi.Output.secret(
            pulumi.Output.concat(
                "postgresql://postgres:", args.postgres_password, "@", host, f":{POSTGRES_PORT}/{DATABASE}"
            )
        )
        tiles_url = pulumi.Output.concat(
            "postgresql://", TILES_ROLE, ":", tiles_password, "@", host, f":{POSTGRES_PORT}/{DATABASE}"
        )
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={
                "name": SECRET_NAME,
                "namespace": ns,
                "labels": {**labels.common(), labels.SERVICE: "maps"},
            },
            string_data={
                "maps-secret": args.master_secret,
                "maps-dsn": dsn,
                "postgres-password": args.postgres_password,
                "tiles-database-url": pulumi.Output.secret(tiles_url),
                # Run once by the postgis image's entrypoint on an empty data directory.
                "10-cityhub-maps.sql": init_sql,
            },
            opts=child,
        )
        self._postgis(name, args, secret, child)
        self._martin(name, args, secret, child)
        self.tile_url = pulumi.Output.concat("http://", TILES_NAME, ".", ns, f".svc:{TILES_PORT}")
        self.operator_env = self.tile_url.apply(
            lambda url: {
                "CITYHUB_MAPS_DSN_FILE": f"{args.backends_mount}/maps-dsn",
                "CITYHUB_MAPS_SECRET_FILE": f"{args.backends_mount}/maps-secret",
                "CITYHUB_MAPS_TILE_URL": url,
            }
        )
        self.secret_name = secret.metadata.name
        self.register_outputs({"tile_url": self.tile_url, "secret_name": self.secret_name})

    def _postgis(
        self, name: str, args: MapsBackendArgs, secret: k8s.core.v1.Secret, child: pulumi.ResourceOptions
    ) -> None:
        app = {"app.kubernetes.io/name": POSTGIS_NAME}
        k8s.core.v1.Service(
            f"{name}-postgis",
            metadata={
                "name": POSTGIS_NAME,
                "namespace": args.namespace,
                "labels": {**labels.common(), **app},
            },
            spec={"selector": app, "ports": [{"name": "postgres", "port": POSTGRES_PORT}]},
            opts=child,
        )
        claim: dict[str, object] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.storage_size}},
        }
        if args.storage_class:
            claim["storageClassName"] = args.storage_class
        k8s.apps.v1.StatefulSet(
            f"{name}-postgis",
            metadata={
                "name": POSTGIS_NAME,
                "namespace": args.namespace,
                "labels": {**labels.common(), **app},
            },
            spec={
                "serviceName": POSTGIS_NAME,
                "replicas": 1,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": {**labels.common(), **app, labels.SERVICE: "maps"}},
                    "spec": {
                        "securityContext": {"fsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "postgis",
                                "image": args.postgis_image,
                                "env": [
                                    {"name": "POSTGRES_DB", "value": DATABASE},
                                    {
                                        "name": "POSTGRES_PASSWORD",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": SECRET_NAME, "key": "postgres-password"}
                                        },
                                    },
                                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                                ],
                                "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
                                "readinessProbe": {
                                    "exec": {"command": ["pg_isready", "-U", "postgres", "-d", DATABASE]},
                                    "periodSeconds": 5,
                                },
                                "resources": {
                                    "requests": {"cpu": "500m", "memory": "1Gi"},
                                    "limits": {"memory": "2Gi"},
                                },
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                    {
                                        "name": "init",
                                        "mountPath": "/docker-entrypoint-initdb.d",
                                        "readOnly": True,
                                    },
                                ],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "init",
                                "secret": {
                                    "secretName": SECRET_NAME,
                                    "items": [{"key": "10-cityhub-maps.sql", "path": "10-cityhub-maps.sql"}],
                                },
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret]),
        )

    def _martin(
        self, name: str, args: MapsBackendArgs, secret: k8s.core.v1.Secret, child: pulumi.ResourceOptions
    ) -> None:
        app = {"app.kubernetes.io/name": TILES_NAME}
        config = k8s.core.v1.ConfigMap(
            f"{name}-martin",
            metadata={"name": TILES_NAME, "namespace": args.namespace, "labels": labels.common()},
            # martin substitutes ${DATABASE_URL} from its environment (the Secret): no password in the map.
            data={"config.yaml": martin_config("${DATABASE_URL}", listen=f"0.0.0.0:{TILES_PORT}")},
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-tiles",
            metadata={"name": TILES_NAME, "namespace": args.namespace, "labels": {**labels.common(), **app}},
            spec={"selector": app, "ports": [{"name": "http", "port": TILES_PORT}]},
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-tiles",
            metadata={"name": TILES_NAME, "namespace": args.namespace, "labels": {**labels.common(), **app}},
            spec={
                "replicas": args.tiles_replicas,
                "selector": {"matchLabels": app},
                "template": {
                    "metadata": {"labels": {**labels.common(), **app, labels.SERVICE: "maps"}},
                    "spec": {
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "martin",
                                "image": args.martin_image,
                                "args": ["--config", "/etc/martin/config.yaml"],
                                "env": [
                                    {
                                        "name": "DATABASE_URL",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": SECRET_NAME, "key": "tiles-database-url"}
                                        },
                                    }
                                ],
                                "ports": [{"name": "http", "containerPort": TILES_PORT}],
                                # martin exits when PostGIS or the tile function is not there yet; the
                                # restart policy retries until the init script has run.
                                "readinessProbe": {
                                    "httpGet": {"path": "/health", "port": "http"},
                                    "periodSeconds": 5,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": "http"},
                                    "periodSeconds": 20,
                                },
                                "resources": {
                                    "requests": {"cpu": "250m", "memory": "128Mi"},
                                    "limits": {"memory": "512Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/martin", "readOnly": True}
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": TILES_NAME}}],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config, secret]),
        )
