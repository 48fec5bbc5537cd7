"""`cityhub up` leaves --refresh out, naming the cluster, when one of the stack's clusters does not answer
(a refresh cannot continue on error: one silent edge would stop the hub's update too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cityhub import supervisor
from cityhub.cli import UP_ARGS
from cityhub.cluster_reach import stack_clusters, unreachable, up_args


def dead_kubeconfig(path: Path) -> Path:
    port = supervisor.free_port()  # nothing listens there
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "edge", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "edge", "context": {"cluster": "edge", "user": "u"}}],
                "current-context": "edge",
            }
        )
    )
    return path


def test_a_silent_edge_is_named_and_up_runs_without_refresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_kubeconfig(tmp_path / "edge.kubeconfig")
    clusters = [
        {"name": "hub", "role": "hub"},  # ambient ($KUBECONFIG): not asked
        {"name": "xihu-edge", "role": "edge", "kubeconfig": "edge.kubeconfig"},  # relative to the project
        {"name": "gone-edge", "role": "edge", "kubeconfig": str(tmp_path / "missing")},
    ]
    down = unreachable(clusters, tmp_path, timeout=2)
    assert set(down) == {"xihu-edge", "gone-edge"}
    args = up_args(UP_ARGS, clusters, tmp_path)
    assert "--refresh" in UP_ARGS and "--refresh" not in args and "--continue-on-error" in args
    out = capsys.readouterr().out
    assert "集群 xihu-edge 无法连接" in out and "gone-edge" in out
    assert up_args(UP_ARGS, clusters[:1], tmp_path) == UP_ARGS


def test_clusters_come_from_the_stack_configuration(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(yaml.safe_dump({"config": {"cityhub:clusters": [{"name": "hub"}]}}))
    assert stack_clusters(stack) == [{"name": "hub"}]
    assert stack_clusters(tmp_path / "none.yaml") == []
