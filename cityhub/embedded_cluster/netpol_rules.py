"""NetworkPolicies → iptables rules for the real node (pure: objects in, `iptables-restore` text out).

The embedded cluster's real node has no CNI that enforces NetworkPolicy, and none that could be built here
does it safely (NFQUEUE engines need a kernel feature this host lacks; kube-router's only served version has
reported flaws). So the node runs this small engine (`netpol.py`): the Kubernetes semantics, compiled to
the filter table's FORWARD path that every pod packet takes (bridged packets too: `up` sets
net.bridge.bridge-nf-call-iptables).

Layout (all chains CITYHUB-NP*, jumped to first thing in FORWARD):

    CITYHUB-NP          replies pass (conntrack); a pod isolated for egress jumps to its egress chain as
                        source, a pod isolated for ingress to its ingress chain as destination
    CITYHUB-NP-E-<h>    one RETURN per allowed (peer, port) of the policies selecting the pod, then DROP
    CITYHUB-NP-I-<h>    the same for ingress

A chain is named by the hash of its rules, so pods that the same policies allow the same peers share it.
A packet returns from the source's egress chain only if allowed, then from the destination's ingress
chain only if allowed: both sides must allow it, as the API says. Traffic between a pod and its own node
(kubelet probes, CoreDNS and the API server, which run on the host) does not cross FORWARD and is not
policed, which the API leaves to the implementation. IPv4 only, like the node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAIN = "CITYHUB-NP"
PREFIX = "CITYHUB-NP-"
ANY = "0.0.0.0/0"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    node: str
    named_ports: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Container port name → (protocol, number): what a policy's named port means on this pod."""

    @classmethod
    def of(cls, obj: Obj) -> Pod | None:
        """A pod that has an address of its own (not host network) and has not finished; else None."""
        spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
        ip = status.get("podIP")
        if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        ports = {
            p["name"]: (str(p.get("protocol") or "TCP"), int(p["containerPort"]))
            for c in spec.get("containers") or []
            for p in c.get("ports") or []
            if p.get("name")
        }
        return cls(
            meta["namespace"], meta["name"], ip, meta.get("labels") or {}, spec.get("nodeName", ""), ports
        )


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: an empty selector selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Cluster:
    """What the rules depend on: namespaces' labels, pods, policies."""

    namespaces: Mapping[str, Mapping[str, str]]
    pods: Sequence[Pod]
    policies: Sequence[Obj]

    def pods_matching(
        self, namespace: str | None, ns_selector: Obj | None, pod_selector: Obj | None
    ) -> list[Pod]:
        """A peer's pods: `namespace` alone (podSelector only), or the namespaces `ns_selector` selects."""
        found = []
        for pod in self.pods:
            if ns_selector is not None:
                if not selects(ns_selector, self.namespaces.get(pod.namespace, {})):
                    continue
            elif pod.namespace != namespace:
                continue
            if pod_selector is None or selects(pod_selector, pod.labels):
                found.append(pod)
        return found


def policy_types(policy: Obj) -> set[str]:
    spec = policy.get("spec") or {}
    declared = spec.get("policyTypes")
    if declared:
        return set(declared)
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


def ip_block(block: Obj) -> list[str]:
    """The CIDRs of an ipBlock minus its exceptions (IPv6 blocks are left out: the node is IPv4 only)."""
    net = ipaddress.ip_network(block["cidr"], strict=False)
    if net.version != 4:
        return []
    nets = [net]
    for text in block.get("except") or []:
        hole = ipaddress.ip_network(text, strict=False)
        nets = [piece for n in nets for piece in (n.address_exclude(hole) if hole.subnet_of(n) else [n])]  # type: ignore[arg-type]
    return sorted(str(n) for n in nets)


def _ports(ports: Sequence[Obj] | None, named: Mapping[str, tuple[str, int]] | None) -> list[str]:
    """iptables match arguments for a rule's ports; [""] for every port. A named port is looked up in
    `named` (the pod the port belongs to); unknown there, it matches nothing."""
    if not ports:
        return [""]
    out = []
    for port in ports:
        proto = str(port.get("protocol") or "TCP")
        number = port.get("port")
        if number is None:
            out.append(f"-p {proto.lower()}")
            continue
        if isinstance(number, str) and not number.isdigit():
            if named is None or number not in named or named[number][0] != proto:
                continue
            number = named[number][1]
        end = port.get("endPort")
        span = f"{number}:{end}" if end else f"{number}"
        out.append(f"-p {proto.lower()} -m {proto.lower()} --dport {span}")
    return out


def _peer_addresses(cluster: Cluster, namespace: str, peer: Obj) -> list[tuple[str, Pod | None]]:
    if "ipBlock" in peer:
        return [(cidr, None) for cidr in ip_block(peer["ipBlock"])]
    pods = cluster.pods_matching(namespace, peer.get("namespaceSelector"), peer.get("podSelector"))
    return [(f"{p.ip}/32", p) for p in pods]


def _allowed(cluster: Cluster, pod: Pod, direction: str, policies: Iterable[Obj]) -> list[str]:
    """RETURN rules for what the policies allow `pod` in one direction ("Ingress" or "Egress")."""
    key, peers_key, flag = ("ingress", "from", "-s") if direction == "Ingress" else ("egress", "to", "-d")
    lines: list[str] = []
    for policy in policies:
        meta = policy["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        for i, rule in enumerate((policy.get("spec") or {}).get(key) or []):
            comment = f'-m comment --comment "{where} {key}[{i}]"'
            peers = rule.get(peers_key)
            targets: list[tuple[str, Pod | None]] = (
                [(ANY, None)]
                if not peers
                else [a for peer in peers for a in _peer_addresses(cluster, meta["namespace"], peer)]
            )
            for address, peer_pod in targets:
                # A named port names a port of the pod receiving the packet.
                named = (
                    pod.named_ports
                    if direction == "Ingress"
                    else (peer_pod.named_ports if peer_pod else None)
                )
                for port in _ports(rule.get("ports"), named):
                    match = "" if address == ANY else f"{flag} {address} "
                    lines.append(f"{match}{port + ' ' if port else ''}{comment} -j RETURN")
    return list(dict.fromkeys(lines))


def _chain(direction: str, body: list[str]) -> str:
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:12]
    return f"{PREFIX}{direction[0]}-{digest}"


@dataclass
class Ruleset:
    chains: dict[str, list[str]]
    """Chain → its rules (without `-A chain`), CITYHUB-NP first."""

    def restore_text(self, existing: Iterable[str]) -> str:
        """`iptables-restore --noflush` input: every chain of ours declared (which flushes it), filled, and
        the ones no longer needed deleted — one atomic transaction."""
        stale = sorted(c for c in existing if c.startswith(PREFIX) and c not in self.chains)
        out = ["*filter"]
        out += [f":{c} - [0:0]" for c in [*self.chains, *stale]]
        for chain, rules in self.chains.items():
            out += [f"-A {chain} {r}" for r in rules]
        out += [f"-X {c}" for c in stale]
        out.append("COMMIT")
        return "\n".join(out) + "\n"

    @property
    def rule_count(self) -> int:
        return sum(len(r) for r in self.chains.values())


def compile_rules(cluster: Cluster, node: str) -> Ruleset:
    """The rules for the pods running on `node` (peers may run anywhere)."""
    main = ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    chains: dict[str, list[str]] = {MAIN: main}
    for pod in sorted((p for p in cluster.pods if p.node == node), key=lambda p: (p.namespace, p.name)):
        selecting = [
            p
            for p in cluster.policies
            if p["metadata"]["namespace"] == pod.namespace
            and selects((p.get("spec") or {}).get("podSelector") or {}, pod.labels)
        ]
        for direction, flag in (("Egress", "-s"), ("Ingress", "-d")):
            applying = [p for p in selecting if direction in policy_types(p)]
            if not applying:
                continue  # not isolated in this direction: everything is allowed
            body = _allowed(cluster, pod, direction, applying)
            # No pod name in the chain: pods the same policies allow the same peers share it.
            body.append(f'-m comment --comment "{direction.lower()} not allowed by a NetworkPolicy" -j DROP')
            name = _chain(direction, body)
            chains.setdefault(name, body)
            main.append(f'{flag} {pod.ip}/32 -m comment --comment "{pod.namespace}/{pod.name}" -j {name}')
    return Ruleset(chains)
