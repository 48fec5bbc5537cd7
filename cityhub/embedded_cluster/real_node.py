"""One real worker node beside the kwok nodes: containerd + runc + the kubelet + CNI (bridge, host-local,
loopback, portmap), so a pod scheduled onto it runs in a container. Chosen by `cityhub cluster up
--real-node` or CITYHUB_REAL_NODE=1; built by `bash hack/real-node.sh` (or CITYHUB_REAL_NODE=1 bash
hack/toolchain.sh). Linux, as root, with the cgroup v1 hierarchies these machines mount (kubelet 1.36 runs
there with failCgroupV1: false; a pure cgroup v2 host is not supported yet).

The node is `cityhub-real-0`, tainted `cityhub.io/real-node=true:NoSchedule` (a pod tolerates it and selects
`cityhub.io/node=real` to run there), with images built offline and imported into its containerd: the pause
sandbox and busybox (see `real_node_config.image_name`). Pods get addresses from a /24 of the pod range on
a bridge whose address is the node's. NetworkPolicies are enforced on its pods' packets by the node's own
engine (netpol.py, iptables), started after kube-proxy and before the node reports Ready.

What it creates is recorded in <cluster>/real-node/node.json *before* it is created, so `down` (also after
a failed or interrupted `up`) removes all of it: the kubelet and containerd (by PID, through
`cityhub.supervisor`), then the pods (`crictl rmp`, so CNI releases their addresses and interfaces), leftover
shims and container processes (by their cgroup and command line), mounts, network namespaces, the bridge,
the iptables chains added meanwhile, the cgroups, and the kernel settings the kubelet changed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cityhub import paths, supervisor
from cityhub.embedded_cluster import real_node_host as host
from cityhub.embedded_cluster import real_node_services as services
from cityhub.embedded_cluster.errors import ClusterError, step
from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.nodes import api_client, node_ready
from cityhub.embedded_cluster.pki import Pki
from cityhub.embedded_cluster.real_node_config import (
    COMPONENT_IMAGES,
    DISK_ROOM_BYTES,
    EVICTION_FREE_BYTES,
    IMAGE_ARCHIVES,
    NODE_NAME,
    NodePaths,
    archive,
    kubelet_argv,
    missing_parts,
    write_certificates,
    write_cni_config,
    write_containerd_config,
    write_kubelet_config,
    write_kubelet_kubeconfig,
)
from cityhub_api.settings import Env

PROCESSES = ("containerd", "kubelet", "kube-proxy", "coredns", "netpol")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
"""Where containerd's runc shims put their sockets, whatever containerd's state directory is."""


@dataclass(frozen=True)
class RealNodeSettings:
    wanted: bool = False
    """CITYHUB_REAL_NODE: `cityhub cluster up` adds the real worker node (like `--real-node`)."""

    @classmethod
    def from_env(cls, env: Env | None = None) -> RealNodeSettings:
        return cls(wanted=(env or Env()).flag("CITYHUB_REAL_NODE", False))


@dataclass
class NodeState:
    ident: str
    bridge: str
    cgroup: str
    run_dir: str
    sysctls: dict[str, str]
    """Kernel settings before the node started: restored by `down`."""
    iptables: dict[str, list[str]]
    """iptables chains before the node started: `down` deletes KUBE-*/CNI-* chains not in here."""
    processes: list[supervisor.Record] = field(default_factory=list)

    def find(self, name: str) -> supervisor.Record | None:
        return next((p for p in self.processes if p.name == name), None)


def save(np: NodePaths, state: NodeState) -> None:
    np.root.mkdir(parents=True, exist_ok=True)
    tmp = np.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(tmp, np.state_file)


def load(np: NodePaths) -> NodeState | None:
    try:
        data = json.loads(np.state_file.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ClusterError("read real node state", f"{np.state_file} is unreadable ({e})") from e
    procs = [supervisor.Record(**p) for p in data.pop("processes", [])]
    return NodeState(**data, processes=procs)


def say(message: str) -> None:
    print(message, flush=True)


# -- up ----------------------------------------------------------------------------------------------------


def check_disk(where: Path) -> None:
    """Refuse to start a node that would evict its own pods: below EVICTION_FREE_BYTES free its kubelet
    taints itself disk-pressure and every hub pod stays Pending while `pulumi up` waits (seen when the
    line was 5%: 12 GB free of 252 GB). Measured on the disk holding the node's images and pods."""
    free = shutil.disk_usage(where).free
    if free - EVICTION_FREE_BYTES < DISK_ROOM_BYTES:
        raise ClusterError(
            "check disk",
            f"{where} has {free / 2**30:.1f} GiB free: the real node's kubelet evicts its pods below "
            f"{EVICTION_FREE_BYTES >> 30} GiB free and needs {DISK_ROOM_BYTES >> 30} GiB above that — free "
            "space (e.g. `go clean -cache`, old clones) or set CITYHUB_STATE to a directory on a larger disk",
        )


def check_prerequisites(where: Path) -> None:
    missing = missing_parts()
    if missing:
        raise ClusterError(
            "find real-node toolchain",
            f"not built: {', '.join(missing)} (in {paths.cache_dir()}): run `bash hack/real-node.sh`",
        )
    if os.geteuid() != 0:
        raise ClusterError("check host", "the real node needs root (network namespaces, mounts, cgroups)")
    host.check_cgroups()
    check_disk(where)


def is_up(lay: Layout) -> bool:
    state = load(NodePaths.of(lay))
    return state is not None and all(
        (rec := state.find(name)) is not None and supervisor.is_running(rec) for name in PROCESSES
    )


def up(lay: Layout, server: str, timeout: float) -> float:
    """Start the node (after removing a dead or half-made one), wait until it is Ready; seconds taken."""
    t0 = time.monotonic()
    with step("find real-node toolchain"):
        check_prerequisites(lay.root)
    np = NodePaths.of(lay)
    if np.state_file.exists():
        say("  real node: removing the earlier one, which is not running")
        problems = down(lay)
        if problems:
            raise ClusterError("clean up earlier real node", "; ".join(problems))
    state = NodeState(
        ident=np.ident,
        bridge=np.bridge,
        cgroup=np.cgroup,
        run_dir=str(np.run),
        sysctls=host.read_sysctls(),
        iptables=host.iptables_chains(),
    )
    save(np, state)  # before anything exists: `down` finds whatever the steps below leave
    pki = Pki(lay.pki)
    with step("real node: host network and cgroups"):
        host.create_bridge(np.bridge, np.node_ip, np.subnet.prefixlen)
        host.set_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        host.create_cgroups(np.cgroup)
        np.run.mkdir(parents=True, exist_ok=True)
        os.chmod(np.run, 0o700)
    with step("real node: configs and certificates"):
        write_containerd_config(np)
        write_cni_config(np)
        write_certificates(np, pki)
        write_kubelet_kubeconfig(np, pki, server)
        kubelet_port = supervisor.free_port(host=np.node_ip)
        healthz_port = supervisor.free_port()
        write_kubelet_config(np, pki, kubelet_port, healthz_port)
        proxy_ports = {"healthz": supervisor.free_port(), "metrics": supervisor.free_port()}
        services.write_proxy_config(np, pki, server, proxy_ports["healthz"], proxy_ports["metrics"])
        dns_ports = {"health": supervisor.free_port(), "ready": supervisor.free_port()}
        services.write_dns_config(np, pki, server, dns_ports["health"], dns_ports["ready"])
        netpol_config = services.netpol_kubeconfig(np, pki, server)
        netpol_port = supervisor.free_port()
    with step("real node: DNS and NetworkPolicy engine access"):
        services.ensure_access(lay.kubeconfig)
    start_containerd(lay, np, state, timeout)
    import_images(np)
    start_kubelet(lay, np, state, kubelet_port, healthz_port, timeout)
    # kube-proxy answers /healthz once it has programmed the Services; CoreDNS /ready once it has synced.
    start_service(
        lay,
        np,
        state,
        "kube-proxy",
        services.proxy_argv(np),
        proxy_ports,
        f"http://127.0.0.1:{proxy_ports['healthz']}/healthz",
        timeout,
    )
    start_service(
        lay,
        np,
        state,
        "coredns",
        services.dns_argv(np),
        dns_ports,
        f"http://127.0.0.1:{dns_ports['ready']}/ready",
        timeout,
    )
    # Policies are enforced from the first pod on: the engine answers /healthz once its rules are applied.
    start_service(
        lay,
        np,
        state,
        "netpol",
        services.netpol_argv(np, netpol_config, netpol_port),
        {"health": netpol_port},
        f"http://127.0.0.1:{netpol_port}/healthz",
        timeout,
    )
    took = wait_node_ready(lay, timeout)
    say(f"  {'real node':<24} {NODE_NAME} Ready in {took:.1f}s (pods on {np.subnet} via {np.bridge})")
    return time.monotonic() - t0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # containerd finds its shim on PATH; the kubelet and shims find nothing else there that matters.
    env["PATH"] = f"{paths.bin_dir()}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def _ctr(np: NodePaths, *args: str) -> list[str]:
    return [str(paths.tool("ctr")), "--address", str(np.socket), "--namespace", "k8s.io", *args]


def start_containerd(lay: Layout, np: NodePaths, state: NodeState, timeout: float) -> None:
    argv = [str(paths.tool("containerd")), "--config", str(np.conf("containerd.toml"))]
    with step("start containerd"):
        rec = supervisor.spawn("containerd", argv, log=lay.log("containerd"), env=_env(), cwd=np.root)
    state.processes.append(rec)
    save(np, state)

    def answers() -> bool:
        return np.socket.exists() and host.run(_ctr(np, "version"), "containerd", check=False).returncode == 0

    try:
        took = supervisor.wait_ready(rec, answers, timeout, interval=0.3)
    except supervisor.ProcessFailed as e:
        raise ClusterError("start containerd", str(e)) from e
    say(f"  {'containerd':<24} pid {rec.pid:<8} {np.socket} ready in {took:.1f}s")


def import_images(np: NodePaths) -> None:
    """Load the offline-built images into the node's containerd (the CRI namespace, k8s.io)."""
    t0 = time.monotonic()
    names = [*IMAGE_ARCHIVES, *(n for n in COMPONENT_IMAGES if archive(n).is_file())]
    for name in names:
        host.run(_ctr(np, "images", "import", str(archive(name))), f"import image {name}")
    say(f"  {'images':<24} {', '.join(names)} imported in {time.monotonic() - t0:.1f}s")


def start_kubelet(
    lay: Layout, np: NodePaths, state: NodeState, port: int, healthz_port: int, timeout: float
) -> None:
    with step("start kubelet"):
        rec = supervisor.spawn(
            "kubelet",
            kubelet_argv(np),
            log=lay.log("kubelet"),
            env=_env(),
            cwd=np.root,
            ports={"https": port},
        )
    state.processes.append(rec)
    save(np, state)
    try:
        took = supervisor.wait_ready(
            rec, lambda: supervisor.http_ok(f"http://127.0.0.1:{healthz_port}/healthz"), timeout, interval=0.5
        )
    except supervisor.ProcessFailed as e:
        raise ClusterError("start kubelet", str(e)) from e
    say(f"  {'kubelet':<24} pid {rec.pid:<8} port {port:<12} healthy in {took:.1f}s")


def start_service(
    lay: Layout,
    np: NodePaths,
    state: NodeState,
    name: str,
    argv: list[str],
    ports: dict[str, int],
    ready_url: str,
    timeout: float,
) -> None:
    with step(f"start {name}"):
        rec = supervisor.spawn(name, argv, log=lay.log(name), env=_env(), cwd=np.root, ports=ports)
    state.processes.append(rec)
    save(np, state)
    try:
        took = supervisor.wait_ready(rec, lambda: supervisor.http_ok(ready_url), timeout, interval=0.5)
    except supervisor.ProcessFailed as e:
        raise ClusterError(f"start {name}", str(e)) from e
    say(f"  {name:<24} pid {rec.pid:<8} {ready_url.rsplit(':', 1)[-1]:<12} ready in {took:.1f}s")


def wait_node_ready(lay: Layout, timeout: float) -> float:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    t0 = time.monotonic()
    with api_client(lay.kubeconfig) as api:
        core = client.CoreV1Api(api)

        def ready() -> bool:
            try:
                return node_ready(core.read_node(NODE_NAME))
            except ApiException:
                return False

        if not supervisor.wait_until(ready, timeout, 0.5):
            raise ClusterError(
                "wait for real node",
                f"{NODE_NAME} not Ready within {timeout:.0f}s; see {lay.log('kubelet')}",
            )
    return time.monotonic() - t0


# -- down --------------------------------------------------------------------------------------------------


def remove_pods(np: NodePaths) -> list[str]:
    """Stop and remove every pod sandbox through the CRI, so CNI releases its address and interface and
    containerd unmounts its root filesystem and shm."""
    crictl = paths.bin_dir() / "crictl"
    if not (np.socket.exists() and crictl.is_file()):
        return []
    endpoint = ["--runtime-endpoint", np.endpoint, "--image-endpoint", np.endpoint, "--timeout", "30s"]
    result = host.run([str(crictl), *endpoint, "rmp", "--force", "--all"], "remove pods", check=False)
    return [] if result.returncode == 0 else [f"crictl rmp: {(result.stderr or result.stdout).strip()[:300]}"]


def down(lay: Layout) -> list[str]:
    """Remove the real node and everything it changed on the host; returns what could not be undone."""
    np = NodePaths.of(lay)
    state = load(np)
    if state is None:
        return []
    problems: list[str] = []
    containerd = state.find("containerd")
    # The kubelet first: it would restart the pods removed below. The policy engine, kube-proxy and CoreDNS
    # next: the engine and the proxy would rewrite the iptables chains removed below.
    for name in ("kubelet", "netpol", "kube-proxy", "coredns"):
        rec = state.find(name)
        if rec is not None:
            problems += _stop(rec)
    if containerd is not None and supervisor.is_running(containerd):
        problems += remove_pods(np)
    if containerd is not None:
        problems += _stop(containerd)
    # Whatever survived its runtime: shims (named by our socket) and container processes (in our cgroups).
    for _ in range(2):
        strays = host.pids_with_arg(str(np.socket)) | host.cgroup_pids(state.cgroup)
        if not strays:
            break
        host.kill_pids(strays)
        supervisor.wait_until(lambda: not host.cgroup_pids(state.cgroup), 5.0)
    problems += host.unmount_all(np.root, np.run)
    problems += host.delete_bridge(state.bridge)
    problems += host.remove_added_chains(state.iptables)
    problems += host.remove_cgroups(state.cgroup)
    problems += host.restore_sysctls(state.sysctls)
    problems += host.remove_tree(np.run)
    host.remove_empty_dirs(np.run.parent, SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent)
    if not problems:
        problems += host.remove_tree(np.root)
    say(
        f"  {'real node':<24} {NODE_NAME} removed"
        if not problems
        else f"  real node: {len(problems)} problems"
    )
    return problems


def _stop(rec: supervisor.Record) -> list[str]:
    try:
        outcome = supervisor.stop(rec)
    except supervisor.ProcessFailed as e:
        return [str(e)]
    say(f"  {rec.name:<24} pid {rec.pid:<8} {outcome}")
    return []


def status_rows(lay: Layout) -> list[tuple[str, str, str, str]]:
    state = load(NodePaths.of(lay))
    if state is None:
        return []
    rows = []
    for name in PROCESSES:
        rec = state.find(name)
        if rec is None:
            rows.append((name, "-", "-", "not started"))
            continue
        ports = ",".join(str(p) for p in rec.ports.values()) or "-"
        rows.append((name, str(rec.pid), ports, "running" if supervisor.is_running(rec) else "exited"))
    return rows
