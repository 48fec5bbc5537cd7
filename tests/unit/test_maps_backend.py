"""The maps backend's Pulumi component under mocks: what cluster mode deploys, and that no password leaks."""

from __future__ import annotations

import asyncio

import pytest
from components.backends.maps import SECRET_NAME, MapsBackend, MapsBackendArgs

from tests.unit.test_components import find, run

MASTER = "m" * 48


@pytest.fixture(autouse=True)
def event_loop_for_pulumi() -> None:
    """Pulumi's mocks need a current event loop; an earlier test's asyncio.run() leaves none."""
    asyncio.set_event_loop(asyncio.new_event_loop())


SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""Pulumi's marker of a secret value in serialized inputs."""


def reveal(value: object) -> object:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return reveal(value["value"])
        return {k: reveal(v) for k, v in value.items()}
    return value


def test_postgis_martin_and_the_operator_secret() -> None:
    created = run(
        lambda: MapsBackend(
            "maps",
            MapsBackendArgs(namespace="cityhub-system", master_secret=MASTER, postgres_password="pg-pass"),
        )
    )
    postgis = find(created, "StatefulSet", "maps-postgis", "cityhub-system")
    container = postgis.inputs["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True} in container[
        "volumeMounts"
    ]
    tiles = find(created, "Deployment", "maps-tiles", "cityhub-system")
    martin = tiles.inputs["spec"]["template"]["spec"]["containers"][0]
    assert martin["env"][0]["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": "tiles-database-url"}
    config = find(created, "ConfigMap", "maps-tiles", "cityhub-system").inputs["data"]["config.yaml"]
    assert "${DATABASE_URL}" in config and "cache_size_mb: 0" in config and "pg-pass" not in config
    secret = reveal(find(created, "Secret", SECRET_NAME, "cityhub-system").inputs["stringData"])
    assert isinstance(secret, dict)
    assert set(secret) >= {"maps-secret", "maps-dsn", "tiles-database-url", "10-cityhub-maps.sql"}
    assert (
        secret["maps-dsn"]
        == "postgresql://postgres:pg-pass@maps-postgis.cityhub-system.svc:5432/cityhub_maps"
    )
    assert "cityhub_maps.layer_tile" in secret["10-cityhub-maps.sql"]
    for kind, name in (("Service", "maps-postgis"), ("Service", "maps-tiles")):
        find(created, kind, name, "cityhub-system")


def test_operator_env_points_at_the_mounted_secret() -> None:
    seen: dict[str, str] = {}

    def program() -> None:
        backend = MapsBackend(
            "maps", MapsBackendArgs(namespace="cityhub-system", master_secret=MASTER, postgres_password="pw")
        )
        backend.operator_env.apply(seen.update)

    run(program)
    assert seen == {
        "CITYHUB_MAPS_DSN_FILE": "/var/run/cityhub/backends/maps-dsn",
        "CITYHUB_MAPS_SECRET_FILE": "/var/run/cityhub/backends/maps-secret",
        "CITYHUB_MAPS_TILE_URL": "http://maps-tiles.cityhub-system.svc:3000",
    }
