"""The hub's system namespace: where the operator and the shared services' front doors live."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import SharedService
from cityhub_api import labels
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.registry import component_types


@dataclass(frozen=True)
class FoundationArgs:
    city: str
    """The city's display name, e.g. 示例市."""
    division_code: str
    """The city's 6-digit administrative division code (GB/T 2260), e.g. 330100."""
    shared_services: tuple[SharedService, ...] = ()
    """Which zones reach each component type (display names may be overridden here)."""
    cluster_domain: str = "cluster.local"


class Foundation(pulumi.ComponentResource):
    """The system namespace labelled with the city, a ConfigMap describing the city, and one front-door
    Service per component type (name, selector and ports from the registry), so departments reach every
    shared component at a stable address before its backend's pods exist."""

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
        shared = {s.name: s for s in args.shared_services}
        for ctype in component_types().values():
            door = ctype.front_door
            override = shared[ctype.name].display_name if ctype.name in shared else None
            display = override or ctype.display_name
            k8s.core.v1.Service(
                f"{name}-service-{door.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=door.name,
                    namespace=namespace.metadata.name,
                    labels={**labels.common(), **door.selector},
                    # The backends bring the pods later; waiting for endpoints now would hang the update.
                    annotations={labels.DISPLAY_NAME: display, labels.SKIP_AWAIT: "true"},
                ),
                spec=k8s.core.v1.ServiceSpecArgs(
                    selector=door.selector,
                    ports=[
                        k8s.core.v1.ServicePortArgs(
                            name=p.name, port=p.port, target_port=p.target_port, app_protocol=p.app_protocol
                        )
                        for p in door.ports
                    ],
                ),
                opts=child,
            )
            self.endpoints[door.name] = f"{door.host(SYSTEM_NAMESPACE, args.cluster_domain)}:{door.port}"
        self.namespace_name = namespace.metadata.name
        self.register_outputs({"namespace_name": self.namespace_name, "endpoints": self.endpoints})
