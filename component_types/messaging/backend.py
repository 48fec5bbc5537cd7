"""The messaging backend in cluster mode: one nats-server with JetStream behind the `messaging` front door.

    nats                      StatefulSet, one replica: client port (the front door's target port, 4222),
                              monitoring 8222 (/healthz), JetStream on a PersistentVolume at /data
    nats-config               ConfigMap: nats-server.conf, trusting only the keys derived from the master
                              secret (decentralized JWT auth, accounts pushed by the operator); public keys
                              and signed JWTs only
    cityhub-messaging-backend Secret: `secret`, the master secret (args.key("nats")), which the operator
                              mounts at args.mount and derives the same keys from

Runs where cityhub:systemPlacement says (args.placement), as the user of the image
hack/images.sh builds from the pinned nats-server (registry.cityhub.local/cityhub/nats:<version>).

Settings (cityhub:backends.messaging): image, storageSize, maxFileStore, credentialsLifetime and
departmentLimits (schema.json, backendSettings); the last two reach the operator as CITYHUB_NATS_* settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_nats.server_config import server_config
from components.backends import BackendArgs

NAME = "nats"
MONITOR_PORT = 8222
STORE = "/data"
SECRET_KEY = "secret"
"""The master secret's key in the backend Secret (a file under args.mount for the operator)."""
IMAGE = "docker.io/library/nats:2.11.9-alpine"
STORAGE_SIZE = "20Gi"
MAX_FILE_STORE = "18G"
DEPARTMENT_LIMITS = {
    "fileStore": "CITYHUB_NATS_ACCOUNT_FILE_STORE",
    "memoryStore": "CITYHUB_NATS_ACCOUNT_MEMORY_STORE",
    "streams": "CITYHUB_NATS_ACCOUNT_STREAMS",
    "consumers": "CITYHUB_NATS_ACCOUNT_CONSUMERS",
    "connections": "CITYHUB_NATS_ACCOUNT_CONNECTIONS",
    "subscriptions": "CITYHUB_NATS_ACCOUNT_SUBSCRIPTIONS",
    "payload": "CITYHUB_NATS_ACCOUNT_PAYLOAD",
    "shares": "CITYHUB_NATS_ACCOUNT_IMPORTS",
    "sharesPerSource": "CITYHUB_NATS_ACCOUNT_IMPORTS_PER_SOURCE",
}
"""cityhub:backends.messaging.departmentLimits → the driver's settings (driver/settings.py)."""


class Backend(pulumi.ComponentResource):
    """A one-replica nats-server StatefulSet with a JetStream volume, and the settings the driver needs."""

    operator_env: dict[str, pulumi.Input[str]]

    def __init__(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:MessagingBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        door = args.ctype.front_door
        image = str(args.settings.get("image", IMAGE))
        storage_size = str(args.settings.get("storageSize", STORAGE_SIZE))
        max_file_store = str(args.settings.get("maxFileStore", MAX_FILE_STORE))
        master = args.key("nats")

        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": args.secret_name, "namespace": args.namespace, "labels": args.labels(NAME)},
            string_data={SECRET_KEY: master},
            opts=child,
        )
        # The configuration holds public keys and JWTs only: safe to unsecret into a ConfigMap.
        config = pulumi.Output.unsecret(
            master.apply(
                lambda secret: server_config(
                    secret.encode(),
                    store_dir=STORE,
                    listen=f"0.0.0.0:{door.target_port}",
                    http=f"0.0.0.0:{MONITOR_PORT}",
                    max_file_store=max_file_store,
                )
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": f"{NAME}-config", "namespace": args.namespace, "labels": args.labels(NAME)},
            data={"nats-server.conf": config},
            opts=child,
        )
        claim: dict[str, object] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage_size}},
            },
        }
        if args.storage_class:
            claim["spec"]["storageClassName"] = args.storage_class  # type: ignore[index]
        k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata={"name": NAME, "namespace": args.namespace, "labels": args.labels(NAME)},
            spec={
                "serviceName": door.name,
                "replicas": 1,
                "selector": {"matchLabels": door.selector},
                "template": {
                    "metadata": {"labels": args.pod_labels(NAME)},
                    "spec": {
                        **args.placement,
                        "securityContext": args.pod_security,
                        "containers": [
                            {
                                "name": "nats",
                                "image": image,
                                "args": ["-c", "/etc/nats/nats-server.conf"],
                                "ports": [
                                    {"name": "main", "containerPort": door.target_port},
                                    {"name": "monitor", "containerPort": MONITOR_PORT},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "monitor"}},
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/nats"},
                                    {"name": "data", "mountPath": STORE},
                                ],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": config_map.metadata.name}}],
                    },
                },
                "volumeClaimTemplates": [claim],
            },
            # A StatefulSet on a cluster without a storage provisioner never becomes ready; don't hang `up`.
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="10m")),
        )
        self.operator_env = {
            "CITYHUB_NATS_URL": pulumi.Output.from_input(args.namespace).apply(
                lambda namespace: f"nats://{door.host(namespace)}:{door.port}"
            ),
            "CITYHUB_NATS_SECRET_FILE": f"{args.mount}/{SECRET_KEY}",
            **driver_settings(args.settings),
        }
        self.register_outputs({"operator_env": self.operator_env})


def driver_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """The driver's settings from cityhub:backends.messaging (credentialsLifetime, departmentLimits)."""
    limits = settings.get("departmentLimits") or {}
    env = {DEPARTMENT_LIMITS[key]: str(value) for key, value in limits.items()}
    if "credentialsLifetime" in settings:
        env["CITYHUB_NATS_CREDENTIALS_LIFETIME"] = str(settings["credentialsLifetime"])
    return env
