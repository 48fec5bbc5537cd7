"""The embedded cluster for real: up, simulated nodes, pods that run, crash detection, restart, down.

The cluster here is private to this module (its own CITYHUB_STATE), because these tests kill and stop
it; the session cluster other integration tests share (conftest.py) is left alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cityhub import embedded_cluster, paths, supervisor
from cityhub.embedded_cluster.health import https_get
from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.pki import Pki
from cityhub.embedded_cluster.ports import PROCESSES
from cityhub.embedded_cluster.state import ClusterState, load_state

pytestmark = pytest.mark.integration

TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
CPU_NODES = {f"cityhub-cpu-{i}" for i in range(3)}
GPU_NODES = {f"cityhub-gpu-{i}" for i in range(2)}
IMAGE = "registry.local/pause:3.10"


@dataclass
class Embedded:
    state_dir: Path
    kubeconfig: Path
    up_output: str
    up_seconds: float

    def state(self) -> ClusterState:
        state = load_state(Layout(self.state_dir / "cluster"))
        assert state is not None
        return state


def run_cluster(action: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = embedded_cluster.main([action])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    missing = paths.missing_tools(TOOLS)
    if missing:
        pytest.fail(f"toolchain binaries missing ({', '.join(missing)}): run hack/toolchain.sh", False)
    state_dir = tmp_path_factory.mktemp("embedded-cluster")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CITYHUB_STATE", str(state_dir))
        for var in ("KUBECONFIG", "CITYHUB_APISERVER_PORT", "CITYHUB_ETCD_PORT"):
            mp.delenv(var, raising=False)
        try:
            t0 = time.monotonic()
            code, output = run_cluster("up")
            seconds = time.monotonic() - t0
            print(output)
            assert code == 0, f"cityhub cluster up failed:\n{output}"
            yield Embedded(state_dir, state_dir / "cluster" / "kubeconfig", output, seconds)
        finally:
            run_cluster("down")


def kubectl(env: Embedded, *args: str, stdin: str | None = None) -> str:
    cmd = [str(paths.tool("kubectl")), "--kubeconfig", str(env.kubeconfig), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return proc.stdout


def kubectl_json(env: Embedded, *args: str) -> Any:
    return json.loads(kubectl(env, *args, "-o", "json"))


def eventually(check: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s (last: {last!r})")


def running_pod(env: Embedded, selector: str) -> dict[str, Any] | None:
    pods = kubectl_json(env, "get", "pods", "-l", selector)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and p["spec"].get("nodeName")]
    return running[0] if running else None


def test_up_prints_kubeconfig_and_api_is_healthy(embedded: Embedded) -> None:
    assert embedded.kubeconfig.is_file()
    assert f"export KUBECONFIG={embedded.kubeconfig}" in embedded.up_output
    print(f"cold `cluster up`: {embedded.up_seconds:.1f}s")
    pki = Pki(embedded.state_dir / "cluster" / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    port = embedded.state().find("kube-apiserver").port  # type: ignore[union-attr]
    assert https_get(port, "/readyz", ctx) == (200, "ok")
    assert "kubernetes" in kubectl(embedded, "get", "service", "kubernetes", "-n", "default")


def test_status_reports_everything_running(embedded: Embedded) -> None:
    code, output = run_cluster("status")
    assert code == 0, output
    for name in PROCESSES:
        line = next(line for line in output.splitlines() if line.split()[:1] == [name])
        assert line.split()[-1] == "running"
    assert "apiserver: ok" in output


def test_five_kwok_nodes_ready_with_pools(embedded: Embedded) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(embedded, "get", "nodes")["items"]}
    assert set(nodes) == CPU_NODES | GPU_NODES
    for name, node in nodes.items():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        labels = node["metadata"]["labels"]
        assert labels["type"] == "kwok" and labels["topology.kubernetes.io/zone"]
        taints = node["spec"].get("taints", [])
        if name in GPU_NODES:
            assert labels["cityhub.io/pool"] == "gpu-inference"
            assert labels["nvidia.com/gpu.present"] == "true"
            assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in taints
            assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        else:
            assert labels["cityhub.io/pool"] == "cpu"
            assert not taints
            assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    wide = kubectl(embedded, "get", "nodes", "--no-headers")
    assert wide.count(" Ready ") == 5


def test_second_up_is_a_no_op(embedded: Embedded) -> None:
    before = [(p.name, p.pid) for p in embedded.state().processes]
    t0 = time.monotonic()
    code, output = run_cluster("up")
    assert code == 0, output
    assert "already up" in output
    assert [(p.name, p.pid) for p in embedded.state().processes] == before
    assert time.monotonic() - t0 < 10


def test_deployment_pod_runs_on_a_cpu_node(embedded: Embedded) -> None:
    kubectl(embedded, "create", "deployment", "web", f"--image={IMAGE}", "--replicas=1")
    pod = eventually(lambda: running_pod(embedded, "app=web"), what="web pod Running")
    assert pod["spec"]["nodeName"] in CPU_NODES
    assert pod["status"]["podIP"].startswith("10.244.")
    eventually(
        lambda: kubectl_json(embedded, "get", "deployment", "web")["status"].get("readyReplicas") == 1,
        what="deployment web ready",
    )


GPU_POD = f"""
apiVersion: v1
kind: Pod
metadata:
  name: inference
  labels: {{app: inference}}
spec:
  tolerations:
  - {{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}
  containers:
  - name: model
    image: {IMAGE}
    resources:
      limits: {{nvidia.com/gpu: 1}}
"""


def test_gpu_pod_lands_on_a_gpu_node(embedded: Embedded) -> None:
    kubectl(embedded, "apply", "-f", "-", stdin=GPU_POD)
    pod = eventually(lambda: running_pod(embedded, "app=inference"), what="GPU pod Running")
    assert pod["spec"]["nodeName"] in GPU_NODES


def test_killed_scheduler_is_reported_and_up_restarts_it(embedded: Embedded) -> None:
    scheduler = embedded.state().find("kube-scheduler")
    assert scheduler is not None
    os.kill(scheduler.pid, signal.SIGKILL)
    eventually(lambda: not supervisor.is_running(scheduler), 10, "scheduler gone")
    code, output = run_cluster("status")
    assert code == 1
    line = next(line for line in output.splitlines() if line.split()[:1] == ["kube-scheduler"])
    assert line.split()[-1] == "exited"
    assert "apiserver: ok" in output

    code, output = run_cluster("up")
    assert code == 0, output
    assert "kube-scheduler" in output and "restarted" in output
    assert embedded.state().find("kube-scheduler").pid != scheduler.pid  # type: ignore[union-attr]
    assert run_cluster("status")[0] == 0
    # Restarting kept the data: what was deployed before is still there and still runs.
    assert running_pod(embedded, "app=web") is not None


def test_down_stops_everything_and_frees_ports(embedded: Embedded) -> None:
    state = embedded.state()
    code, output = run_cluster("down")
    assert code == 0, output
    for rec in state.processes:
        assert not supervisor.is_running(rec), rec.name
        for port in rec.ports.values():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not (embedded.state_dir / "cluster" / "state.json").exists()
    code, output = run_cluster("status")
    assert code == 1 and output.count("not started") == len(PROCESSES)


def test_a_process_that_fails_is_named_with_its_log_and_nothing_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = paths.missing_tools(TOOLS)
    if missing:
        pytest.fail(f"toolchain binaries missing ({', '.join(missing)}): run hack/toolchain.sh", False)
    # The real toolchain, but an apiserver that refuses to start.
    fake_bin = tmp_path / "cache" / "bin"
    fake_bin.mkdir(parents=True)
    for tool in TOOLS:
        (fake_bin / tool).symlink_to(paths.bin_dir() / tool)
    (fake_bin / "kube-apiserver").unlink()
    (fake_bin / "kube-apiserver").write_text(
        "#!/bin/sh\necho 'Error: unknown flag: --cityhub-test' >&2\nexit 1\n"
    )
    (fake_bin / "kube-apiserver").chmod(0o755)
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path / "state"))

    assert embedded_cluster.main(["up"]) == 1
    captured = capsys.readouterr()
    assert 'step "start kube-apiserver" failed' in captured.err
    assert "Error: unknown flag: --cityhub-test" in captured.err  # the tail of its log
    assert "etcd" in captured.out and "stopped" in captured.out
    cluster_dir = tmp_path / "state" / "cluster"
    assert sorted(p.name for p in cluster_dir.iterdir()) == ["logs"]
    assert (cluster_dir / "logs" / "etcd.log").exists()  # kept for the post-mortem
    assert not processes_mentioning(str(tmp_path))


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if any(text in a for a in args):
                found.append(" ".join(args))
    return found
