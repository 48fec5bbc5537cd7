"""The messaging backend in cluster mode: one nats-server with JetStream behind the `messaging` Service.

Its configuration trusts only the keys derived from the messaging master secret (decentralized JWT auth,
accounts pushed by the operator), so the ConfigMap holds public keys and signed JWTs, never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from component_types.messaging.driver.server import server_config

from cityhub_api import labels

NAME = "nats"
CLIENT_PORT = 4222
MONITOR_PORT = 8222
STORE = "/data"


@dataclass(frozen=True)
class MessagingBackendArgs:
    namespace: pulumi.Input[str]
    """The hub's system namespace; the Foundation's `messaging` Service selects these pods."""
    master_secret: pulumi.Input[str]
    """32+ characters of random text (a Pulumi secret): the NATS operator and account keys derive from it."""
    image: str = "docker.io/library/nats:2.11.9-alpine"
    storage_class: str | None = None
    storage_size: str = "20Gi"
    max_file_store: str = "18G"
    backends_mount: str = "/var/run/cityhub/backends"


class MessagingBackend(pulumi.ComponentResource):
    """A one-replica nats-server StatefulSet with a JetStream volume, and the settings the driver needs."""

    operator_env: dict[str, pulumi.Input[str]]

    def __init__(
        self, name: str, args: MessagingBackendArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:backends:MessagingBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta = {**labels.common(), labels.SERVICE: "messaging", "app.kubernetes.io/name": NAME}
        config = pulumi.Output.unsecret(
            pulumi.Output.from_input(args.master_secret).apply(
                lambda secret: server_config(
                    secret.encode(),
                    store_dir=STORE,
                    listen=f"0.0.0.0:{CLIENT_PORT}",
                    http=f"0.0.0.0:{MONITOR_PORT}",
                    max_file_store=args.max_file_store,
                )
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": f"{NAME}-config", "namespace": args.namespace, "labels": meta},
            data={"nats-server.conf": config},
            opts=child,
        )
        claim: dict[str, object] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": args.storage_size}},
            },
        }
        if args.storage_class:
            claim["spec"]["storageClassName"] = args.storage_class  # type: ignore[index]
        k8s.apps.v1.StatefulSet(
            f"{name}-server",
            metadata={"name": NAME, "namespace": args.namespace, "labels": meta},
            spec={
                "serviceName": "messaging",
                "replicas": 1,
                "selector": {"matchLabels": {labels.SERVICE: "messaging"}},
                "template": {
                    "metadata": {"labels": meta},
                    "spec": {
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                        "containers": [
                            {
                                "name": "nats",
                                "image": args.image,
                                "args": ["-c", "/etc/nats/nats-server.conf"],
                                "ports": [
                                    {"name": "main", "containerPort": CLIENT_PORT},
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
        mount = args.backends_mount.rstrip("/")
        self.operator_env = {
            "CITYHUB_NATS_URL": pulumi.Output.concat(  # type: ignore[dict-item]
                "nats://messaging.", args.namespace, f".svc:{CLIENT_PORT}"
            ),
            "CITYHUB_NATS_SECRET_FILE": f"{mount}/nats-secret",
        }
        self.register_outputs({})
