"""A real `pulumi up` of the hub program against a real API server, offline, with the pinned toolchain."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cityhub import paths
from cityhub.pulumi_env import pulumi_env

pytestmark = pytest.mark.integration


def kubectl(kubeconfig: Path, *args: str) -> str:
    cmd = [str(paths.tool("kubectl")), "--kubeconfig", str(kubeconfig), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kubeconfig: Path) -> Path:
    """A copy of the Pulumi project with a private backend and passphrase, so the checkout stays clean."""
    root = paths.repo_root()
    shutil.copy(root / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(root / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(root / ".venv")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "backend").as_uri())
    (tmp_path / "backend").mkdir()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "integration-test")
    return tmp_path


def pulumi(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(paths.tool("pulumi")), "--non-interactive", "--cwd", str(project), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=pulumi_env(), check=False, timeout=600)
    assert result.returncode == 0, f"pulumi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_up_is_real_idempotent_and_destroy_cleans_up(project: Path, kubeconfig: Path) -> None:
    pulumi(project, "stack", "init", "dev")
    up = pulumi(project, "up", "--yes", "--stack", "dev")
    assert "created" in up.stdout

    namespace = json.loads(kubectl(kubeconfig, "get", "namespace", "cityhub-system", "-o", "json"))
    assert namespace["metadata"]["labels"]["cityhub.io/division-code"] == "330100"
    city = json.loads(
        kubectl(kubeconfig, "get", "configmap", "cityhub-city", "-n", "cityhub-system", "-o", "json")
    )
    assert city["data"]["city"] == "示例市"

    # A second run must find nothing to do: the program is deterministic and the provider reads back state.
    pulumi(project, "preview", "--expect-no-changes", "--stack", "dev")
    # --expect-no-changes makes pulumi itself fail the update if anything would change.
    again = pulumi(project, "up", "--yes", "--expect-no-changes", "--stack", "dev")
    assert "unchanged" in again.stdout

    pulumi(project, "destroy", "--yes", "--stack", "dev")
    gone = subprocess.run(
        [
            str(paths.tool("kubectl")),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "configmap",
            "cityhub-city",
            "-n",
            "cityhub-system",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode != 0
