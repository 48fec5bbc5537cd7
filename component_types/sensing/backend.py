"""The sensing backend in cluster mode: the MQTT gateway and the relay behind the `sensing` front door.

    sensing-gateway          StatefulSet, one replica: nats-server with its MQTT listener (the front door's
                             main port, 1883; TLS with `tlsSecret`), its NATS port (the front door's `nats`
                             port, 4222: apps read telemetry there), monitoring 8222, JetStream on a volume
    sensing-gateway-config   ConfigMap: the server's configuration (public keys and signed JWTs only)
    sensing-relay            Deployment, `python -m component_types.sensing.relay` from the operator's image:
                             the plans' size and rate limits (one replica: rates are counted in one place)
    cityhub-sensing-backend  Secret: `secret`, the gateway's master secret (args.key("sensing")), mounted by
                             the operator at args.mount and by the relay

Settings (cityhub:backends.sensing): image, storageSize, maxFileStore, tlsSecret, publicMqttUrl.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api.labels import NAME
from cityhub_nats.server_config import server_config
from components.backends import BackendArgs

GATEWAY = "sensing-gateway"
RELAY = "sensing-relay"
MONITOR_PORT = 8222
RELAY_METRICS_PORT = 9465
STORE = "/data"
TLS_DIR = "/etc/nats/tls"
SECRET_KEY = "secret"
IMAGE = "docker.io/library/nats:2.11.9-alpine"
STORAGE_SIZE = "20Gi"
MAX_FILE_STORE = "18G"
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


class Backend(pulumi.ComponentResource):
    """The MQTT gateway StatefulSet, the relay Deployment and the settings the sensing driver needs."""

    operator_env: dict[str, pulumi.Input[str]]

    def __init__(self, name: str, args: BackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:SensingBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        door = args.ctype.front_door
        nats_port = next(p for p in door.ports if p.name == "nats")
        settings = args.settings
        tls_secret = settings.get("tlsSecret")
        master = args.key("sensing")
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": args.secret_name, "namespace": args.namespace, "labels": args.labels(GATEWAY)},
            string_data={SECRET_KEY: master},
            opts=child,
        )
        config = pulumi.Output.unsecret(
            master.apply(
                lambda secret: server_config(
                    secret.encode(),
                    store_dir=STORE,
                    listen=f"0.0.0.0:{nats_port.target_port}",
                    http=f"0.0.0.0:{MONITOR_PORT}",
                    server_name=GATEWAY,
                    max_file_store=str(settings.get("maxFileStore", MAX_FILE_STORE)),
                    mqtt_listen=f"0.0.0.0:{door.target_port}",
                    mqtt_tls=(f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key") if tls_secret else None,
                )
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={
                "name": f"{GATEWAY}-config",
                "namespace": args.namespace,
                "labels": args.labels(GATEWAY),
            },
            data={"nats-server.conf": config},
            opts=child,
        )
        self._gateway(name, args, config_map, tls_secret)
        self._relay(name, args, nats_port.port)
        host = pulumi.Output.from_input(args.namespace).apply(door.host)
        scheme = "mqtts" if tls_secret else "mqtt"
        self.operator_env = {
            "CITYHUB_SENSING_URL": host.apply(lambda h: f"nats://{h}:{nats_port.port}"),
            "CITYHUB_SENSING_SECRET_FILE": f"{args.mount}/{SECRET_KEY}",
            "CITYHUB_SENSING_MQTT_URL": settings.get("publicMqttUrl")
            or host.apply(lambda h: f"{scheme}://{h}:{door.port}"),
        }
        self.register_outputs({"operator_env": self.operator_env})

    def _gateway(
        self, name: str, args: BackendArgs, config_map: k8s.core.v1.ConfigMap, tls_secret: Any
    ) -> None:
        door = args.ctype.front_door
        volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": config_map.metadata.name}}]
        mounts: list[dict[str, Any]] = [
            {"name": "config", "mountPath": "/etc/nats/nats-server.conf", "subPath": "nats-server.conf"},
            {"name": "data", "mountPath": STORE},
        ]
        if tls_secret:
            volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
            mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        claim: dict[str, Any] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": str(args.settings.get("storageSize", STORAGE_SIZE))}},
            },
        }
        if args.storage_class:
            claim["spec"]["storageClassName"] = args.storage_class
        k8s.apps.v1.StatefulSet(
            f"{name}-gateway",
            metadata={"name": GATEWAY, "namespace": args.namespace, "labels": args.labels(GATEWAY)},
            spec={
                "serviceName": door.name,
                "replicas": 1,
                "selector": {"matchLabels": door.selector},
                "template": {
                    "metadata": {"labels": args.pod_labels(GATEWAY)},
                    "spec": {
                        **args.placement,
                        "securityContext": args.pod_security,
                        "containers": [
                            {
                                "name": "gateway",
                                "image": str(args.settings.get("image", IMAGE)),
                                "args": ["-c", "/etc/nats/nats-server.conf"],
                                "ports": [
                                    *({"name": p.name, "containerPort": p.target_port} for p in door.ports),
                                    {"name": "monitor", "containerPort": MONITOR_PORT},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "monitor"}},
                                "volumeMounts": mounts,
                                "securityContext": HARDENED,
                            }
                        ],
                        "volumes": volumes,
                    },
                },
                "volumeClaimTemplates": [claim],
            },
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(create="10m")),
        )

    def _relay(self, name: str, args: BackendArgs, nats_port: int) -> None:
        labels = args.labels(RELAY)
        # Through the front door's NATS port: inside cityhub-system the hub's parts reach each other.
        url = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: f"nats://{args.ctype.front_door.host(ns)}:{nats_port}"
        )
        k8s.apps.v1.Deployment(
            f"{name}-relay",
            metadata={"name": RELAY, "namespace": args.namespace, "labels": labels},
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {NAME: RELAY}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **args.placement,
                        "automountServiceAccountToken": False,
                        "securityContext": args.pod_security,
                        "containers": [
                            {
                                "name": "relay",
                                "image": args.operator_image,
                                "command": ["python", "-m", "component_types.sensing.relay"],
                                "args": [
                                    "--url",
                                    url,
                                    "--secret-file",
                                    f"/var/run/cityhub/sensing/{SECRET_KEY}",
                                    "--metrics-port",
                                    str(RELAY_METRICS_PORT),
                                ],
                                "ports": [{"name": "metrics", "containerPort": RELAY_METRICS_PORT}],
                                "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}},
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "96Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                                "volumeMounts": [
                                    {
                                        "name": "secret",
                                        "mountPath": "/var/run/cityhub/sensing",
                                        "readOnly": True,
                                    }
                                ],
                                "securityContext": HARDENED,
                            }
                        ],
                        "volumes": [{"name": "secret", "secret": {"secretName": args.secret_name}}],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
