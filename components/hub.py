"""One cluster's share of the city hub: every component, wired in the order they depend on each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import Cluster, HubConfig, Storage
from cityhub_api.catalog import Offering
from cityhub_api.labels import GPU_POOL
from components.admission import AdmissionArgs, ComponentAdmission, catalog_offerings
from components.backends import SharedBackends, SharedBackendsArgs
from components.component_operator import ComponentOperator, ComponentOperatorArgs
from components.compute import Compute, ComputeArgs, priority_class_for
from components.department_roles import DepartmentRoles, DepartmentRolesArgs
from components.edge_operator import EdgeLink
from components.foundation import Foundation, FoundationArgs
from components.gpu_pool import GpuInferencePool, GpuInferencePoolArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.storage import StorageTiers, StorageTiersArgs
from components.tenancy import DepartmentTenancy, DepartmentTenancyArgs


def kubeconfig_path(cluster: Cluster) -> str | None:
    """A relative `kubeconfig` is the project's (e.g. .state/clusters/<edge>/kubeconfig of an embedded edge),
    whatever directory the program and the provider happen to run in."""
    if cluster.kubeconfig is None or Path(cluster.kubeconfig).is_absolute():
        return cluster.kubeconfig
    return str(Path(pulumi.get_root_directory()) / cluster.kubeconfig)


@dataclass(frozen=True)
class ClusterHubArgs:
    config: HubConfig
    cluster: Cluster
    offerings: tuple[Offering, ...] = ()
    """The catalog the operator serves (validated catalog entries of the types)."""
    edge_links: tuple[EdgeLink, ...] = ()
    """On the hub: the edges whose operators run here (their ClusterHubs' `edge_link`)."""
    api_server: str | None = None
    """On an edge whose operator the stack deploys: its API server as the hub's pods reach it."""


class ClusterHub(pulumi.ComponentResource):
    """The hub on one cluster (the city hub or a district edge cluster): the system namespace and shared
    service endpoints, the department roles, a tenancy per department assigned to the cluster, network
    policies, quotas and priorities, the GPU pool, storage tiers, and the operator and monitoring slots.
    Child names start with the cluster's name, so several clusters can live in one stack."""

    departments: dict[str, dict[str, object]]
    """Department slug -> namespace, display name, zone, priority class, quotas, storage classes."""
    endpoints: dict[str, str]
    gpu_pool: dict[str, object] | None
    edge_link: EdgeLink | None
    """On an edge whose operator the stack deploys: what the hub needs to run it."""

    def __init__(self, name: str, args: ClusterHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:hub:ClusterHub", name, {}, opts)
        config, cluster = args.config, args.cluster
        child = pulumi.ResourceOptions(parent=self)
        if not cluster.ambient:
            provider = k8s.Provider(
                f"{name}-cluster", kubeconfig=kubeconfig_path(cluster), context=cluster.context, opts=child
            )
            child = pulumi.ResourceOptions(parent=self, providers={"kubernetes": provider})
        departments = config.departments_on(cluster.name)
        edge = cluster.name if cluster.role == "edge" else None

        foundation = Foundation(
            name,
            FoundationArgs(
                city=config.city, division_code=config.division_code, shared_services=config.shared_services
            ),
            opts=child,
        )
        roles = DepartmentRoles(name, DepartmentRolesArgs(departments=departments), opts=child)
        namespaces: dict[str, pulumi.Input[str]] = {}
        for dept in departments:
            tenancy = DepartmentTenancy(
                f"{name}-{dept.slug}",
                DepartmentTenancyArgs(
                    department=dept, priority_class=priority_class_for(dept, config.mode), roles=roles.names
                ),
                opts=child,
            )
            namespaces[dept.slug] = tenancy.namespace_name
        Network(
            name,
            NetworkArgs(
                zones=config.zones,
                flows=config.flows,
                shared_services=config.shared_services,
                departments=departments,
                namespaces=namespaces,
                system_namespace=foundation.namespace_name,
            ),
            opts=child,
        )
        compute = Compute(
            name,
            ComputeArgs(
                departments=departments, namespaces=namespaces, mode=config.mode, limits=config.limits
            ),
            opts=child,
        )
        storage = StorageTiers(
            name,
            StorageTiersArgs(
                storage=config.storage or Storage(mode="dynamic", classes=()),
                departments=departments,
                namespaces=namespaces,
                mode=config.mode,
            ),
            opts=child,
        )
        self.gpu_pool = None
        if config.gpu_pool.gpus > 0:
            pool = GpuInferencePool(name, GpuInferencePoolArgs(pool=config.gpu_pool), opts=child)
            self.gpu_pool = {
                "namespace": pool.namespace_name,
                "gpus": config.gpu_pool.gpus,
                **pool.scheduling,
            }
        backends = SharedBackends(
            name,
            SharedBackendsArgs(
                deploy=config.backends.deploy,
                master_key=pulumi.Output.secret(config.backends_master_key)
                if config.backends_master_key
                else None,
                system_namespace=foundation.namespace_name,
                operator_image=config.operator.image,
                storage_class=config.backends.storage_class,
                settings=config.backends.settings,
                pools={GPU_POOL: self.gpu_pool["namespace"]} if self.gpu_pool else {},  # type: ignore[dict-item]
                placement=config.system_placement.pod_fields(),
                edges=tuple(link.edge for link in args.edge_links),
                edge=edge,
                edge_departments=tuple(d.namespace for d in departments),
            ),
            opts=child,
        )
        operator = ComponentOperator(
            name,
            ComponentOperatorArgs(
                settings=config.operator,
                offerings=args.offerings,
                department_namespaces=namespaces,
                namespace=foundation.namespace_name,
                backend_env=backends.operator_env,
                backend_mounts=backends.mounts,
                backend_pod=backends.operator_pod,
                placement=config.system_placement.pod_fields(),
                edge=edge,
                edge_links=args.edge_links,
            ),
            opts=child,
        )
        self.edge_link = None
        if edge is not None and operator.edge_access is not None and args.api_server is not None:
            parts = tuple(backends.operator_env)
            self.edge_link = EdgeLink(edge, args.api_server, operator.edge_access, parts)
        ComponentAdmission(
            name,
            AdmissionArgs(
                # Every department of the city, wherever it lives: a street office on an edge shares with a
                # city bureau on the hub (the share is made in the hub's backends).
                departments=config.departments,
                zones=config.zones,
                offerings=catalog_offerings(
                    {"metadata": {"name": o.name}, "spec": o.spec} for o in args.offerings
                ),
            ),
            opts=child,
        )
        Monitoring(
            name,
            MonitoringArgs(
                settings=config.monitoring,
                departments=tuple(d.slug for d in departments),
                cluster=cluster.name,
            ),
            opts=child,
        )

        self.endpoints = foundation.endpoints
        self.departments = {
            d.slug: {
                "namespace": namespaces[d.slug],
                "displayName": d.name,
                "zone": d.zone,
                "dataGrade": d.data_grade,
                "priorityClass": priority_class_for(d, config.mode),
                "quota": compute.quotas[d.slug],
                "storageClasses": storage.allowed[d.slug],
                "storageQuota": d.quota_for(config.mode).storage,
            }
            for d in departments
        }
        self.register_outputs({"departments": self.departments, "endpoints": self.endpoints})


def city_hubs(
    config: HubConfig, offerings: tuple[Offering, ...], api_servers: Mapping[str, str]
) -> dict[str, ClusterHub]:
    """The hub on every cluster of the stack, by name in the configuration's order. Edges first: the hub runs
    the operators of the edges in `api_servers` (their API servers as the hub's pods reach them) with what
    each edge's share of the stack made there."""
    hubs = {
        c.name: ClusterHub(
            c.name,
            ClusterHubArgs(config=config, cluster=c, offerings=offerings, api_server=api_servers.get(c.name)),
        )
        for c in config.clusters
        if c.role == "edge"
    }
    links = tuple(hub.edge_link for hub in hubs.values() if hub.edge_link is not None)
    for i, c in enumerate(c for c in config.clusters if c.role != "edge"):
        # The first hub cluster runs the edges' operators (a stack has one hub; more would share nothing).
        served = links if i == 0 else ()
        hubs[c.name] = ClusterHub(c.name, ClusterHubArgs(config, c, offerings, edge_links=served))
    return {c.name: hubs[c.name] for c in config.clusters}
