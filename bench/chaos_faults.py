"""The faults of a chaos run and the operator they are inflicted on (bench/chaos.py).

    Operator     `python -m cityhub_operator` (cityhub.testkit.OperatorProcess) supervised like a Deployment
                 would: restarted when it exits on its own (counted as unplanned), its RSS and /healthz
                 sampled every few seconds
    Fault        one injected fault: what, when it began and ended (seconds from the run's start), detail
    Chaos        runs a seeded schedule of faults, each in its own thread at its time; faults on one target
                 (the operator, the cluster, the proxy, one backend) wait for each other, different targets
                 overlap freely

Faults:
    operator-kill      SIGKILL, then a new process after `restart_delay` seconds
    cluster-restart    etcd and kube-apiserver SIGKILLed through the embedded cluster's own records
                       (state.json), down for a while, then `python -m cityhub.embedded_cluster up` (what
                       `cityhub cluster up` runs) restarts what died with its recorded command line and ports
    backend-down       every process of one type's backend stopped, started again on the same ports after
                       the hold (chaos_backends.py)
    packet-drop        the operator↔API-server proxy drops everything for the hold (chaos_proxy.py)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos_backends import Backends
from chaos_proxy import DropProxy

from cityhub import supervisor
from cityhub import testkit as testing
from cityhub.embedded_cluster.layout import layout
from cityhub.embedded_cluster.state import load_state

CLUSTER_PROCESSES = ("etcd", "kube-apiserver")


class Operator:
    """The operator process, supervised: restarted after an exit nobody asked for."""

    def __init__(self, kubeconfig: Path, env: dict[str, str], log: Path, clock: Callable[[], float]) -> None:
        self.process = testing.OperatorProcess(kubeconfig, env, log)
        self.health_port = int(env["CITYHUB_HEALTH_PORT"])
        self.clock = clock
        self.lock = threading.Lock()
        """Held while a fault kills and restarts it: the supervision loop leaves it alone meanwhile."""
        self.planned = 0
        self.unplanned: list[str] = []
        self.max_rss = 0
        self.health: list[tuple[float, int]] = []
        """(seconds, HTTP status of /healthz; 0 = no answer) at each change."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="operator watch", daemon=True)

    def start(self, timeout: float = 120) -> Operator:
        self.process.start()
        self.wait_healthy(timeout)
        self._thread.start()
        return self

    def wait_healthy(self, timeout: float) -> None:
        assert self.process.record is not None
        url = f"http://{supervisor.HOST}:{self.health_port}/healthz"
        supervisor.wait_ready(self.process.record, lambda: supervisor.http_ok(url, timeout=3), timeout, 0.5)

    def kill_and_restart(self, delay: float) -> str:
        with self.lock:
            old = self.process.pid
            self.process.kill()
            self.planned += 1
            time.sleep(delay)
            supervisor.port_released(self.health_port, timeout=10)
            self.process.start()
            return f"pid {old} SIGKILLed, pid {self.process.pid} started {delay:.0f}s later"

    def _watch(self) -> None:
        last_status = -1
        while not self._stop.wait(2.0):
            with self.lock:
                if not self.process.alive():
                    tail = supervisor.tail(self.process.log, 5)
                    self.unplanned.append(f"{self.clock():.0f}s: pid {self.process.pid} exited\n{tail}")
                    supervisor.port_released(self.health_port, timeout=10)
                    self.process.start()  # as a Deployment's kubelet would
                    continue
                try:
                    self.max_rss = max(self.max_rss, self.process.rss_bytes())
                except OSError:
                    continue
            status, _ = self.process.health(timeout=3)
            if status != last_status:
                self.health.append((self.clock(), status))
                last_status = status

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.process.stop()


@dataclass
class Fault:
    what: str
    target: str
    at: float
    """Scheduled start, seconds from the run's start."""
    hold: float = 0.0
    began: float | None = None
    ended: float | None = None
    detail: str = ""
    error: str = ""


@dataclass
class Chaos:
    operator: Operator
    proxy: DropProxy
    backends: Backends
    clock: Callable[[], float]
    restart_delay: float = 3.0
    faults: list[Fault] = field(default_factory=list)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def schedule(
        self,
        rng: random.Random,
        window: tuple[float, float],
        *,
        operator_kills: int,
        cluster_restarts: int,
        down: tuple[str, ...],
        down_hold: float,
        drops: int,
        drop_hold: float,
    ) -> list[Fault]:
        """Random start times in `window` (seconds from the start) for each fault, sorted by time."""
        low, high = window

        def at(hold: float = 0.0) -> float:
            return round(rng.uniform(low, max(low, high - hold)), 1)

        faults = [Fault("operator-kill", "operator", at()) for _ in range(operator_kills)]
        faults += [
            Fault("cluster-restart", "cluster", at(), rng.uniform(5, 20)) for _ in range(cluster_restarts)
        ]
        faults += [Fault("backend-down", t, at(down_hold), down_hold) for t in down]
        faults += [Fault("packet-drop", "proxy", at(drop_hold), drop_hold) for _ in range(drops)]
        self.faults = sorted(faults, key=lambda f: f.at)
        return self.faults

    def start(self, t0: float) -> None:
        for fault in self.faults:
            thread = threading.Thread(target=self._run, args=(fault, t0), name=fault.what, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()

    def last_end(self) -> float:
        return max((f.ended or 0.0 for f in self.faults), default=0.0)

    def _run(self, fault: Fault, t0: float) -> None:
        time.sleep(max(0.0, t0 + fault.at - time.monotonic()))
        with self._locks.setdefault(fault.target, threading.Lock()):
            fault.began = self.clock()
            print(
                f"[{fault.began:6.0f}s] fault: {fault.what} {fault.target} (hold {fault.hold:.0f}s)",
                flush=True,
            )
            try:
                fault.detail = self._inflict(fault)
            except Exception as e:  # the run goes on and reports it: one failed fault must not end the run
                fault.error = f"{type(e).__name__}: {e}"[:500]
            fault.ended = self.clock()
            print(
                f"[{fault.ended:6.0f}s] over: {fault.what} {fault.target}: {fault.detail} {fault.error}",
                flush=True,
            )

    def _inflict(self, fault: Fault) -> str:
        if fault.what == "operator-kill":
            return self.operator.kill_and_restart(self.restart_delay)
        if fault.what == "packet-drop":
            self.proxy.drop()
            time.sleep(fault.hold)
            self.proxy.restore()
            return f"{self.proxy.held} connections held unanswered so far"
        if fault.what == "backend-down":
            stopped = self.backends.down(fault.target)
            time.sleep(fault.hold)
            took = self.backends.up(fault.target)
            return f"{', '.join(stopped)}; back in {took:.0f}s"
        return self._restart_cluster(fault.hold)

    def _restart_cluster(self, hold: float) -> str:
        state = load_state(layout())
        assert state is not None, "no embedded cluster state"
        killed = []
        for name in CLUSTER_PROCESSES:
            rec = state.find(name)
            if rec is not None:
                killed.append(f"{name} {supervisor.kill(rec)}")
        time.sleep(hold)
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cityhub.embedded_cluster", "up"],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cluster up failed: {done.stderr.strip()[-800:]}")
        took = time.monotonic() - began
        return f"{', '.join(killed)}; down {hold:.0f}s; `cluster up` restarted them in {took:.0f}s"
