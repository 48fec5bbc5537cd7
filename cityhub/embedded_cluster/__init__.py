"""The embedded default cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

    python -m cityhub.embedded_cluster up       start everything; a no-op when it is already up, and when
                                                some process died (crash, reboot) restart just those,
                                                keeping the data
    python -m cityhub.embedded_cluster up --real-node   also one real worker node (containerd, runc,
                                                kubelet, CNI; see real_node.py), like CITYHUB_REAL_NODE=1
    python -m cityhub.embedded_cluster status   each process, its pid, port and state; exit 1 unless all run
    python -m cityhub.embedded_cluster down     stop everything it started, free its ports, delete its data
    ... up|down|status --name haidong-edge      another cluster beside the hub (an edge cluster, 多级贯通):
                                                its own ports, pki and data in <state>/clusters/<name>;
                                                status without --name lists every cluster, down --all
                                                stops them all

The cluster is a convenience for a laptop or CI: everything listens on 127.0.0.1, nodes are simulated
by kwok (3 CPU nodes, 2 GPU inference nodes), and the only thing the rest of cityhub gets from it is the
admin kubeconfig at <state>/cluster/kubeconfig. Nothing else may depend on it being embedded: a real
cluster is used by pointing KUBECONFIG at it instead.

State lives under <state>/cluster (CITYHUB_STATE overrides <repo>/.state): pki/, conf/ (component
kubeconfigs, kwok config), etcd-data/, logs/<process>.log and state.json (pid, command line, ports); the real
node's files are in real-node/ (its node.json records what it changed on the host).
Ports are picked free on 127.0.0.1; CITYHUB_<PROCESS>_PORT (e.g. CITYHUB_APISERVER_PORT) pins one.
CITYHUB_CLUSTER_TIMEOUT (seconds, default 180) bounds each wait. Linux only: liveness comes from /proc.

Modules: layout (directories), network (addresses, names), ports, pki, kubeconfigs, commands (command lines,
kwok's config), health, nodes (kwok nodes), state (state.json and its lock), lifecycle (up, down, status),
real_node (the real worker node), real_node_config (its configs), real_node_host (the host state it changes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cityhub.embedded_cluster.errors import ClusterError
from cityhub.embedded_cluster.layout import HUB, check_name, cluster_names
from cityhub.embedded_cluster.lifecycle import down, status, up
from cityhub_api.settings import SettingError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cityhub cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--real-node",
        action="store_true",
        default=None,
        help="up: add one real worker node (build it first: bash hack/real-node.sh); CITYHUB_REAL_NODE=1 too",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the cluster: `hub` (default) or an edge cluster's name, each with its own ports and data; "
        "status without --name shows every cluster",
    )
    parser.add_argument("--all", action="store_true", help="down: every embedded cluster on this machine")
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        name = check_name(ns.name or HUB)
    except ValueError as e:
        parser.error(f"--name: {e}")
    actions: dict[str, Callable[[], int]] = {
        "up": lambda: up(with_real_node=ns.real_node, name=name),
        "down": lambda: max(down(n) for n in (reversed(cluster_names()) if ns.all else [name])),
        "status": lambda: status(ns.name and name),
    }
    try:
        return actions[ns.action]()
    except ClusterError as e:
        print(f'cityhub cluster {ns.action}: step "{e.step}" failed: {e}', file=sys.stderr)
        return 1
    except SettingError as e:
        print(f"cityhub cluster {ns.action}: {e}", file=sys.stderr)
        return 2
