"""Pytest fixtures for sensing tests (loaded for every test by tests/conftest.py through the registry).

sensing_gateway   the MQTT gateway and its relay, started in a temporary directory for a test module
sensing_env       the driver's settings for that gateway (CITYHUB_SENSING_*)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from cityhub.supervisor import ProcessFailed
from cityhub_nats.local import nats_server_binary
from component_types.sensing.local import Gateway


@pytest.fixture(scope="module")
def sensing_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    try:
        nats_server_binary()
    except ProcessFailed as e:
        pytest.fail(str(e), pytrace=False)
    directory = tmp_path_factory.mktemp("sensing")
    secret = directory / "secret"
    secret.write_text(secrets.token_urlsafe(48))
    gateway = Gateway(directory, secret).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def sensing_env(sensing_gateway: Gateway) -> dict[str, str]:
    return {**sensing_gateway.operator_env(), "CITYHUB_SENSING_TIMEOUT": "5"}
