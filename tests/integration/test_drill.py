"""平急演练 as a platform engineer runs it: `cityhub up`, then `cityhub drill`, in a state directory and an
embedded cluster of this module's own. The drill switches to emergency mode and back, and its record (a file
in the state directory and ConfigMap cityhub-drills) holds the times until the quotas were in force; the
stack config is untouched, the cluster is back in normal mode, and the maturity assessment sees the drill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityhub import paths
from cityhub.maturity import dashboard_section

pytestmark = pytest.mark.integration
CITYHUB = str(Path(sys.executable).parent / "cityhub")
RESPONDERS = {"dept-yingji", "dept-dongcheng-yingji"}


def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`cityhub up` in a state directory of this module's own; its cluster brought down at the end."""
    state = tmp_path_factory.mktemp("drill")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CITYHUB_TEST_KUBECONFIG")}
    env["CITYHUB_STATE"] = str(state)
    try:
        started = time.monotonic()
        run(CITYHUB, "up", env=env)
        print(f"cityhub up: {time.monotonic() - started:.1f} s")
        yield env
    finally:
        run(CITYHUB, "cluster", "down", env=env, check=False)


def kubectl(env: dict[str, str], *args: str) -> dict[str, Any]:
    kubeconfig = Path(env["CITYHUB_STATE"]) / "cluster" / "kubeconfig"
    out = run(str(paths.bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args, "-o", "json", env=env)
    return dict(json.loads(out.stdout))


def test_drill_switches_to_emergency_and_back_and_records_the_times(
    hub: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracked = (paths.repo_root() / "stacks" / "Pulumi.dev.yaml").read_bytes()
    working = Path(hub["CITYHUB_STATE"]) / "stacks" / "Pulumi.dev.yaml"
    working_before = working.read_bytes()

    started = time.monotonic()
    proc = run(CITYHUB, "drill", "--timeout", "120", env=hub)
    wall = time.monotonic() - started
    assert "passed" in proc.stdout, proc.stdout + proc.stderr

    (path,) = sorted((Path(hub["CITYHUB_STATE"]) / "drills").glob("*.json"))
    doc = json.loads(path.read_text(encoding="utf-8"))
    print(json.dumps({k: doc[k] for k in ("emergency", "normal")}, indent=1), f"drill wall {wall:.1f} s")
    assert doc["schema"] == "cityhub.io/drill/v1" and doc["result"] == "passed" and doc["problems"] == []
    assert (doc["stack"], doc["city"]) == ("dev", "示例市")
    for mode in ("emergency", "normal"):
        phase = doc[mode]
        assert phase["ok"] and phase["pulumiExitCode"] == 0
        # In force after `pulumi up` returned (the quota controller copies spec.hard to status.hard), and
        # both within the drill's wall time.
        assert 0 < phase["appliedSeconds"] <= phase["inForceSeconds"] < wall
        (cluster,) = phase["clusters"]
        assert (cluster["cluster"], cluster["role"], cluster["namespaces"]) == ("hub", "hub", 6)
        # Four departments have an emergencyQuota, two are responders (their PriorityClass quota moves),
        # and 应急管理局 may hold more component requests: the same quotas move there and back.
        assert set(cluster["moved"]) == {
            *(f"dept-{s}/compute" for s in ("yingji", "chengguan", "dashuju", "dongcheng-yingji")),
            *(f"{ns}/emergency-priority" for ns in RESPONDERS),
            "dept-yingji/component-requests",
        }, cluster["moved"]
    assert doc["emergency"]["inForceSeconds"] + doc["normal"]["inForceSeconds"] < wall

    # The cluster holds the same record; and it is back in normal mode, quotas in force.
    cm = kubectl(hub, "get", "configmap", "cityhub-drills", "-n", "cityhub-system")
    assert json.loads(cm["data"][f"{doc['id']}.json"]) == doc
    hard = kubectl(hub, "get", "resourcequota", "compute", "-n", "dept-yingji")["status"]["hard"]
    assert (hard["requests.cpu"], hard["pods"]) == ("8", "50")
    ns = kubectl(hub, "get", "namespace", "dept-yingji")["metadata"]["labels"]
    assert ns["cityhub.io/priority-class"] == "cityhub-normal"

    # No stack config changed: neither the tracked file nor the working copy.
    assert (paths.repo_root() / "stacks" / "Pulumi.dev.yaml").read_bytes() == tracked
    assert working.read_bytes() == working_before
    assert list(path.parent.glob("*.yaml")) == []  # the scratch emergency config is gone

    # The maturity self-assessment reads the drill from the cluster.
    maturity = json.loads(run(CITYHUB, "maturity", "--format", "json", env=hub).stdout)
    drill = next(d for d in maturity["dimensions"] if d["key"] == "emergency-readiness")
    assert drill["level"] >= 3, drill
    assert doc["id"] in drill["evidence"]["en"], drill
    print(run(CITYHUB, "maturity", env=hub).stdout)

    # The dashboard's entry point (cityhub.dashboard.state.maturity) gives the same reading.
    monkeypatch.setenv("CITYHUB_STATE", hub["CITYHUB_STATE"])
    section = dashboard_section("", Path(hub["CITYHUB_STATE"]) / "cluster" / "kubeconfig")
    levels = {d["key"]: d["level"] for d in section["dimensions"]}
    assert levels == {d["key"]: d["level"] for d in maturity["dimensions"]}
