"""How each process of the embedded cluster is started: its command line (binary from the toolchain, flags
pointing at the pki, the component kubeconfigs and the picked ports), its environment, and kwok's config."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from cityhub import paths
from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.network import HOST, POD_CIDR, SERVICE_ACCOUNT_ISSUER, SERVICE_CIDR
from cityhub.embedded_cluster.nodes import KWOK_NODE_ANNOTATION
from cityhub.embedded_cluster.pki import FRONT_PROXY_CLIENT, Pki

KWOK_STAGES_FILE = "kwok-stages.yaml"


def command(
    name: str, lay: Layout, pki: Pki, ports: dict[str, dict[str, int]], pod_reachable_at: str | None = None
) -> list[str]:
    """`pod_reachable_at`: the real node's address (real_node_config.NodePaths.node_ip) when the cluster has
    one; the API server then also serves there, for its pods."""
    if name == "kube-apiserver":
        return [str(paths.tool(name)), *apiserver_cmd(lay, pki, ports, pod_reachable_at)]
    builders: dict[str, Callable[[Layout, Pki, dict[str, dict[str, int]]], list[str]]] = {
        "etcd": etcd_cmd,
        "kube-controller-manager": controller_manager_cmd,
        "kube-scheduler": scheduler_cmd,
        "kwok": kwok_cmd,
    }
    return [str(paths.tool(name)), *builders[name](lay, pki, ports)]


def etcd_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    client = f"https://{HOST}:{ports['etcd']['client']}"
    peer = f"https://{HOST}:{ports['etcd']['peer']}"
    tls = [f"--cert-file={pki.crt('etcd-server')}", f"--key-file={pki.key('etcd-server')}"]
    return [
        "--name=cityhub",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=cityhub={peer}",
        "--initial-cluster-state=new",
        # TLS with client certificates even on loopback: anyone on the machine could otherwise read
        # every Secret straight out of etcd.
        *tls,
        f"--trusted-ca-file={pki.ca}",
        "--client-cert-auth=true",
        *(f"--peer-{flag[2:]}" for flag in tls),
        f"--peer-trusted-ca-file={pki.ca}",
        "--peer-client-cert-auth=true",
        "--auto-compaction-retention=1",
        # fsync dominates etcd latency on CI disks and buys little here: a crashed or killed etcd loses
        # nothing (the page cache survives it), only a power cut could, and this data is a dev cluster's.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_cmd(
    lay: Layout, pki: Pki, ports: dict[str, dict[str, int]], pod_reachable_at: str | None = None
) -> list[str]:
    return [
        f"--etcd-servers=https://{HOST}:{ports['etcd']['client']}",
        f"--etcd-cafile={pki.ca}",
        f"--etcd-certfile={pki.crt('apiserver-etcd-client')}",
        f"--etcd-keyfile={pki.key('apiserver-etcd-client')}",
        *_apiserver_addresses(pod_reachable_at),
        f"--secure-port={ports['kube-apiserver']['secure']}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # People sign in with the city's identity (sign_in.py): the issuers it trusts, reloaded on change.
        f"--authentication-config={lay.conf / 'authentication.yaml'}",
        f"--client-ca-file={pki.ca}",
        f"--tls-cert-file={pki.crt('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        # The apiserver calls the simulated kubelets (kwok) for logs/exec; verify them against our CA.
        f"--kubelet-certificate-authority={pki.ca}",
        f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        # A real kubelet (the real node, real_node.py) reports its node name as Hostname address too, which
        # resolves nowhere here; kwok nodes report only InternalIP, so for them nothing changes.
        "--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
        f"--requestheader-client-ca-file={pki.crt('front-proxy-ca')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
        f"--proxy-client-key-file={pki.key('front-proxy-client')}",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _apiserver_addresses(pod_reachable_at: str | None) -> list[str]:
    if pod_reachable_at is None:
        # Only kwok nodes: loopback only. The `kubernetes` Service's endpoints would be 127.0.0.1, which
        # Endpoints validation rejects (loopback); no pod really runs to use them, so none are reconciled.
        return [f"--bind-address={HOST}", f"--advertise-address={HOST}", "--endpoint-reconciler-type=none"]
    # With the real node, pods reach `kubernetes.default.svc` through the node's Service proxy, which
    # forwards to the endpoints the API server publishes: the node's bridge address, which the API server
    # must serve on. It has one listen address, so it listens on every address (as kubeadm's does; every
    # request still needs a client certificate or token) and loopback clients keep using 127.0.0.1.
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={pod_reachable_at}",
        "--endpoint-reconciler-type=lease",
    ]


def _delegated_auth(lay: Layout, pki: Pki, component: str) -> list[str]:
    kubeconfig = lay.component_kubeconfig(component)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--tls-cert-file={pki.crt(component + '-serving')}",
        f"--tls-private-key-file={pki.key(component + '-serving')}",
        # One instance only: leader election would just delay a restart by a lease period.
        "--leader-elect=false",
    ]


def controller_manager_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    return [
        *_delegated_auth(lay, pki, "controller-manager"),
        f"--secure-port={ports['kube-controller-manager']['secure']}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca}",
        f"--cluster-signing-cert-file={pki.ca}",
        f"--cluster-signing-key-file={pki.key('ca')}",
        "--use-service-account-credentials=true",
        # Default controller set; node IPAM stays idle (no --allocate-node-cidrs): kwok assigns pod IPs.
        "--controllers=*",
        # A custom resource counts against an object-count quota (component requests per department) only
        # once the quota controller resyncs after discovering its CRD: 15 s instead of 5 min after a first
        # `pulumi up` (requests are refused with "status unknown for quota" until then).
        "--resource-quota-sync-period=15s",
        "--profiling=false",
    ]


def scheduler_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    return [
        *_delegated_auth(lay, pki, "scheduler"),
        f"--secure-port={ports['kube-scheduler']['secure']}",
    ]


def kwok_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    port = ports["kwok"]["server"]
    return [
        f"--kubeconfig={lay.component_kubeconfig('kwok')}",
        f"--config={lay.conf / 'kwok.yaml'}",
        # Only nodes cityhub marks as fake: a real kubelet joining this API server is left alone.
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--server-address={HOST}:{port}",
        # The simulated kubelets' address is kwok's own server, so the apiserver can reach it.
        f"--node-ip={HOST}",
        f"--node-port={port}",
        f"--tls-cert-file={pki.crt('kwok-serving')}",
        f"--tls-private-key-file={pki.key('kwok-serving')}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
        # At INFO kwok logs every lease renewal of every node (tens of thousands of lines a day).
        "--v=WARN",
    ]


def write_kwok_config(lay: Layout) -> Path:
    """kwok >= 0.5 simulates nothing without Stage objects (it exits with "no stages found"); these are
    the ones kwokctl installs by default: node-initialize, node-heartbeat-with-lease, pod-ready,
    pod-complete, pod-delete (kwok v0.8.0 kustomize/stage, Apache-2.0; see kwok-stages.yaml)."""
    target = lay.conf / "kwok.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    (lay.conf / "kwok-workdir").mkdir(exist_ok=True)
    target.write_text(resources.files("cityhub.embedded_cluster").joinpath(KWOK_STAGES_FILE).read_text())
    return target


def child_env(name: str, lay: Layout) -> dict[str, str]:
    env = dict(os.environ)
    # etcd and kwok read flags from ETCD_*/KWOK_* variables; a developer's would silently change them.
    for key in list(env):
        if key.startswith(("ETCD_", "KWOK_")):
            del env[key]
    if name == "kwok":
        # kwok otherwise also loads ~/.kwok/kwok.yaml: keep a developer's kwokctl setup out of ours.
        env["KWOK_WORKDIR"] = str(lay.conf / "kwok-workdir")
    return env
