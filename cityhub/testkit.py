"""Helpers for integration tests, benchmarks and demos: kubectl, CRDs, requests, the operator as a process
(alone, or scraped by a real Prometheus), and a TCP relay that can go silent (chaos between the operator
and the API server).

proc = OperatorProcess(kubeconfig, env={...}, log=path).start()
... proc.kill()   # SIGKILL, like a crash
proc.start()      # a new process picks up where the old one left off
proc.stop()       # SIGTERM to its group, by PID (checked against its start time)
proc.health()     # (HTTP status, body) of its /healthz, when CITYHUB_HEALTH_PORT is set
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from cityhub import paths, supervisor
from cityhub.local_prometheus import Prometheus
from cityhub_api import crds
from cityhub_api.api import GROUP, VERSION

OPERATOR_ROOT = paths.repo_root() / "operator"
"""Where the operator's package lives in a checkout (it is also installed in .venv in editable mode)."""


def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True, kubectl_bin: str | None = None
) -> subprocess.CompletedProcess[str]:
    binary = kubectl_bin or str(paths.bin_dir() / "kubectl")
    proc = subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def apply(
    kubeconfig: Path, docs: Iterable[Mapping[str, Any]], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(list(docs), allow_unicode=True)
    return kubectl(
        kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text, check=check
    )


def install_crds(kubeconfig: Path) -> None:
    every = crds.install_set()
    apply(kubeconfig, every)
    kubectl(
        kubeconfig,
        "wait",
        "--for",
        "condition=Established",
        "--timeout=60s",
        *(f"crd/{c['metadata']['name']}" for c in every),
    )


def delete_requests(kubeconfig: Path, plural: str, timeout: float = 180) -> None:
    """Delete every request of a kind, cluster-wide, and wait until the operator has released them.

    Integration test modules share one cluster: a module that leaves requests behind hands them, with their
    finalizers, to the next module's operator (on another backend). Call it while the operator still runs.
    """
    kubectl(
        kubeconfig, "delete", plural, "--all", "--all-namespaces", "--wait=true", f"--timeout={int(timeout)}s"
    )


def ensure_namespaces(kubeconfig: Path, names: Iterable[str]) -> None:
    apply(kubeconfig, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names])


def channel(namespace: str, name: str, offering: str = "messaging", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MessagingChannel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"offering": offering, **spec},
    }


def messaging_offering() -> dict[str, Any]:
    """A messaging ComponentOffering with one plan, `standard`, and an apdex threshold of 0.25 s: what the
    monitoring tests offer (fixed here, so the catalog may change without changing their figures)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComponentOffering",
        "metadata": {"name": "messaging"},
        "spec": {
            "componentType": "messaging",
            "defaultPlan": "standard",
            "apdex": {"thresholdSeconds": 0.25},
            "plans": [
                {
                    "name": "standard",
                    "limits": {"maxAge": "7d", "maxBytes": "1Gi", "maxMessages": 1000000},
                    "defaults": {"maxAge": "1d", "maxBytes": "16Mi"},
                }
            ],
        },
    }


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def list_requests(api_client: client.ApiClient, plural: str = "messagingchannels") -> list[dict[str, Any]]:
    out = client.CustomObjectsApi(api_client).list_cluster_custom_object(GROUP, VERSION, plural)
    return list(out["items"])


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (Linux /proc); 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tcp_peers(pid: int) -> list[int]:
    """The remote ports of process `pid`'s established TCP connections (Linux /proc: its socket inodes
    looked up in its network namespace's tables)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: list[int] = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "01" and cols[9] in inodes:  # 01: ESTABLISHED
                    ports.append(int(cols[2].rsplit(":", 1)[1], 16))
    return sorted(ports)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


async def settled(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll `predicate` on the running event loop until it holds or `timeout` passes; the caller asserts.
    Replaces fixed sleeps before asserting what a server does asynchronously (a violation told, a revoked
    connection closed, a message delivered): on a loaded 2-core CI host those took longer than 0.3 s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


class OperatorProcess:
    """`python -m cityhub_operator` in its own process group, started and stopped through the supervisor."""

    def __init__(self, kubeconfig: Path, env: Mapping[str, str], log: Path) -> None:
        self.kubeconfig, self.env, self.log = kubeconfig, dict(env), log
        self.record: supervisor.Record | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(OPERATOR_ROOT), os.environ.get("PYTHONPATH")])),
            "CITYHUB_HEALTH_PORT": "0",
            "CITYHUB_METRICS_PORT": "0",
            **self.env,
        }
        self.record = supervisor.spawn(
            "operator", [sys.executable, "-m", "cityhub_operator"], log=self.log, env=env, cwd=Path.cwd()
        )
        return self

    @property
    def pid(self) -> int:
        assert self.record is not None
        return self.record.pid

    def alive(self) -> bool:
        return self.record is not None and supervisor.is_running(self.record)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers released — a crash."""
        if self.record is not None:
            supervisor.kill(self.record)

    def stop(self, timeout: float = 20.0) -> None:
        if self.record is not None:
            supervisor.stop(self.record, timeout)

    def rss_bytes(self) -> int:
        """Resident memory of the operator process (Linux /proc)."""
        return rss_bytes(self.pid)

    def health(self, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """GET /healthz: (status, JSON body); (0, {}) when nothing answers (needs CITYHUB_HEALTH_PORT)."""
        url = f"http://{supervisor.HOST}:{self.env['CITYHUB_HEALTH_PORT']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return int(resp.status), json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return int(e.code), {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def log_lines(self) -> list[dict[str, Any]]:
        """The operator's JSON log lines (CITYHUB_LOG_FORMAT=json)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


@contextlib.contextmanager
def monitored_operator(
    kubeconfig: Path, nats_url: str, nats_secret: bytes, directory: Path, rules: str, job: str
) -> Iterator[tuple[OperatorProcess, Prometheus]]:
    """The operator serving messaging on `nats_url` at test speed (probes every second, drift checks every
    3 s, retries within 2 s) and a real Prometheus in `directory` that scrapes its metrics as `job` and
    evaluates `rules` (a rule file's text). Afterwards Prometheus stops, the MessagingChannels are deleted
    while the operator still runs (it releases their finalizers), then the operator stops."""
    (directory / "secret").write_text(nats_secret.decode())
    metrics_port = supervisor.free_port()
    env = {
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_NATS_URL": nats_url,
        "CITYHUB_NATS_SECRET_FILE": str(directory / "secret"),
        "CITYHUB_NATS_TIMEOUT": "2",
        "CITYHUB_METRICS_PORT": str(metrics_port),
        "CITYHUB_DRIFT_INTERVAL": "3",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "2",
        "CITYHUB_PROBE_INTERVAL": "1",
        "CITYHUB_PROBE_TIMEOUT": "2",
    }
    operator = OperatorProcess(kubeconfig, env, directory / "operator.log").start()
    prometheus = Prometheus(directory, rules, {job: [f"127.0.0.1:{metrics_port}"]})
    try:
        prometheus.start()
        yield operator, prometheus
    finally:
        prometheus.stop()
        try:
            delete_requests(kubeconfig, "messagingchannels")
        finally:
            operator.stop()


class TcpProxy:
    """A TCP relay from a free local port to `host:port` that can go silent.

    `blackhole()`: connections stay open and new ones are accepted, but nothing is forwarded either way — a
    network that drops packets, so clients see neither data nor an error. `restore()`: the connections that
    lived through it are reset (their streams lost bytes) and relaying resumes for new ones.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = supervisor.free_port()
        self._silent = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server((supervisor.HOST, self.port))
        threading.Thread(target=self._accept, name=f"proxy :{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._sockets.add(client)
            if self._silent.is_set():
                continue  # held, never answered, reset on restore()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.add(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._silent.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        self._close(src)
        self._close(dst)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
        sock.close()

    def blackhole(self) -> None:
        self._silent.set()

    def restore(self) -> None:
        with self._lock:
            lived_through = list(self._sockets)
        for sock in lived_through:
            self._close(sock)
        self._silent.clear()

    def close(self) -> None:
        self._close(self._server)
        self.restore()
