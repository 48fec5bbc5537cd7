"""Pytest fixtures of the identity component type (loaded for every test by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from component_types.identity.keycloak import KeycloakMissing
from component_types.identity.local import KeycloakServer


@pytest.fixture(scope="module")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakServer]:
    """A Keycloak for the test module, from the cached initial database (~20 s), stopped after it.

    Fails (not skips) when Keycloak is not installed: the message says to run install.sh.
    """
    try:
        server = KeycloakServer.from_template(tmp_path_factory.mktemp("keycloak"))
    except KeycloakMissing as e:
        pytest.fail(str(e), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
