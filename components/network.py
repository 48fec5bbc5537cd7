"""Network zones (网络分区) as NetworkPolicies: every department denied by default, then allowed exactly
the flows the configuration declares."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import Department, Flow, SharedService, Zone
from cityhub_api import labels
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.registry import component_types

PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
"""Excluded from "outside": traffic inside the cluster must go through the zone rules, not the ipBlock."""

NAME_LABEL = labels.NAMESPACE_NAME

np = k8s.networking.v1


@dataclass(frozen=True)
class NetworkArgs:
    zones: tuple[Zone, ...]
    flows: tuple[Flow, ...]
    shared_services: tuple[SharedService, ...]
    departments: tuple[Department, ...]
    namespaces: dict[str, pulumi.Input[str]]
    """Department slug -> its namespace (from DepartmentTenancy)."""
    system_namespace: pulumi.Input[str] = SYSTEM_NAMESPACE


def _ports(ports: tuple[int, ...]) -> list[np.NetworkPolicyPortArgs] | None:
    return [np.NetworkPolicyPortArgs(protocol="TCP", port=p) for p in ports] or None


def _zone_peer(zone: str) -> np.NetworkPolicyPeerArgs:
    return np.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={labels.TENANT: "department", labels.ZONE: zone}
        )
    )


def ingress_rules(
    dept: Department, zone: Zone, flows: tuple[Flow, ...]
) -> list[np.NetworkPolicyIngressRuleArgs]:
    rules = [
        np.NetworkPolicyIngressRuleArgs(
            from_=[np.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())]
        )
    ]
    for flow in flows:
        if flow.target == dept.zone:
            rules.append(
                np.NetworkPolicyIngressRuleArgs(from_=[_zone_peer(flow.source)], ports=_ports(flow.ports))
            )
    if zone.public:
        outside = np.IPBlockArgs(cidr="0.0.0.0/0", except_=PRIVATE_RANGES)
        rules.append(np.NetworkPolicyIngressRuleArgs(from_=[np.NetworkPolicyPeerArgs(ip_block=outside)]))
    return rules


def egress_rules(
    dept: Department, zone: Zone, flows: tuple[Flow, ...], services: tuple[SharedService, ...]
) -> list[np.NetworkPolicyEgressRuleArgs]:
    dns = np.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAME_LABEL: "kube-system"})
    )
    rules = [
        np.NetworkPolicyEgressRuleArgs(
            to=[np.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())]
        ),
        np.NetworkPolicyEgressRuleArgs(
            to=[dns],
            ports=[np.NetworkPolicyPortArgs(protocol=p, port=53) for p in ("UDP", "TCP")],
        ),
    ]
    for flow in flows:
        if flow.source == dept.zone:
            rules.append(
                np.NetworkPolicyEgressRuleArgs(to=[_zone_peer(flow.target)], ports=_ports(flow.ports))
            )
    types = component_types()
    for service in services:
        if dept.zone in service.zones:
            door = types[service.name].front_door
            peer = np.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAME_LABEL: SYSTEM_NAMESPACE}),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=door.selector),
            )
            # A policy sees the pod's port (after the Service's translation), so the target port.
            targets = tuple(p.target_port for p in door.ports)
            rules.append(np.NetworkPolicyEgressRuleArgs(to=[peer], ports=_ports(targets)))
            for side in door.side_doors:
                peer = np.NetworkPolicyPeerArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                        match_labels={NAME_LABEL: SYSTEM_NAMESPACE}
                    ),
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={labels.NAME: side.workload}),
                )
                rules.append(np.NetworkPolicyEgressRuleArgs(to=[peer], ports=_ports((side.port,))))
    if zone.public:
        outside = np.IPBlockArgs(cidr="0.0.0.0/0", except_=PRIVATE_RANGES)
        rules.append(np.NetworkPolicyEgressRuleArgs(to=[np.NetworkPolicyPeerArgs(ip_block=outside)]))
    return rules


class Network(pulumi.ComponentResource):
    """Per department: a default-deny policy (all ingress and egress) and one `allow` policy holding what
    its zone permits: its own pods, DNS, the declared zone-to-zone flows, the shared services open to the
    zone, and outside traffic only in public zones. In the system namespace: ingress to each shared
    service from the zones it serves, nothing else."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:network:Network", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = {z.slug: z for z in args.zones}
        all_pods = k8s.meta.v1.LabelSelectorArgs()
        for dept in args.departments:
            ns = args.namespaces[dept.slug]
            zone = zones[dept.zone]
            np.NetworkPolicy(
                f"{name}-{dept.slug}-default-deny",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="default-deny", namespace=ns, labels=labels.common()
                ),
                spec=np.NetworkPolicySpecArgs(pod_selector=all_pods, policy_types=["Ingress", "Egress"]),
                opts=child,
            )
            np.NetworkPolicy(
                f"{name}-{dept.slug}-allow",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="allow-zone", namespace=ns, labels={**labels.common(), labels.ZONE: dept.zone}
                ),
                spec=np.NetworkPolicySpecArgs(
                    pod_selector=all_pods,
                    policy_types=["Ingress", "Egress"],
                    ingress=ingress_rules(dept, zone, args.flows),
                    egress=egress_rules(dept, zone, args.flows, args.shared_services),
                ),
                opts=child,
            )
        np.NetworkPolicy(
            f"{name}-system-default-deny-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="default-deny-ingress", namespace=args.system_namespace, labels=labels.common()
            ),
            spec=np.NetworkPolicySpecArgs(pod_selector=all_pods, policy_types=["Ingress"]),
            opts=child,
        )
        np.NetworkPolicy(
            f"{name}-system-internal",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="allow-system-internal", namespace=args.system_namespace, labels=labels.common()
            ),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=all_pods,
                policy_types=["Ingress"],
                # The hub's own parts talk to each other: the operator provisions and probes every backend,
                # a backend's helpers (a relay, a gateway) reach its servers. Departments come in only
                # through the front doors below.
                ingress=[
                    np.NetworkPolicyIngressRuleArgs(from_=[np.NetworkPolicyPeerArgs(pod_selector=all_pods)])
                ],
            ),
            opts=child,
        )
        types = component_types()
        for service in args.shared_services:
            door = types[service.name].front_door
            callers = k8s.meta.v1.LabelSelectorArgs(
                match_labels={labels.TENANT: "department"},
                match_expressions=[
                    k8s.meta.v1.LabelSelectorRequirementArgs(
                        key=labels.ZONE, operator="In", values=list(service.zones)
                    )
                ],
            )
            np.NetworkPolicy(
                f"{name}-system-{service.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"allow-{service.name}", namespace=args.system_namespace, labels=labels.common()
                ),
                spec=np.NetworkPolicySpecArgs(
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=door.selector),
                    policy_types=["Ingress"],
                    ingress=[
                        np.NetworkPolicyIngressRuleArgs(
                            from_=[np.NetworkPolicyPeerArgs(namespace_selector=callers)],
                            ports=_ports(tuple(p.target_port for p in door.ports)),
                        )
                    ],
                ),
                opts=child,
            )
            for side in door.side_doors:
                np.NetworkPolicy(
                    f"{name}-system-{service.name}-{side.workload}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=f"allow-{service.name}-{side.workload}",
                        namespace=args.system_namespace,
                        labels=labels.common(),
                    ),
                    spec=np.NetworkPolicySpecArgs(
                        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={labels.NAME: side.workload}),
                        policy_types=["Ingress"],
                        ingress=[
                            np.NetworkPolicyIngressRuleArgs(
                                from_=[np.NetworkPolicyPeerArgs(namespace_selector=callers)],
                                ports=_ports((side.port,)),
                            )
                        ],
                    ),
                    opts=child,
                )
        self.register_outputs({})
