"""Pytest fixtures for maps tests (loaded for every test by tests/conftest.py through the registry).

maps_backend   a started PostGIS (catalog bootstrapped) + martin in a temporary directory, one per test
               module, with the master secret `maps_secret`; stopped and removed after the module
maps_secret    its master secret (override the fixture to use another)
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator

import pytest

from cityhub.supervisor import ProcessFailed
from cityhub_api.settings import Env
from component_types.maps.local import Binaries, LocalMaps, scratch_directory

TEST_SECRET = b"maps-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def maps_secret() -> bytes:
    return TEST_SECRET


@pytest.fixture(scope="module")
def maps_backend(maps_secret: bytes) -> Iterator[LocalMaps]:
    binaries = Binaries.from_env(Env())
    try:
        binaries.require()
    except ProcessFailed as e:
        pytest.fail(str(e), pytrace=False)
    # Not pytest's tmp_path: as root, PostgreSQL runs as the `postgres` user, which cannot enter pytest's
    # private (mode 0700) base directory.
    directory = scratch_directory()
    secret_file = directory / "secret"
    secret_file.touch(mode=0o600)
    secret_file.write_bytes(maps_secret)
    local = LocalMaps(directory, secret_file, secrets.token_urlsafe(24), binaries=binaries)
    try:
        yield local.start()
    finally:
        local.stop()
        shutil.rmtree(directory, ignore_errors=True)
