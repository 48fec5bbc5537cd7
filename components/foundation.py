"""The hub's system namespace: where the operator and shared services live."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

SYSTEM_NAMESPACE = "cityhub-system"


@dataclass(frozen=True)
class FoundationArgs:
    city: str
    """The city's display name, e.g. 示例市."""
    division_code: str
    """The city's 6-digit administrative division code (GB/T 2260), e.g. 330100."""


class Foundation(pulumi.ComponentResource):
    """The hub's system namespace, labelled with the city it serves, and a ConfigMap describing the city."""

    namespace_name: pulumi.Output[str]

    def __init__(self, name: str, args: FoundationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:index:Foundation", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(
            f"{name}-system",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SYSTEM_NAMESPACE,
                labels={
                    "app.kubernetes.io/part-of": "cityhub",
                    "cityhub.io/division-code": args.division_code,
                },
            ),
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-city",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="cityhub-city", namespace=namespace.metadata.name),
            data={"city": args.city, "divisionCode": args.division_code},
            opts=child,
        )
        self.namespace_name = namespace.metadata.name
        self.register_outputs({"namespace_name": self.namespace_name})
