"""The Pulumi environment cityhub runs the CLI in: offline, local backend, passphrase secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cityhub.pulumi_env import pulumi_env


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path))
    for var in (
        "KUBECONFIG",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_CONFIG_PASSPHRASE_FILE",
        "PULUMI_BACKEND_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_runs_offline_with_a_local_file_backend(private_state: Path) -> None:
    env = pulumi_env()
    assert env["PULUMI_BACKEND_URL"] == (private_state / "pulumi").as_uri()
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PULUMI_DISABLE_REGISTRY_RESOLVE"] == "true"


def test_generates_a_private_dev_passphrase_once(private_state: Path) -> None:
    first = Path(pulumi_env()["PULUMI_CONFIG_PASSPHRASE_FILE"])
    secret = first.read_text()
    assert len(secret) >= 32
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert Path(pulumi_env()["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text() == secret


def test_an_operator_supplied_passphrase_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "from-the-vault")
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in pulumi_env()


def test_targets_the_embedded_cluster_unless_a_kubeconfig_is_given(
    private_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pulumi_env()["KUBECONFIG"] == str(private_state / "cluster" / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", "/etc/city/real-cluster.kubeconfig")
    assert pulumi_env()["KUBECONFIG"] == "/etc/city/real-cluster.kubeconfig"
