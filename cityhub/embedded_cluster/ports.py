"""The processes of the embedded cluster and their ports: free ones are picked on 127.0.0.1 (through
`cityhub.supervisor`), CITYHUB_<PROCESS>[_<ROLE>]_PORT pins one, and a pinned port that is taken fails
before anything starts, naming the variable to change."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cityhub import supervisor
from cityhub.embedded_cluster.errors import ClusterError
from cityhub.embedded_cluster.network import HOST

# Start order; `down` stops them in reverse.
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Each process's ports, keyed by role; the first one is the one status shows first and health-checks.
PORT_ROLES: dict[str, tuple[str, ...]] = {
    "etcd": ("client", "peer"),
    "kube-apiserver": ("secure",),
    "kube-controller-manager": ("secure",),
    "kube-scheduler": ("secure",),
    "kwok": ("server",),
}


class PortTakenError(ClusterError):
    def __init__(self, port: int, env_var: str) -> None:
        super().__init__(
            "pick ports",
            f"port {port} on {HOST} (set by {env_var}) is already in use; free it or unset {env_var}",
        )
        self.port = port


def port_env_var(process: str, role: str) -> str:
    """CITYHUB_APISERVER_PORT, CITYHUB_ETCD_PORT, CITYHUB_ETCD_PEER_PORT, CITYHUB_SCHEDULER_PORT, ..."""
    base = process.removeprefix("kube-").replace("-", "_").upper()
    suffix = "" if role == PORT_ROLES[process][0] else f"_{role.upper()}"
    return f"CITYHUB_{base}{suffix}_PORT"


def pick_port(env_var: str, taken: set[int], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    given = env.get(env_var)
    if given:
        try:
            port = int(given)
        except ValueError:
            raise ClusterError("pick ports", f"{env_var}={given!r} is not a port number") from None
        if port in taken or not supervisor.port_is_free(port, HOST):
            raise PortTakenError(port, env_var)
    else:
        port = supervisor.free_port(exclude=taken, host=HOST)
    taken.add(port)
    return port


def pick_ports(env: Mapping[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Every process's ports, pinned ones (env) checked first so a conflict fails before anything starts."""
    env = dict(os.environ) if env is None else env
    taken: set[int] = set()
    pinned = [(p, r) for p in PROCESSES for r in PORT_ROLES[p] if env.get(port_env_var(p, r))]
    ports: dict[str, dict[str, int]] = {p: {} for p in PROCESSES}
    for process, role in pinned:
        ports[process][role] = pick_port(port_env_var(process, role), taken, env)
    for process in PROCESSES:
        for role in PORT_ROLES[process]:
            if role not in ports[process]:
                ports[process][role] = pick_port(port_env_var(process, role), taken, env)
    return ports
