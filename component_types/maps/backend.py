"""The maps backend in cluster mode (cityhub:backends.deploy names maps): PostGIS and martin in the hub's
system namespace.

    maps-postgis   PostgreSQL 15 + PostGIS (StatefulSet) behind its own Service `maps-postgis` (internal:
                   the operator and martin connect to it); on first start its init script (from the Secret)
                   creates the catalog, tile function and tiles role (catalog_sql.py)
    maps-tiles     martin (Deployment): the maps front door. Its pods carry the front-door labels, so the
                   stack's Service `maps` (port 3000) selects them; connected as the tiles role, it serves
                   only /layers/{z}/{x}/{y}, and the tile function decides per request which department may
                   read which layer; stateless
    maps-postgis   NetworkPolicy: martin may reach PostGIS (the system namespace denies other ingress);
                   departments of the zones maps serves reach it too (the front door's side door, for
                   writing their features: components/network.py)

Both run where cityhub:systemPlacement says (args.placement), as non-root users (PostGIS as 999, the
postgres user of the upstream image and of hack/images.sh's; martin as 65532).
Settings (cityhub:backends.maps): postgisImage, martinImage, storageSize.

Every credential derives from cityhub:backendsMasterKey: the Secret `args.secret_name`, which the operator
mounts at `args.mount`, holds the maps master secret, the superuser's password and DSN, martin's database
URL and the init script. Imports no database client: the SQL and martin's config are plain text rendered
by the type's neutral modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import labels
from component_types.maps.catalog_sql import bootstrap_script
from component_types.maps.credentials import Credentials
from component_types.maps.martin_config import martin_config
from component_types.maps.naming import DATABASE, SUPERUSER, TILES_ROLE
from components.backends import IMAGE_USER, BackendArgs

POSTGIS_NAME = "maps-postgis"
TILES_NAME = "maps-tiles"
POSTGRES_PORT = 5432
POSTGRES_USER = 999
"""The postgres user of the upstream image and of hack/images.sh's: PostGIS runs as it (never as root)."""
POSTGIS_IMAGE = "docker.io/postgis/postgis:15-3.5"
MARTIN_IMAGE = "ghcr.io/maplibre/martin:1.14.0"
STORAGE_SIZE = "20Gi"
TILES_REPLICAS = 2
INIT_SCRIPT = "10-cityhub-maps.sql"

# Keys of the Secret args.secret_name (files under args.mount in the operator's pod).
SECRET_KEY = "secret"
"""The maps master secret (args.key("maps")): department passwords, tile tokens, the tiles password."""
POSTGRES_PASSWORD_KEY = "postgres-password"
"""The PostgreSQL superuser's password (args.key("maps-postgres")); the PostGIS image sets it on init."""
DSN_KEY = "dsn"
"""The operator's connection as the superuser: postgresql://postgres:…@maps-postgis.<ns>.svc:5432/…"""
TILES_URL_KEY = "tiles-database-url"
"""martin's connection as the tiles role (its DATABASE_URL)."""


class Backend(pulumi.ComponentResource):
    """PostGIS + martin for the maps component type, and the Secret the operator's maps driver reads."""

    operator_env: pulumi.Output[dict[str, str]]
    """CITYHUB_MAPS_*: files under args.mount and the front door's tile URL."""

    def __init__(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:MapsBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        master = args.key("maps")
        postgres_password = args.key("maps-postgres")
        host = pulumi.Output.concat(POSTGIS_NAME, ".", ns, f".svc:{POSTGRES_PORT}")
        tiles_password = pulumi.Output.secret(
            master.apply(lambda s: Credentials(s.encode()).tiles_password())
        )
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": args.secret_name, "namespace": ns, "labels": args.labels(args.secret_name)},
            string_data={
                SECRET_KEY: master,
                POSTGRES_PASSWORD_KEY: postgres_password,
                DSN_KEY: pulumi.Output.secret(
                    pulumi.Output.concat(
                        f"postgresql://{SUPERUSER}:", postgres_password, "@", host, f"/{DATABASE}"
                    )
                ),
                TILES_URL_KEY: pulumi.Output.secret(
                    pulumi.Output.concat(
                        f"postgresql://{TILES_ROLE}:", tiles_password, "@", host, f"/{DATABASE}"
                    )
                ),
                # Run once by the PostGIS image's entrypoint on an empty data directory.
                INIT_SCRIPT: pulumi.Output.secret(tiles_password.apply(bootstrap_script)),
            },
            opts=child,
        )
        after_secret = pulumi.ResourceOptions(parent=self, depends_on=[secret])
        self._postgis(name, args, after_secret)
        self._martin(name, args, after_secret)
        self._network_policy(name, args, child)
        door = args.ctype.front_door
        self.tile_url = pulumi.Output.concat("http://", door.name, ".", ns, f".svc:{door.port}")
        self.operator_env = self.tile_url.apply(
            lambda url: {
                "CITYHUB_MAPS_DSN_FILE": f"{args.mount}/{DSN_KEY}",
                "CITYHUB_MAPS_SECRET_FILE": f"{args.mount}/{SECRET_KEY}",
                "CITYHUB_MAPS_TILE_URL": url,
            }
        )
        self.register_outputs({"tile_url": self.tile_url})

    def _postgis(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions) -> None:
        # The selector is the name only: a StatefulSet's selector cannot change once created.
        selector = {labels.NAME: POSTGIS_NAME}
        own = args.labels(POSTGIS_NAME)  # not the front door's: departments reach martin, not PostGIS
        k8s.core.v1.Service(
            f"{name}-postgis",
            metadata={"name": POSTGIS_NAME, "namespace": args.namespace, "labels": own},
            spec={"selector": selector, "ports": [{"name": "postgres", "port": POSTGRES_PORT}]},
            opts=opts,
        )
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(args.settings.get("storageSize") or STORAGE_SIZE)}},
        }
        if args.storage_class:
            claim["storageClassName"] = args.storage_class
        container = {
            "name": "postgis",
            "image": str(args.settings.get("postgisImage") or POSTGIS_IMAGE),
            "env": [
                {"name": "POSTGRES_DB", "value": DATABASE},
                {"name": "POSTGRES_USER", "value": SUPERUSER},
                {"name": "POSTGRES_PASSWORD", "valueFrom": _secret_ref(args, POSTGRES_PASSWORD_KEY)},
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
            "readinessProbe": {
                "exec": {"command": ["pg_isready", "-U", SUPERUSER, "-d", DATABASE]},
                "periodSeconds": 5,
            },
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
            ],
        }
        k8s.apps.v1.StatefulSet(
            f"{name}-postgis",
            metadata={"name": POSTGIS_NAME, "namespace": args.namespace, "labels": own},
            spec={
                "serviceName": POSTGIS_NAME,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": own},
                    "spec": {
                        **args.placement,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": POSTGRES_USER,
                            "runAsGroup": POSTGRES_USER,
                            "fsGroup": POSTGRES_USER,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {
                                "name": "init",
                                "secret": {
                                    "secretName": args.secret_name,
                                    "items": [{"key": INIT_SCRIPT, "path": INIT_SCRIPT}],
                                },
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
            },
            opts=opts,
        )

    def _martin(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions) -> None:
        port = args.ctype.front_door.target_port
        config = k8s.core.v1.ConfigMap(
            f"{name}-martin",
            metadata={"name": TILES_NAME, "namespace": args.namespace, "labels": args.labels(TILES_NAME)},
            # martin substitutes ${DATABASE_URL} from its environment (the Secret): no password in the map.
            data={"config.yaml": martin_config("${DATABASE_URL}", listen=f"0.0.0.0:{port}")},
            opts=pulumi.ResourceOptions(parent=self),
        )
        container = {
            "name": "martin",
            "image": str(args.settings.get("martinImage") or MARTIN_IMAGE),
            "args": ["--config", "/etc/martin/config.yaml"],
            "env": [{"name": "DATABASE_URL", "valueFrom": _secret_ref(args, TILES_URL_KEY)}],
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 20},
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "config", "mountPath": "/etc/martin", "readOnly": True}],
        }
        k8s.apps.v1.Deployment(
            f"{name}-tiles",
            metadata={"name": TILES_NAME, "namespace": args.namespace, "labels": args.labels(TILES_NAME)},
            spec={
                "replicas": TILES_REPLICAS,
                "selector": {"matchLabels": {labels.NAME: TILES_NAME}},
                "template": {
                    # The front door's labels: the stack's Service `maps` selects these pods.
                    "metadata": {"labels": args.pod_labels(TILES_NAME)},
                    "spec": {
                        **args.placement,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": IMAGE_USER,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        # martin exits when PostGIS or the tile function is not there yet: wait until
                        # PostGIS takes TCP connections, which it does only once its init script has run
                        # (the init scripts run on a server listening on its socket alone, upstream's
                        # entrypoint and hack/images.sh's alike), instead of crash-looping until then.
                        "initContainers": [self._wait_for_postgis(args)],
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": TILES_NAME}}],
                    },
                },
            },
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[config])),
        )

    @staticmethod
    def _wait_for_postgis(args: BackendArgs) -> dict[str, Any]:
        """pg_isready from the PostGIS image (which martin's has not) until PostGIS answers on its Service."""
        check = f"pg_isready -q -t 2 -h {POSTGIS_NAME} -p {POSTGRES_PORT} -U {SUPERUSER}"
        return {
            "name": "wait-for-postgis",
            "image": str(args.settings.get("postgisImage") or POSTGIS_IMAGE),
            "command": ["sh", "-c", f"until {check}; do sleep 1; done"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": {
                # The image's own user (libpq looks the user up in the image's passwd).
                "runAsUser": POSTGRES_USER,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }

    def _network_policy(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions) -> None:
        """The system namespace admits only the operator and departments (to front doors): martin needs
        PostGIS too."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-postgis-from-tiles",
            metadata={"name": POSTGIS_NAME, "namespace": args.namespace, "labels": args.labels(POSTGIS_NAME)},
            spec={
                "podSelector": {"matchLabels": {labels.NAME: POSTGIS_NAME}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {labels.NAME: TILES_NAME}}}],
                        "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}],
                    }
                ],
            },
            opts=opts,
        )


def _secret_ref(args: BackendArgs, key: str) -> Mapping[str, Any]:
    return {"secretKeyRef": {"name": args.secret_name, "key": key}}
