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

With edge clusters (多级贯通), the hub's nats-server also has JetStream domain `hub` and a leafnode
listener (LEAFNODE_PORT) behind Service `messaging-leafnodes` (`leafnodes`: the address edges dial, the
Service type, the sources allowed by a NetworkPolicy), and each edge runs `EdgeBackend`:

    nats (edge)               StatefulSet on the edge: JetStream domain = the edge's name, a leaf remote per
                              department of the edge to `leafnodes.url`, accounts preloaded (edge_config.py);
                              selected by the edge's own `messaging` front door, where its departments'
                              workloads connect, so they keep publishing while the uplink is down
    nats-edge                 Secret on the edge: that configuration and one leaf credentials file per
                              department (a user key of that department's account, nothing else); the
                              master secret stays on the hub
    messaging-uplink          Service on the edge (`edge.serviceType`, `edge.sources`): where the edge's
                              operator, on the hub, reaches this nats-server (`edge.operatorUrl`)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub_api import units
from cityhub_nats.server_config import server_config
from component_types.messaging import edges
from component_types.messaging.edge_config import edge_config, edge_credentials
from components.backends import BackendArgs, EdgeBackendArgs

NAME = "nats"
MONITOR_PORT = 8222
STORE = "/data"
SECRET_KEY = "secret"
"""The master secret's key in the backend Secret (a file under args.mount for the operator)."""
IMAGE = "docker.io/library/nats:2.11.9-alpine"
STORAGE_SIZE = "20Gi"
MAX_FILE_STORE = "18G"
LEAFNODE_PORT = 7422
CONFIG_DIGEST = "cityhub.io/config-digest"
EDGE_STORAGE_SIZE = "10Gi"
EDGE_MAX_FILE_STORE = "9G"
DEPARTMENT_FILE_STORE = "8Gi"
"""The driver's default for what one department's streams may reserve (driver/settings.py)."""
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
        hub_edges = bool(args.edges)
        config = pulumi.Output.unsecret(
            master.apply(
                lambda secret: server_config(
                    secret.encode(),
                    store_dir=STORE,
                    listen=f"0.0.0.0:{door.target_port}",
                    http=f"0.0.0.0:{MONITOR_PORT}",
                    max_file_store=max_file_store,
                    leafnode_listen=f"0.0.0.0:{LEAFNODE_PORT}" if hub_edges else None,
                    jetstream_domain=edges.HUB_DOMAIN if hub_edges else None,
                )
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": f"{NAME}-config", "namespace": args.namespace, "labels": args.labels(NAME)},
            data={"nats-server.conf": config},
            opts=child,
        )
        volume = {"name": "config", "configMap": {"name": config_map.metadata.name}}
        nats_statefulset(name, args, image, storage_size, (volume, config), hub_edges, child)
        if hub_edges:
            exposed(
                name,
                args,
                "leafnodes",
                ("leafnodes", LEAFNODE_PORT),
                args.settings.get("leafnodes") or {},
                child,
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


def nats_statefulset(
    name: str,
    args: BackendArgs,
    image: str,
    storage_size: str,
    config: tuple[dict[str, Any], pulumi.Input[str]],
    leafnode_listener: bool,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.StatefulSet:
    """The one-replica nats-server with its JetStream volume, selected by the cluster's `messaging` front
    door (the hub's, or an edge's own). `config`: the volume holding nats-server.conf and that text, whose
    digest in the pod template restarts the server when it changes (an edge gains a department, the hub its
    first edge): a mounted file changing alone would go unread."""
    config_volume, text = config
    digest = pulumi.Output.from_input(text).apply(lambda t: hashlib.sha256(t.encode()).hexdigest()[:16])
    door = args.ctype.front_door
    claim: dict[str, Any] = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage_size}}},
    }
    if args.storage_class:
        claim["spec"]["storageClassName"] = args.storage_class
    ports = [
        {"name": "main", "containerPort": door.target_port},
        {"name": "monitor", "containerPort": MONITOR_PORT},
    ]
    if leafnode_listener:
        ports.append({"name": "leafnodes", "containerPort": LEAFNODE_PORT})
    return k8s.apps.v1.StatefulSet(
        f"{name}-server",
        metadata={"name": NAME, "namespace": args.namespace, "labels": args.labels(NAME)},
        spec={
            "serviceName": door.name,
            "replicas": 1,
            "selector": {"matchLabels": door.selector},
            "template": {
                "metadata": {"labels": args.pod_labels(NAME), "annotations": {CONFIG_DIGEST: digest}},
                "spec": {
                    **args.placement,
                    "securityContext": args.pod_security,
                    "containers": [
                        {
                            "name": "nats",
                            "image": image,
                            "args": ["-c", "/etc/nats/nats-server.conf"],
                            "ports": ports,
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
                    "volumes": [config_volume],
                },
            },
            "volumeClaimTemplates": [claim],
        },
        # A StatefulSet on a cluster without a storage provisioner never becomes ready; don't hang `up`.
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create="10m"))
        ),
    )


def exposed(
    name: str,
    args: BackendArgs,
    purpose: str,
    port: tuple[str, int],
    settings: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> None:
    """A port of the nats-server reached from another cluster: Service messaging-<purpose> (LoadBalancer or
    NodePort, as `serviceType` says) and the NetworkPolicy admitting connections from `sources` (the system
    namespace denies every other ingress). Every connection still needs credentials signed by the city's
    operator key: the hub's leafnode listener (`leafnodes`) takes a department's leaf credentials, binding the
    connection to that department's account; an edge's uplink (`edge`) takes the operator's."""
    door = args.ctype.front_door
    service = f"{door.name}-{purpose}"
    port_name, number = port
    k8s.core.v1.Service(
        f"{name}-{purpose}",
        metadata={"name": service, "namespace": args.namespace, "labels": args.labels(NAME)},
        spec={
            "type": settings.get("serviceType", "LoadBalancer"),
            "selector": door.selector,
            "ports": [{"name": port_name, "port": number, "targetPort": port_name}],
        },
        opts=opts,
    )
    k8s.networking.v1.NetworkPolicy(
        f"{name}-{purpose}",
        metadata={"name": f"allow-{service}", "namespace": args.namespace, "labels": args.labels(NAME)},
        spec={
            "podSelector": {"matchLabels": door.selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": cidr}} for cidr in settings.get("sources", ["0.0.0.0/0"])],
                    "ports": [{"protocol": "TCP", "port": number}],
                }
            ],
        },
        opts=opts,
    )


class EdgeBackend(pulumi.ComponentResource):
    """An edge cluster's nats-server, a leaf node of the hub's (edge_config.py), and the settings the edge's
    operator adds (CITYHUB_NATS_EDGE*: the driver makes the edge's streams through the leaf node)."""

    operator_env: dict[str, pulumi.Input[str]]

    def __init__(self, name: str, args: EdgeBackendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:backends:MessagingEdgeBackend", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        door = args.ctype.front_door
        edge_settings = dict(args.settings.get("edge") or {})
        leafnode_url = str((args.settings.get("leafnodes") or {}).get("url", ""))
        if not leafnode_url or "operatorUrl" not in edge_settings:
            # cityhub.config_edges refuses this before anything changes; a guard for direct use.
            raise ValueError("cityhub:backends.messaging.leafnodes and .edge are required with edge clusters")
        max_file_store = str(edge_settings.get("maxFileStore", EDGE_MAX_FILE_STORE))
        limits = args.settings.get("departmentLimits") or {}
        file_store = units.parse("quantity", str(limits.get("fileStore", DEPARTMENT_FILE_STORE)))
        departments = dict.fromkeys(
            args.departments, min(file_store, units.parse("quantity", max_file_store))
        )

        def files(secret: str) -> dict[str, str]:
            config = edge_config(
                secret.encode(),
                edge=args.edge,
                departments=departments,
                hub_leafnode_urls=[leafnode_url],
                store_dir=STORE,
                creds_dir="/etc/nats",
                listen=f"0.0.0.0:{door.target_port}",
                http=f"0.0.0.0:{MONITOR_PORT}",
                max_file_store=max_file_store,
            )
            return {
                "nats-server.conf": config,
                **edge_credentials(secret.encode(), args.edge, list(departments)),
            }

        rendered = args.key("nats").apply(files)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": f"{NAME}-edge", "namespace": args.namespace, "labels": args.labels(NAME)},
            string_data=rendered,
            opts=child,
        )
        image = str(args.settings.get("image", IMAGE))
        storage_size = str(edge_settings.get("storageSize", EDGE_STORAGE_SIZE))
        volume = {"name": "config", "secret": {"secretName": secret.metadata.name}}
        # The digest covers the leaf credentials too; it reveals nothing of them.
        text = pulumi.Output.unsecret(
            rendered.apply(lambda f: "\n".join(f"{k}\n{v}" for k, v in sorted(f.items())))
        )
        nats_statefulset(name, args, image, storage_size, (volume, text), False, child)
        exposed(name, args, "uplink", ("main", door.target_port), edge_settings, child)
        self.operator_env = {
            "CITYHUB_NATS_EDGE": args.edge,
            # The edge's own front door, as its departments' workloads reach it on the edge …
            "CITYHUB_NATS_EDGE_URL": pulumi.Output.from_input(args.namespace).apply(
                lambda namespace: f"nats://{door.host(namespace)}:{door.port}"
            ),
            # … and the edge's uplink Service, as its operator reaches it from the hub.
            "CITYHUB_NATS_EDGE_OPERATOR_URL": str(edge_settings["operatorUrl"]).replace("{edge}", args.edge),
        }
        self.register_outputs({"operator_env": self.operator_env})
