"""What makes Services work for the real node's pods: kube-proxy (iptables mode) turns ClusterIPs, among
them `kubernetes.default.svc`, into the endpoints behind them, and CoreDNS (a small build of it, see
hack/go/coredns) answers `<service>.<namespace>.svc.cluster.local` from the API server and forwards other
names to the host's resolvers. Both run as host processes of the node, like the kubelet, through
`cityhub.supervisor`; the kubelet points pods' resolv.conf at CoreDNS on the node's bridge address.

Each has its own client certificate: kube-proxy as `system:kube-proxy` (bound to `system:node-proxier` by
the API server's default RBAC), CoreDNS as DNS_USER with the read-only rules CoreDNS documents
(DNS_RULES), and the NetworkPolicy engine (netpol.py) as NETPOL_USER reading what its rules depend on
(NETPOL_RULES); `ensure_access` applies the roles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from cityhub import paths
from cityhub.embedded_cluster.kubeconfigs import render_kubeconfig
from cityhub.embedded_cluster.network import POD_CIDR
from cityhub.embedded_cluster.pki import Pki, issue, write_pair, write_private
from cityhub.embedded_cluster.real_node_config import NODE_NAME, NodePaths, can_lower_oom_score, load_ca

CLUSTER_DOMAIN = "cluster.local"
DNS_PORT = 53
PROXY_USER = "system:kube-proxy"
DNS_USER = "cityhub:real-node-dns"
DNS_RULES = [
    {
        "apiGroups": [""],
        "resources": ["services", "namespaces", "endpoints", "pods"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
]
"""What CoreDNS's kubernetes plugin reads (its documented ClusterRole `system:coredns`)."""
NETPOL_USER = "cityhub:real-node-netpol"
NETPOL_RULES = [
    {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch"]},
]
"""What the NetworkPolicy engine reads: nothing else, and it writes nothing to the API."""


def _client_kubeconfig(np: NodePaths, pki: Pki, server: str, user: str, name: str) -> Path:
    directory = np.root / "pki"
    write_pair(issue(load_ca(pki), user, client=True), directory, name)
    text = render_kubeconfig(
        server,
        pki.ca.read_bytes(),
        (directory / f"{name}.crt").read_bytes(),
        (directory / f"{name}.key").read_bytes(),
        user,
    )
    target = np.conf(f"{name}.kubeconfig")
    write_private(target, text.encode())
    return target


def write_proxy_config(np: NodePaths, pki: Pki, server: str, healthz_port: int, metrics_port: int) -> Path:
    kubeconfig = _client_kubeconfig(np, pki, server, PROXY_USER, "kube-proxy")
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # No NodePort on 127.0.0.1: that needs route_localnet on every interface, a host-wide change.
        "nodePortAddresses": [f"{np.node_ip}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
        # Leave the host's conntrack table size and timeouts as they are (0: do not change them).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # Same reason as containerd's restrict_oom_score_adj (real_node_config): a sandboxed root may not
        # lower its OOM score, and kube-proxy would fail at start asking for -999.
        "oomScoreAdj": -999 if can_lower_oom_score() else 0,
    }
    target = np.conf("kube-proxy.yaml")
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def proxy_argv(np: NodePaths) -> list[str]:
    return [str(paths.tool("kube-proxy")), f"--config={np.conf('kube-proxy.yaml')}", "--v=1"]


def write_dns_config(np: NodePaths, pki: Pki, server: str, health_port: int, ready_port: int) -> Path:
    kubeconfig = _client_kubeconfig(np, pki, server, DNS_USER, "coredns")
    corefile = f""".:{DNS_PORT} {{
    bind {np.node_ip}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
    loadbalance
}}
"""
    target = np.conf("Corefile")
    target.write_text(corefile)
    return target


def dns_argv(np: NodePaths) -> list[str]:
    return [str(paths.tool("coredns")), "-conf", str(np.conf("Corefile"))]


def netpol_kubeconfig(np: NodePaths, pki: Pki, server: str) -> Path:
    return _client_kubeconfig(np, pki, server, NETPOL_USER, "netpol")


def netpol_argv(np: NodePaths, kubeconfig: Path, health_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cityhub.embedded_cluster.netpol",
        f"--kubeconfig={kubeconfig}",
        f"--node={NODE_NAME}",
        f"--health-port={health_port}",
    ]


def ensure_access(kubeconfig: Path) -> None:
    """The ClusterRoles and bindings of the node's host services' identities (idempotent)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from cityhub.embedded_cluster.nodes import api_client

    with api_client(kubeconfig) as api:
        rbac = client.RbacAuthorizationV1Api(api)
        for user, rules in ((DNS_USER, DNS_RULES), (NETPOL_USER, NETPOL_RULES)):
            role = {"metadata": {"name": user}, "rules": rules}
            binding = {
                "metadata": {"name": user},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }
            for create, replace, body in (
                (rbac.create_cluster_role, rbac.replace_cluster_role, role),
                (rbac.create_cluster_role_binding, rbac.replace_cluster_role_binding, binding),
            ):
                try:
                    create(body)
                except ApiException as e:
                    if e.status != 409:
                        raise
                    replace(user, body)
