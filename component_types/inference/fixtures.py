"""Pytest fixtures of the inference type; tests/conftest.py loads them for every test.

inference_model_store   a model store whose model file is no real model: for the driver's checks
inference_backend       a real MLServer and gateway on free ports (module scope), stopped afterwards;
                        fails, naming install.sh, when MLServer or the model store is not installed
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cityhub.paths import ToolMissingError
from cityhub_api.settings import cache_dir
from component_types.inference import local

MODEL = "traffic-flow"
RUNTIME = "mlserver_sklearn.SKLearnModel"


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
