"""Pytest fixtures of the inference type; tests/conftest.py loads them for every test.

inference_model_store   a model store whose model file is no real model: for the driver's checks
inference_backend       a real MLServer and gateway on free ports (module scope), stopped afterwards;
                        fails, naming install.sh, when MLServer or the model store is not installed
inference_cluster       the integration tests' cluster (module scope) with the inference CRD and catalog,
                        the namespaces below and their compute quotas, which are removed afterwards
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cityhub import testkit as testing
from cityhub.paths import ToolMissingError
from cityhub_api import labels
from cityhub_api.registry import component_type
from cityhub_api.settings import cache_dir
from component_types.inference import local

MODEL = "traffic-flow"
RUNTIME = "mlserver_sklearn.SKLearnModel"
YINGJI, JIAOTONG = "dept-yingji", "dept-jiaotong"
SHUIWU, CHENGGUAN = "dept-shuiwu", "dept-chengguan"
"""A and B of the quota attack: each with a compute quota of 2 CPUs, 2Gi and 2 GPUs."""
MODEL_SERVERS = "cityhub-inference"


@pytest.fixture
def inference_model_store(tmp_path: Path) -> Path:
    """<tmp>/store with model traffic-flow, version 1 (model.joblib holds bytes, not a model)."""
    store = tmp_path / "store"
    (store / MODEL / "1").mkdir(parents=True)
    (store / MODEL / "1" / "model.joblib").write_bytes(b"not really a model")
    meta = {"name": MODEL, "runtime": RUNTIME, "versions": ["1"]}
    (store / MODEL / "model.json").write_text(json.dumps(meta))
    return store


@dataclass(frozen=True)
class LocalInference:
    """A running MLServer and gateway, and what the driver needs to use them."""

    server: local.MLServer
    gateway: local.Gateway
    models: Path
    secret_file: Path

    @property
    def secret(self) -> str:
        return self.secret_file.read_text()

    def operator_env(self) -> dict[str, str]:
        """CITYHUB_INFERENCE_* for a driver or an operator on this backend (embedded mode)."""
        return local.operator_env(self.server, self.gateway, self.models, self.secret_file)


def installed_backend() -> tuple[Path, Path]:
    """(MLServer binary, model store) from the cache; pytest.fail naming install.sh when missing."""
    cache = cache_dir()
    try:
        binary = local.mlserver_binary(cache)
    except ToolMissingError as e:
        missing = str(e)  # failed outside the handler: the message alone, without a chained traceback
    else:
        missing = ""
    if missing:
        pytest.fail(missing, pytrace=False)
    models = local.model_store(cache)
    if not (models / MODEL / "model.json").is_file():
        pytest.fail(
            f"the model store has no {MODEL} (expected {models / MODEL}): "
            "run component_types/inference/install.sh",
            pytrace=False,
        )
    return binary, models


@pytest.fixture(scope="module")
def inference_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInference]:
    binary, models = installed_backend()
    directory = tmp_path_factory.mktemp("inference")
    secret_file = directory / "secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(secrets.token_urlsafe(48))
    server = local.MLServer(directory, binary).start()
    gateway = local.Gateway(directory, directory / "routes", server.url)
    try:
        gateway.start()
        yield LocalInference(server, gateway, models, secret_file)
    finally:
        gateway.stop()
        server.stop()


@pytest.fixture(scope="module")
def inference_cluster(kubeconfig: Path) -> Iterator[Path]:
    """The cluster of `kubeconfig` (tests/integration/conftest.py) with the inference CRD and catalog, the
    departments' and model servers' namespaces and the departments' compute quotas: 2 GPUs for YINGJI,
    0 for JIAOTONG, 2 CPUs, 2Gi and 2 GPUs for SHUIWU and CHENGGUAN each."""
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, list(yaml.safe_load_all(component_type("inference").catalog_file.read_text())))
    namespaces = (YINGJI, JIAOTONG, SHUIWU, CHENGGUAN, MODEL_SERVERS, labels.SYSTEM_NAMESPACE)
    testing.ensure_namespaces(kubeconfig, namespaces)
    compute = {"requests.cpu": "2", "requests.memory": "2Gi", "requests.nvidia.com/gpu": "2"}
    hard = {
        YINGJI: {"requests.nvidia.com/gpu": "2"},
        JIAOTONG: {"requests.nvidia.com/gpu": "0"},
        SHUIWU: compute,
        CHENGGUAN: compute,
    }
    quotas = [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": ns},
            "spec": {"hard": h},
        }
        for ns, h in hard.items()
    ]
    testing.apply(kubeconfig, quotas)
    yield kubeconfig
    # Test modules share the cluster: the stack's own quota of these namespaces must not meet ours.
    for ns in hard:
        testing.kubectl(kubeconfig, "delete", "resourcequota", "compute", "-n", ns, "--ignore-not-found")
