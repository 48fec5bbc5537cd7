"""Pytest fixtures for messaging tests (loaded for every test by tests/conftest.py through the registry).

    nats_server          a started nats-server (JetStream) in a temporary directory, one per test module,
                         trusting the keys of `nats_secret`; stopped after the module
    nats_secret          its master secret (override the fixture to use another)
    nats_max_file_store  its JetStream file store limit, default 1G (override: a test of refusals needs a
                         limit below what it asks for)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cityhub.supervisor import ProcessFailed
from component_types.messaging.local import NatsServer, nats_server_binary

TEST_SECRET = b"messaging-test-secret-0123456789-abcdefghijklmnopqrstuv"


@pytest.fixture(scope="module")
def nats_secret() -> bytes:
    return TEST_SECRET


@pytest.fixture(scope="module")
def nats_max_file_store() -> str:
    return "1G"


@pytest.fixture(scope="module")
def nats_server(
    tmp_path_factory: pytest.TempPathFactory, nats_secret: bytes, nats_max_file_store: str
) -> Iterator[NatsServer]:
    try:
        nats_server_binary()
    except ProcessFailed as e:
        pytest.fail(str(e), pytrace=False)
    server = NatsServer(tmp_path_factory.mktemp("nats"), nats_secret, max_file_store=nats_max_file_store)
    server.start()
    yield server
    server.stop()
