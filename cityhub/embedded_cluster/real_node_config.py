"""What the real worker node's processes read: the kubelet's certificates (signed by the cluster CA), its
kubeconfig and KubeletConfiguration, containerd's config.toml and the CNI network (a bridge with host-local
addresses), and the names of the images hack/real-node.sh built offline.

Every path points inside the node's own directories (see `NodePaths`), so nothing is written to /etc,
/var/lib or /opt, and `down` finds everything it has to remove.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cityhub import paths
from cityhub.embedded_cluster.kubeconfigs import render_kubeconfig
from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.network import POD_CIDR, SERVICE_CIDR
from cityhub.embedded_cluster.pki import KeyPair, Pki, issue, write_pair, write_private

NODE_NAME = "cityhub-real-0"
TAINT_KEY = "cityhub.io/real-node"
"""Nothing lands on the real node unless it tolerates this taint: the stack's pods keep going to kwok nodes
(no image of theirs exists here yet)."""
NODE_LABELS = {"type": "real", "cityhub.io/node": "real", "topology.kubernetes.io/zone": "zone-a"}
IMAGE_ARCHIVES = ("pause", "busybox")
"""<cache>/real-node/images/<name>.oci.tar, built by hack/real-node.sh; pause is the pod sandbox."""
COMPONENT_IMAGES = ("nats", "operator", "keycloak", "postgis", "martin", "mlserver", "models")
"""The components' images (hack/images.sh), imported too when built: a stack deploys them by the reference
they carry (cityhub:operator.image, cityhub:backends.<type>.image and the like)."""
EVICTION_FREE_BYTES = 2 << 30
"""The kubelet evicts pods and taints the node disk-pressure when its disk has less free (evictionHard).
Absolute, not the kubelet's default percentage: the node shares the machine's disk, and 5% of a large shared
disk (12.6 GiB of 252 GiB) refused a CI machine with 19.5 GiB free."""
DISK_ROOM_BYTES = 6 << 30
"""What `cluster up --real-node` wants free on the node's disk above the eviction line: the images
(~1 GiB with MLServer), the backends' volumes and the pods' logs, with room for the machine's other work."""
RUN_ROOT = Path("/run/cityhub")
"""Sockets and runtime state: short paths (a unix socket path has at most 107 bytes), on tmpfs."""
CGROUP_PREFIX = "cityhub-"
BRIDGE_PREFIX = "chbr-"
NODE_TOOLS = (
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "kube-proxy",
    "coredns",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


@dataclass(frozen=True)
class NodePaths:
    """Where one cluster's real node keeps its files, named after the cluster directory."""

    root: Path
    """<cluster>/real-node: configs, certificates, containerd's images and snapshots, kubelet's pods."""
    ident: str
    """Short hash of the cluster directory: names the bridge, cgroup and runtime directory, so two clusters on
    one machine (two checkouts, a test next to a developer) never share them."""

    @classmethod
    def of(cls, lay: Layout) -> NodePaths:
        ident = hashlib.sha256(str(lay.root.resolve()).encode()).hexdigest()[:8]
        return cls(lay.root / "real-node", ident)

    @property
    def state_file(self) -> Path:
        return self.root / "node.json"

    @property
    def run(self) -> Path:
        return RUN_ROOT / self.ident

    @property
    def socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def bridge(self) -> str:
        return BRIDGE_PREFIX + self.ident  # 13 characters: interface names have at most 15

    @property
    def cgroup(self) -> str:
        return CGROUP_PREFIX + self.ident

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """A /24 at the top of the cluster's pod range: kwok hands out fake pod IPs from its bottom."""
        base = ipaddress.ip_network(POD_CIDR)
        index = 240 + int(self.ident, 16) % 15
        return ipaddress.ip_network(f"{base.network_address + index * 256}/24")

    @property
    def node_ip(self) -> str:
        """The bridge's address: the pods' gateway, and the address the kubelet serves on."""
        return str(self.subnet.network_address + 1)

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    def conf(self, name: str) -> Path:
        return self.root / "conf" / name

    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"


def cni_bin_dir() -> Path:
    return paths.cache_dir() / "cni" / "bin"


def image_dir() -> Path:
    return paths.cache_dir() / "real-node" / "images"


def missing_parts() -> list[str]:
    """What hack/real-node.sh has not built yet (empty when the node can start)."""
    missing = paths.missing_tools(NODE_TOOLS)
    missing += [f"cni/bin/{p}" for p in CNI_PLUGINS if not (cni_bin_dir() / p).is_file()]
    missing += [f"real-node/images/{i}.oci.tar" for i in IMAGE_ARCHIVES if not archive(i).is_file()]
    return missing


def archive(name: str) -> Path:
    return image_dir() / f"{name}.oci.tar"


def image_name(name: str) -> str:
    """The reference an image archive carries (io.containerd.image.name in its index.json)."""
    with tarfile.open(archive(name)) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return str(index["manifests"][0]["annotations"]["io.containerd.image.name"])


def load_ca(pki: Pki) -> KeyPair:
    cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), password=None)
    return KeyPair(cert, key)  # type: ignore[arg-type]


def write_certificates(np: NodePaths, pki: Pki) -> None:
    """The kubelet's client certificate (system:node:<name> in system:nodes, what the Node authorizer
    expects) and its serving certificate for the node's address (the apiserver verifies it with the CA)."""
    ca = load_ca(pki)
    directory = np.root / "pki"
    client = issue(ca, f"system:node:{NODE_NAME}", orgs=("system:nodes",), client=True)
    write_pair(client, directory, "kubelet-client")
    serving = issue(ca, NODE_NAME, dns=(NODE_NAME,), ips=(np.node_ip,), server=True)
    write_pair(serving, directory, "kubelet-serving")


def write_kubelet_kubeconfig(np: NodePaths, pki: Pki, server: str) -> Path:
    directory = np.root / "pki"
    text = render_kubeconfig(
        server,
        pki.ca.read_bytes(),
        (directory / "kubelet-client.crt").read_bytes(),
        (directory / "kubelet-client.key").read_bytes(),
        f"system:node:{NODE_NAME}",
    )
    target = np.conf("kubelet.kubeconfig")
    write_private(target, text.encode())
    return target


def write_kubelet_config(np: NodePaths, pki: Pki, port: int, healthz_port: int) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # These machines mount cgroup v1; kubelet >= 1.35 refuses it unless told (KEP-5573).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Every pod cgroup below our own root, which `down` removes.
        "cgroupRoot": f"/{np.cgroup}",
        "containerRuntimeEndpoint": np.endpoint,
        "address": np.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(np.root / "pki" / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(np.root / "pki" / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        # CoreDNS of the node (real_node_services) answers on the bridge address.
        "clusterDNS": [np.node_ip],
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "podLogsDir": str(np.root / "pod-logs"),
        "volumePluginDir": str(np.root / "volume-plugins"),
        "staticPodPath": "",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusReportFrequency": "10s",
        # No image garbage collection: the node's images are imported, never pulled; one collected is gone
        # (100 disables it, per the kubelet's configuration reference).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": f"{EVICTION_FREE_BYTES >> 20}Mi",
            "imagefs.available": f"{EVICTION_FREE_BYTES >> 20}Mi",
        },
        "shutdownGracePeriod": "0s",
    }
    target = np.conf("kubelet-config.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def kubelet_argv(np: NodePaths) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in NODE_LABELS.items())
    return [
        str(paths.tool("kubelet")),
        f"--config={np.conf('kubelet-config.yaml')}",
        f"--kubeconfig={np.conf('kubelet.kubeconfig')}",
        f"--root-dir={np.kubelet_dir}",
        f"--cert-dir={np.root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={np.node_ip}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def can_lower_oom_score() -> bool:
    """Whether this process has CAP_SYS_RESOURCE (capability 24), needed for a negative oom_score_adj."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def write_containerd_config(np: NodePaths) -> Path:
    """containerd 2.x (config version 3): CRI with runc, CNI from our bin and conf dirs, the offline pause
    image as sandbox, network namespaces under the state directory (not /var/run/netns)."""
    runc = paths.tool("runc")
    text = f"""version = 3
root = "{np.containerd_root}"
state = "{np.run / "containerd"}"
# Plugins that would write outside our directories (/opt/containerd, /var/run/nri) or need kernel parts
# this node does not use.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{np.socket}"

[ttrpc]
  address = "{np.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE (a sandboxed root, as on these machines) no process may lower its OOM score:
  # the kubelet asks -998 for a sandbox, so clamp to our own score instead of failing every pod.
  restrict_oom_score_adj = {"false" if can_lower_oom_score() else "true"}
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{np.run / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir()}"]
    conf_dir = "{np.cni_conf_dir()}"
    max_conf_num = 1

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{image_name("pause")}"

[plugins."io.containerd.grpc.v1.cri"]
  # exec/attach/port-forward streams: on loopback, reached through the kubelet only.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
    target = np.conf("containerd.toml")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def write_cni_config(np: NodePaths) -> Path:
    network = {
        "cniVersion": "1.0.0",
        "name": "cityhub",
        "plugins": [
            {
                "type": "bridge",
                "bridge": np.bridge,
                "isGateway": True,
                # No masquerading: pods talk to each other and the node only (no way out exists here), and
                # no NAT rule is left for `down` to find.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(np.subnet), "gateway": np.node_ip}]],
                    # Services' ClusterIPs through the node (kube-proxy translates them there); no default
                    # route, so still no way out of the node.
                    "routes": [{"dst": SERVICE_CIDR}],
                    "dataDir": str(np.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    target = np.cni_conf_dir() / "10-cityhub.conflist"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(network, indent=2) + "\n")
    return target
