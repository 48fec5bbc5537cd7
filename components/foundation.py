"""The hub's system namespace: where the operator and the shared services' front doors live."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import SharedService
from cityhub_api import labels
from cityhub_api.labels import SYSTEM_NAMESPACE


@dataclass(frozen=True)
class FoundationArgs:
    city: str
    """The city's display name, e.g. 示例市."""
    division_code: str
    """The city's 6-digit administrative division code (GB/T 2260), e.g. 330100."""
    shared_services: tuple[SharedService, ...] = ()
    """Shared components (共性组件); each gets a Service in the system namespace."""
    cluster_domain: str = "cluster.local"


class Foundation(pulumi.ComponentResource):
    """The system namespace labelled with the city, a ConfigMap describing the city, and one Service per
    shared component, so departments reach identity, maps, messaging and inference at stable addresses
    before the operator fills them with pods."""

    namespace_name: pulumi.Output[str]
    endpoints: dict[str, str]
    """Shared service name -> in-cluster address (host:port)."""

    def __init__(self, name: str, args: FoundationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:foundation:Foundation", name, {}, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-system",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SYSTEM_NAMESPACE,
                labels={**labels.common(), labels.DIVISION_CODE: args.division_code},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self)
        k8s.core.v1.ConfigMap(
            f"{name}-city",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="cityhub-city", namespace=namespace.metadata.name, labels=labels.common()
            ),
            data={"city": args.city, "divisionCode": args.division_code},
            opts=child,
        )
        self.endpoints = {}
        for service in args.shared_services:
            k8s.core.v1.Service(
                f"{name}-service-{service.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=service.name,
                    namespace=namespace.metadata.name,
                    labels={**labels.common(), labels.SERVICE: service.name},
                    # The operator brings the pods later; waiting for endpoints now would hang the update.
                    annotations={labels.DISPLAY_NAME: service.display_name, labels.SKIP_AWAIT: "true"},
                ),
                spec=k8s.core.v1.ServiceSpecArgs(
                    selector={labels.SERVICE: service.name},
                    ports=[
                        k8s.core.v1.ServicePortArgs(name="main", port=service.port, target_port=service.port)
                    ],
                ),
                opts=child,
            )
            host = f"{service.name}.{SYSTEM_NAMESPACE}.svc.{args.cluster_domain}"
            self.endpoints[service.name] = f"{host}:{service.port}"
        self.namespace_name = namespace.metadata.name
        self.register_outputs({"namespace_name": self.namespace_name, "endpoints": self.endpoints})
