"""Integration fixtures: a real embedded cluster, started once per session in a private state directory.

Set CITYHUB_TEST_KUBECONFIG to run against an existing (real) cluster instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityhub import embedded_cluster, paths

REQUIRED_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "pulumi",
)


def require_toolchain() -> None:
    missing = [t for t in REQUIRED_TOOLS if not (paths.bin_dir() / t).exists()]
    if missing:
        pytest.fail(
            f"toolchain binaries missing ({', '.join(missing)}): run hack/toolchain.sh", pytrace=False
        )


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig for a running cluster: the embedded one, started here and stopped after the session."""
    require_toolchain()
    given = os.environ.get("CITYHUB_TEST_KUBECONFIG")
    if given:
        yield Path(given)
        return
    state = tmp_path_factory.mktemp("cluster-state")
    old = os.environ.get("CITYHUB_STATE")
    os.environ["CITYHUB_STATE"] = str(state)
    try:
        assert embedded_cluster.main(["up"]) == 0, "embedded cluster failed to start; see the logs above"
        yield state / "cluster" / "kubeconfig"
    finally:
        embedded_cluster.main(["down"])
        if old is None:
            os.environ.pop("CITYHUB_STATE", None)
        else:
            os.environ["CITYHUB_STATE"] = old
