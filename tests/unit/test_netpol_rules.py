"""The real node's NetworkPolicy compiler, checked by what would happen to packets: a small evaluator walks
the generated chains the way the kernel does for a new connection (the packet matrix on real pods is in
tests/integration/test_in_cluster.py)."""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any

from cityhub.embedded_cluster.netpol_rules import MAIN, Cluster, Pod, Ruleset, compile_rules, ip_block

NODE = "cityhub-real-0"


def pod(ns: str, name: str, ip: str, node: str = NODE, **labels: str) -> Pod:
    return Pod(ns, name, ip, labels, node, {"https": ("TCP", 8443)})


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def _matches(words: list[str], src: str, dst: str, proto: str, port: int) -> bool:
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-s", "-d"):
            net = ipaddress.ip_network(words[i + 1])
            if ipaddress.ip_address(src if w == "-s" else dst) not in net:
                return False
            i += 2
        elif w == "-p":
            if words[i + 1] != proto:
                return False
            i += 2
        elif w == "--dport":
            lo, _, hi = words[i + 1].partition(":")
            if not int(lo) <= port <= int(hi or lo):
                return False
            i += 2
        elif w == "-m" and words[i + 1] == "comment":
            i += 4
        elif w == "-m" and words[i + 1] == "conntrack":
            return False  # new connections only
        elif w == "-m":
            i += 2
        else:
            raise AssertionError(f"unknown match {w} in {words}")
    return True


def verdict(rules: Ruleset, src: str, dst: str, port: int, proto: str = "tcp", chain: str = MAIN) -> str:
    for line in rules.chains[chain]:
        words = shlex.split(line)
        target = words[words.index("-j") + 1]
        if not _matches(words[: words.index("-j")], src, dst, proto, port):
            continue
        if target in ("RETURN", "DROP"):
            return target
        if verdict(rules, src, dst, port, proto, target) == "DROP":
            return "DROP"
    return "RETURN"


def allowed(rules: Ruleset, src: Pod | str, dst: Pod | str, port: int, proto: str = "tcp") -> bool:
    s = src.ip if isinstance(src, Pod) else src
    d = dst.ip if isinstance(dst, Pod) else dst
    return verdict(rules, s, d, port, proto) == "RETURN"


NAMESPACES = {
    "dept-a": {"cityhub.io/tenant": "department", "cityhub.io/zone": "egov"},
    "dept-b": {"cityhub.io/tenant": "department", "cityhub.io/zone": "internet"},
    "dept-c": {"cityhub.io/tenant": "department", "cityhub.io/zone": "private"},
    "cityhub-system": {},
}
A1, A2 = pod("dept-a", "a1", "10.244.0.11", app="web"), pod("dept-a", "a2", "10.244.0.12", app="db")
B1 = pod("dept-b", "b1", "10.244.0.21")
C1 = pod("dept-c", "c1", "10.244.0.31")
NATS = pod("cityhub-system", "nats-0", "10.244.0.41", **{"cityhub.io/service": "messaging"})
DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def zone(z: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"cityhub.io/tenant": "department", "cityhub.io/zone": z}}}


def test_pods_without_policies_talk_freely_and_isolated_ones_only_as_allowed() -> None:
    policies = [
        policy("dept-a", "default-deny", DENY),
        policy(
            "dept-a",
            "allow",
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"podSelector": {}}]},
                    {"from": [zone("internet")], "ports": [{"port": 443}]},
                ],
                "egress": [{"to": [{"podSelector": {}}]}],
            },
        ),
    ]
    rules = compile_rules(Cluster(NAMESPACES, [A1, A2, B1, C1, NATS], policies), NODE)
    assert allowed(rules, B1, C1, 80) and allowed(rules, C1, NATS, 4222)  # no policy selects them
    assert allowed(rules, A1, A2, 5432)  # own namespace, any port
    assert allowed(rules, B1, A1, 443) and not allowed(rules, B1, A1, 8080)  # the zone flow, its port only
    assert not allowed(rules, C1, A1, 443)  # private is not allowed in
    assert not allowed(rules, A1, NATS, 4222)  # dept-a's egress: only its own pods
    assert not allowed(rules, A1, B1, 443, "udp")
    # Both pods of dept-a are allowed the same peers: one shared chain per direction.
    assert len(rules.chains) == 3


def test_both_sides_must_allow_and_selectors_combine() -> None:
    policies = [
        policy("dept-c", "deny", DENY),
        policy(
            "dept-c",
            "to-messaging",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "cityhub-system"}
                                },
                                "podSelector": {"matchLabels": {"cityhub.io/service": "messaging"}},
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": 4222}],
                    }
                ],
            },
        ),
        policy("cityhub-system", "deny-in", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        policy(
            "cityhub-system",
            "allow-messaging",
            {
                "podSelector": {"matchLabels": {"cityhub.io/service": "messaging"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"cityhub.io/tenant": "department"},
                                    "matchExpressions": [
                                        {
                                            "key": "cityhub.io/zone",
                                            "operator": "In",
                                            "values": ["egov", "internet"],
                                        }
                                    ],
                                }
                            }
                        ],
                        "ports": [{"port": 4222}],
                    }
                ],
            },
        ),
    ]
    namespaces = {**NAMESPACES, "cityhub-system": {"kubernetes.io/metadata.name": "cityhub-system"}}
    rules = compile_rules(Cluster(namespaces, [A1, B1, C1, NATS], policies), NODE)
    assert allowed(rules, A1, NATS, 4222) and allowed(rules, B1, NATS, 4222)
    assert not allowed(rules, A1, NATS, 8222)
    # dept-c's egress allows it, but the messaging ingress does not serve the private zone.
    assert not allowed(rules, C1, NATS, 4222)
    assert not allowed(rules, C1, B1, 80)


def test_ip_blocks_with_exceptions_named_ports_and_port_ranges() -> None:
    outside = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}
    policies = [
        policy(
            "dept-b",
            "public",
            {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [outside], "ports": [{"port": "https"}]}],
                "egress": [{"to": [outside], "ports": [{"port": 30000, "endPort": 30010}]}],
            },
        )
    ]
    rules = compile_rules(Cluster(NAMESPACES, [B1, C1], policies), NODE)
    assert allowed(rules, "203.0.113.9", B1, 8443)  # the pod's port named https
    assert not allowed(rules, "203.0.113.9", B1, 443)
    assert not allowed(rules, "10.9.9.9", B1, 8443) and not allowed(rules, C1, B1, 8443)
    assert allowed(rules, B1, "8.8.8.8", 30005) and not allowed(rules, B1, "8.8.8.8", 30011)
    assert not allowed(rules, B1, "192.168.1.1", 30005)
    assert len(ip_block(outside["ipBlock"])) > 3 and "10.0.0.0/8" not in ip_block(outside["ipBlock"])


def test_only_pods_of_this_node_get_chains_and_unchanged_input_gives_the_same_rules() -> None:
    elsewhere = pod("dept-a", "a9", "10.244.1.9", node="kwok-0")
    policies = [policy("dept-a", "deny", DENY)]
    cluster = Cluster(NAMESPACES, [A1, elsewhere, B1], policies)
    rules = compile_rules(cluster, NODE)
    assert not any(elsewhere.ip in r for r in rules.chains[MAIN])
    assert not allowed(rules, A1, B1, 80) and not allowed(rules, B1, A1, 80)
    assert compile_rules(cluster, NODE).chains == rules.chains
    text = rules.restore_text(["CITYHUB-NP-E-000000000000"])
    assert (
        text.startswith("*filter\n") and "-X CITYHUB-NP-E-000000000000" in text and text.endswith("COMMIT\n")
    )


def test_finished_and_host_network_pods_are_not_peers() -> None:
    base = {"metadata": {"namespace": "dept-a", "name": "p"}, "spec": {"nodeName": NODE}}
    assert Pod.of({**base, "status": {"phase": "Running", "podIP": "10.244.0.5"}}) is not None
    assert Pod.of({**base, "status": {"phase": "Succeeded", "podIP": "10.244.0.5"}}) is None
    assert Pod.of({**base, "spec": {"hostNetwork": True}, "status": {"podIP": "10.0.0.1"}}) is None
    assert Pod.of({**base, "status": {"phase": "Pending"}}) is None
