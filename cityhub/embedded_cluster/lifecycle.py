"""`cityhub cluster up|down|status`: start the embedded cluster (or reuse it, or restart its dead processes
keeping their data), stop it and delete its data, report each process and the apiserver's health.

Processes are started, waited for and stopped through `cityhub.supervisor`; what was started is recorded in
state.json (see state.py) before it is waited for, so `down` can always find it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
import time
from pathlib import Path

from cityhub import paths, supervisor
from cityhub.embedded_cluster import real_node, sign_in
from cityhub.embedded_cluster.commands import child_env, command, write_kwok_config
from cityhub.embedded_cluster.errors import ClusterError, step
from cityhub.embedded_cluster.health import health_check, wait_healthy
from cityhub.embedded_cluster.kubeconfigs import write_kubeconfigs
from cityhub.embedded_cluster.layout import HUB, Layout, cluster_names, layout
from cityhub.embedded_cluster.network import HOST
from cityhub.embedded_cluster.nodes import NODES, apply_nodes, wait_default_service_account, wait_nodes_ready
from cityhub.embedded_cluster.pki import Pki, generate_pki
from cityhub.embedded_cluster.ports import PROCESSES, pick_ports
from cityhub.embedded_cluster.real_node_config import NodePaths
from cityhub.embedded_cluster.state import ClusterState, load_state, save_state, state_lock
from cityhub_api.settings import Env

DEFAULT_STEP_TIMEOUT = 180.0  # seconds; generous because a 2-core machine may be compiling meanwhile


def step_timeout() -> float:
    """CITYHUB_CLUSTER_TIMEOUT: seconds each start step may take."""
    return Env().number("CITYHUB_CLUSTER_TIMEOUT", DEFAULT_STEP_TIMEOUT, minimum=1.0)


def say(message: str = "") -> None:
    print(message, flush=True)


def process_rows(state: ClusterState | None) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in PROCESSES:
        rec = state.find(name) if state else None
        if rec is None:
            rows.append((name, "-", "-", "not started"))
            continue
        ports = ",".join(f"{p}" for p in rec.ports.values())
        rows.append((name, str(rec.pid), ports, "running" if supervisor.is_running(rec) else "exited"))
    return rows


def apiserver_health(lay: Layout, state: ClusterState) -> tuple[bool, str]:
    rec = state.find("kube-apiserver")
    if rec is None:
        return False, "not started"
    try:
        ok, detail = health_check("kube-apiserver", Pki(lay.pki), rec.port)()
    except (OSError, ssl.SSLError) as e:
        return False, f"cannot load the admin certificate from {lay.pki}: {e}"
    return ok, "ok" if ok else detail


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("PROCESS", "PID", "PORT", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def status(name: str | None = None) -> int:
    """Every embedded cluster on this machine (or the one named): each process's state and the apiserver's
    health; 0 only when everything runs and is ready."""
    names = [name] if name else cluster_names()
    results = [cluster_status(n) for n in names]
    return 0 if all(r == 0 for r in results) else 1


def cluster_status(name: str) -> int:
    lay = layout(name)
    state = load_state(lay)
    rows = process_rows(state) + real_node.status_rows(lay)
    say(f"cityhub cluster status {name} ({lay.root})")
    print_table(rows)
    if state is None:
        say(f"  apiserver: no cluster state; start it with `cityhub cluster up{_named(name)}`")
        return 1
    healthy, detail = apiserver_health(lay, state)
    say(f"  apiserver: {detail} ({state.apiserver}/readyz)")
    say(f"  kubeconfig: {state.kubeconfig}")
    dead = [r[0] for r in rows if r[3] != "running"]
    if dead:
        again = f"`cityhub cluster up{_named(name)}`"
        say(f"  {', '.join(dead)} not running: {again} restarts it; logs in {lay.logs}")
    return 0 if healthy and not dead else 1


def _named(name: str) -> str:
    return "" if name == HUB else f" --name {name}"


def remove_cluster_dir(lay: Layout, keep_logs: bool = True) -> None:
    """Delete the cluster's state; logs stay for a post-mortem until the next fresh `up`."""
    if not lay.root.exists():
        return
    for entry in lay.root.iterdir():
        if keep_logs and entry == lay.logs:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def stop_all(state: ClusterState) -> list[str]:
    """Stop every recorded process (reverse start order); returns what went wrong, for the user."""
    problems = []
    for rec in reversed(state.processes):
        try:
            outcome = supervisor.stop(rec)
        except supervisor.ProcessFailed as e:
            outcome = "STILL RUNNING"
            problems.append(str(e))
        say(f"  {rec.name:<24} pid {rec.pid:<8} {outcome}")
    for rec in state.processes:
        for role, port in rec.ports.items():
            if not supervisor.wait_until(lambda p=port: not supervisor.port_accepts(p, HOST), 5.0):
                problems.append(f"{rec.name} {role} port {port} still accepts connections")
    return problems


def down(name: str = HUB) -> int:
    lay = layout(name)
    with state_lock(lay):
        state = load_state(lay)
        say(f"cityhub cluster down {name} ({lay.root})")
        if state is None:
            say("  no cluster state: nothing to stop")
        # The real node first (its pods need containerd, its kubelet the apiserver no more); its leftovers
        # (a mount, a process) keep the whole directory, so a later down can still find and remove them.
        node_problems = real_node.down(lay)
        problems = node_problems + (stop_all(state) if state else [])
        # Keep the state while one of our processes survives, so a later down can still find it.
        survivors = state is not None and any(supervisor.is_running(r) for r in state.processes)
        if not node_problems and not survivors:
            remove_cluster_dir(lay)
    for problem in problems:
        print(f'cityhub cluster down {name}: step "stop processes" failed: {problem}', file=sys.stderr)
    if not problems:
        say("  stopped; ports are free")
    return 1 if problems else 0


def existing_cluster(lay: Layout) -> ClusterState | None:
    """The recorded cluster, or None after removing leftovers that cannot be resumed."""
    state = load_state(lay)
    if state is None:
        if lay.root.exists() and any(e != lay.logs for e in lay.root.iterdir()):
            say("  found cluster files without a state file: removing them and starting fresh")
            remove_cluster_dir(lay)
        return None
    if all(state.find(name) is not None for name in PROCESSES):
        return state
    # An earlier up was killed before it had started every process: nothing worth resuming.
    say("  an earlier up did not finish: stopping what it started and starting fresh")
    problems = stop_all(state)
    if problems:
        raise ClusterError("clean up unfinished cluster", "; ".join(problems))
    remove_cluster_dir(lay)
    return None


def dead_processes(state: ClusterState) -> list[str]:
    return [row[0] for row in process_rows(state) if row[3] != "running"]


def wait_apiserver_ready(lay: Layout, state: ClusterState, timeout: float = 30.0) -> None:
    rec = state.find("kube-apiserver")
    assert rec is not None
    check = health_check("kube-apiserver", Pki(lay.pki), rec.port)
    # The processes run: give a just-(re)started apiserver a moment before calling it unhealthy.
    if not supervisor.wait_until(lambda: check()[0], timeout, 0.5):
        raise ClusterError(
            "check running cluster",
            f"every process runs but the apiserver is not ready ({apiserver_health(lay, state)[1]}); "
            f"see {lay.logs}, or run `cityhub cluster down{_named(lay.name)}` and `cityhub cluster up"
            f"{_named(lay.name)}` to start fresh",
        )


def restart(lay: Layout, state: ClusterState, dead: list[str]) -> None:
    """Start the dead processes again with their recorded command lines: same ports, certificates and
    etcd data, so whatever was deployed (and Pulumi's record of it) survives a crash or a reboot."""
    timeout = step_timeout()
    pki = Pki(lay.pki)
    for name in PROCESSES:
        rec = state.find(name)
        if name not in dead or rec is None:
            continue
        # A killed multi-threaded process shows as a zombie as soon as its main thread is gone, but
        # its other threads close the sockets a moment later: give the ports that moment.
        busy = [
            str(p)
            for p in rec.ports.values()
            if not supervisor.wait_until(lambda p=p: supervisor.port_is_free(p, HOST), 10.0)
        ]
        if busy:
            raise ClusterError(
                f"restart {name}",
                f"its port {', '.join(busy)} on {HOST} is now used by another process; free it, or run "
                f"`cityhub cluster down{_named(lay.name)}` to discard this cluster and start fresh",
            )
        with step(f"restart {name}"):
            paths.tool(name)
            new = supervisor.spawn(
                name, rec.argv, log=Path(rec.log), env=child_env(name, lay), ports=rec.ports
            )
        state.processes[state.processes.index(rec)] = new
        save_state(lay, state)
        took = wait_healthy(new, health_check(name, pki, new.port), timeout)
        say(f"  {name:<24} pid {new.pid:<8} restarted, healthy in {took:.1f}s")
    create_nodes(lay, timeout)


def print_usage_hint(state: ClusterState) -> None:
    kubectl = paths.bin_dir() / "kubectl"
    say(f"  kubeconfig: {state.kubeconfig}")
    say("  use it with:")
    say(f"    export KUBECONFIG={state.kubeconfig}")
    say(f"    {kubectl} get nodes -L cityhub.io/pool")


def start(lay: Layout, with_real_node: bool = False) -> ClusterState:
    """Generate the pki and configs, start each process and wait for it, then create the nodes."""
    timeout = step_timeout()
    pod_reachable_at = NodePaths.of(lay).node_ip if with_real_node else None
    for name in (*PROCESSES, "kubectl"):
        try:
            paths.tool(name)
        except paths.ToolMissingError as e:
            raise ClusterError("find toolchain", str(e)) from None
    with step("pick ports"):
        ports = pick_ports()
    t0 = time.monotonic()
    with step("write pki and configs"):
        shutil.rmtree(lay.logs, ignore_errors=True)
        lay.root.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.root, 0o700)  # keys and kubeconfigs inside: owner only
        pki = generate_pki(lay.pki)
        server = f"https://{HOST}:{ports['kube-apiserver']['secure']}"
        write_kubeconfigs(lay, pki, server)
        write_kwok_config(lay)
        if not sign_in.config_file(lay).exists():
            sign_in.write([], lay)  # no issuer until `cityhub operator start` brings the city's identity
    say(f"  {'pki':<24} CAs and certificates in {lay.pki} ({time.monotonic() - t0:.1f}s)")
    state = ClusterState(apiserver=server, kubeconfig=str(lay.kubeconfig))
    for name in PROCESSES:
        with step(f"start {name}"):
            rec = supervisor.spawn(
                name,
                command(name, lay, pki, ports, pod_reachable_at),
                log=lay.log(name),
                env=child_env(name, lay),
                ports=ports[name],
            )
        state.processes.append(rec)
        # Recorded before waiting, so `down` can stop it even if this step fails or we are killed.
        save_state(lay, state)
        took = wait_healthy(rec, health_check(name, pki, rec.port), timeout)
        port_list = ",".join(map(str, rec.ports.values()))
        say(f"  {name:<24} pid {rec.pid:<8} port {port_list:<12} healthy in {took:.1f}s")
    create_nodes(lay, timeout)
    return state


def create_nodes(lay: Layout, timeout: float) -> None:
    """Create (or repair) the simulated nodes and wait until pods can be scheduled and admitted."""
    with step("create nodes"):
        apply_nodes(lay.kubeconfig)
    with step("wait for nodes"):
        took = wait_nodes_ready(lay.kubeconfig, timeout)
    pools = ", ".join(f"{sum(s.pool == p for s in NODES)} {p}" for p in dict.fromkeys(s.pool for s in NODES))
    say(f"  {'nodes':<24} {len(NODES)} kwok nodes Ready ({pools}) in {took:.1f}s")
    with step("wait for default service account"):
        wait_default_service_account(lay.kubeconfig, timeout)


def up(with_real_node: bool | None = None, name: str = HUB) -> int:
    """Start (or reuse, or repair) the cluster; with the real node when asked (`--real-node`) or
    CITYHUB_REAL_NODE=1, added to an already running cluster too."""
    want_real_node = with_real_node
    if want_real_node is None:
        want_real_node = real_node.RealNodeSettings.from_env().wanted
    lay = layout(name)
    t0 = time.monotonic()
    say(f"cityhub cluster up {name} ({lay.root})")
    with state_lock(lay):
        with step("check running cluster"):
            state = existing_cluster(lay)
            dead = dead_processes(state) if state else []
            if state is not None and not dead:
                wait_apiserver_ready(lay, state)
        if state is not None and not dead:
            say("  already up: every process runs and the apiserver is ready; nothing to do")
        elif state is not None:
            say(f"  not running: {', '.join(dead)}; restarting with the recorded command lines (data kept)")
            try:
                restart(lay, state, dead)
            except ClusterError as e:
                hint = (
                    f"the cluster's data is kept; `cityhub cluster down{_named(name)}` discards it, then up "
                    "starts fresh"
                )
                raise ClusterError(e.step, f"{e}\n  {hint}") from e
            say(f"cluster up in {time.monotonic() - t0:.1f}s")
        else:
            state = start_fresh(lay, bool(want_real_node))
            say(f"cluster up in {time.monotonic() - t0:.1f}s")
        if want_real_node and not real_node.is_up(lay):
            add_real_node(lay, state)
            say(f"cluster up with the real node in {time.monotonic() - t0:.1f}s")
    print_usage_hint(state)
    return 0


def make_apiserver_reachable(lay: Layout, state: ClusterState) -> None:
    """A cluster started without the real node has its API server on loopback only: restart it (same port,
    certificates and etcd data) with the flags that let the node's pods reach it (commands.py)."""
    rec = state.find("kube-apiserver")
    assert rec is not None
    ports = {p.name: dict(p.ports) for p in state.processes}
    argv = command("kube-apiserver", lay, Pki(lay.pki), ports, NodePaths.of(lay).node_ip)
    if rec.argv == argv:
        return
    say("  kube-apiserver: restarting to serve the real node's pods too")
    try:
        supervisor.stop(rec)
    except supervisor.ProcessFailed as e:
        raise ClusterError("restart kube-apiserver", str(e)) from e
    with step("restart kube-apiserver"):
        new = supervisor.spawn(
            "kube-apiserver", argv, log=Path(rec.log), env=child_env("kube-apiserver", lay), ports=rec.ports
        )
    state.processes[state.processes.index(rec)] = new
    save_state(lay, state)
    took = wait_healthy(new, health_check("kube-apiserver", Pki(lay.pki), new.port), step_timeout())
    say(f"  {'kube-apiserver':<24} pid {new.pid:<8} restarted, healthy in {took:.1f}s")


def add_real_node(lay: Layout, state: ClusterState) -> None:
    make_apiserver_reachable(lay, state)
    try:
        real_node.up(lay, state.apiserver, step_timeout())
    except BaseException:
        # The control plane stays; the node's half-made parts do not (also on Ctrl-C).
        say("  removing the real node's parts:")
        for problem in real_node.down(lay):
            say(f"    {problem}")
        raise


def start_fresh(lay: Layout, with_real_node: bool = False) -> ClusterState:
    try:
        return start(lay, with_real_node)
    except BaseException:
        # Leave nothing half-started behind (also on Ctrl-C); logs stay for the post-mortem.
        partial = load_state(lay)
        if partial is not None:
            say("  stopping what was started:")
            stop_all(partial)
        if not real_node.down(lay):
            remove_cluster_dir(lay)
        raise
