"""The maps backend's Pulumi component under mocks: what cluster mode deploys, that martin is the front door,
and that no password leaks into anything but the Secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cityhub_api import labels
from cityhub_api.registry import component_type
from component_types.maps.backend import Backend
from component_types.maps.catalog_sql import bootstrap_script
from component_types.maps.credentials import Credentials
from components.backends import BackendArgs, derive
from tests.unit.test_components import Created, find, of_kind, run

ROOT = Path(__file__).resolve().parents[2]
MASTER = "m" * 48
NS = "cityhub-system"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""Pulumi's marker of a secret value in serialized inputs."""


def args(**extra: object) -> BackendArgs:
    return BackendArgs(
        ctype=component_type("maps"),
        namespace=NS,
        master_key=MASTER,
        operator_image="registry.cityhub.local/cityhub/operator:1.2.3",
        **extra,  # type: ignore[arg-type]
    )


def reveal(value: object) -> object:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return reveal(value["value"])
        return {k: reveal(v) for k, v in value.items()}
    return value


def pod_spec(workload: Created) -> dict[str, object]:
    return workload.inputs["spec"]["template"]["spec"]


def test_martin_is_the_front_door_and_postgis_stays_internal() -> None:
    created = run(lambda: Backend("maps", args()))
    door = component_type("maps").front_door
    tiles = find(created, "Deployment", "maps-tiles", NS)
    pod_labels = tiles.inputs["spec"]["template"]["metadata"]["labels"]
    assert door.selector.items() <= pod_labels.items(), "the front-door Service `maps` selects martin"
    assert tiles.inputs["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    martin = pod_spec(tiles)["containers"][0]  # type: ignore[index]
    assert {"name": "http", "containerPort": door.target_port} in martin["ports"]
    assert door.target_port == 3000
    config = find(created, "ConfigMap", "maps-tiles", NS).inputs["data"]["config.yaml"]
    assert f"listen_addresses: '0.0.0.0:{door.target_port}'" in config

    postgis = find(created, "StatefulSet", "maps-postgis", NS)
    postgis_labels = postgis.inputs["spec"]["template"]["metadata"]["labels"]
    assert labels.SERVICE not in postgis_labels, "PostGIS is not behind the front door"
    assert postgis_labels[labels.NAME] == "maps-postgis" and postgis_labels[labels.COMPONENT] == "maps"
    service = find(created, "Service", "maps-postgis", NS)
    assert service.inputs["spec"]["selector"].items() <= postgis_labels.items()
    assert service.inputs["spec"]["ports"] == [{"name": "postgres", "port": 5432}]
    assert labels.SERVICE not in service.inputs["metadata"]["labels"]
    assert not [s for s in of_kind(created, "Service") if s.k8s_name == "maps-tiles"], (
        "the front door replaces it"
    )
    policy = find(created, "NetworkPolicy", "maps-postgis", NS).inputs["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= postgis_labels.items()
    assert policy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {labels.NAME: "maps-tiles"}}}]


def test_the_secret_holds_what_the_operator_and_the_pods_need() -> None:
    created = run(lambda: Backend("maps", args()))
    name = args().secret_name
    secret = reveal(find(created, "Secret", name, NS).inputs["stringData"])
    assert isinstance(secret, dict)
    master, postgres = derive(MASTER, "maps"), derive(MASTER, "maps-postgres")
    tiles = Credentials(master.encode()).tiles_password()
    assert secret == {
        "secret": master,
        "postgres-password": postgres,
        "dsn": f"postgresql://postgres:{postgres}@maps-postgis.{NS}.svc:5432/cityhub_maps",
        "tiles-database-url": f"postgresql://cityhub_tiles:{tiles}@maps-postgis.{NS}.svc:5432/cityhub_maps",
        "10-cityhub-maps.sql": bootstrap_script(tiles),
    }
    postgis = pod_spec(find(created, "StatefulSet", "maps-postgis", NS))
    container = postgis["containers"][0]  # type: ignore[index]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "postgres-password"}
    assert {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert postgis["volumes"][0]["secret"]["secretName"] == name  # type: ignore[index]
    martin = pod_spec(find(created, "Deployment", "maps-tiles", NS))["containers"][0]  # type: ignore[index]
    assert martin["env"][0]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "tiles-database-url"}
    others = [c for c in created if not c.type.endswith(":Secret")]
    for password in (master, postgres, tiles):
        assert password not in str([c.inputs for c in others]), "a password outside the Secret"


def test_operator_env_points_at_the_mounted_secret_and_the_front_door() -> None:
    seen: dict[str, str] = {}

    def program() -> None:
        Backend("maps", args()).operator_env.apply(seen.update)

    run(program)
    mount = args().mount
    assert seen == {
        "CITYHUB_MAPS_DSN_FILE": f"{mount}/dsn",
        "CITYHUB_MAPS_SECRET_FILE": f"{mount}/secret",
        "CITYHUB_MAPS_TILE_URL": f"http://maps.{NS}.svc:3000",
    }


def test_storage_class_reaches_the_volume_claim() -> None:
    created = run(lambda: Backend("maps", args(storage_class="encrypted-ssd")))
    claim = find(created, "StatefulSet", "maps-postgis", NS).inputs["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "encrypted-ssd"


def test_the_stack_side_loads_no_database_client() -> None:
    """`pulumi up` imports the backend (and with it the type's neutral modules), never psycopg."""
    probe = (
        "import sys, component_types.maps.backend; print(sorted(m for m in sys.modules if 'psycopg' in m))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_postgis_and_martin_follow_the_placement_as_non_root_users_from_the_configured_images() -> None:
    placement = {"nodeSelector": {"cityhub.io/node": "real"}, "tolerations": [{"key": "k"}]}
    settings = {"postgisImage": "r.example/postgis:1", "martinImage": "r.example/martin:1"}
    settings["storageSize"] = "1Gi"
    created = run(lambda: Backend("maps", args(placement=placement, settings=settings)))
    postgis = find(created, "StatefulSet", "maps-postgis", NS)
    tiles = find(created, "Deployment", "maps-tiles", NS)
    for workload, image in ((postgis, "r.example/postgis:1"), (tiles, "r.example/martin:1")):
        spec = pod_spec(workload)
        assert spec["nodeSelector"] == placement["nodeSelector"]
        assert spec["tolerations"] == placement["tolerations"]
        assert spec["containers"][0]["image"] == image  # type: ignore[index]
        assert spec["securityContext"]["runAsNonRoot"] is True  # type: ignore[index]
    # PostGIS as the postgres user (999) of both images: Pod Security restricted, never root.
    security = pod_spec(postgis)["securityContext"]
    assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == 999  # type: ignore[index]
    container = pod_spec(postgis)["containers"][0]  # type: ignore[index]
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert container["securityContext"] == restricted
    claim = postgis.inputs["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "1Gi"
    # martin waits for PostGIS (pg_isready from the PostGIS image, as its user) instead of crash-looping.
    (wait,) = pod_spec(tiles)["initContainers"]  # type: ignore[misc]
    assert wait["image"] == "r.example/postgis:1" and wait["securityContext"]["runAsUser"] == 999
    assert "pg_isready" in wait["command"][-1] and "maps-postgis" in wait["command"][-1]


def test_postgis_is_the_side_door_the_network_opens_to_the_zones_maps_serves() -> None:
    from component_types.maps.backend import POSTGIS_NAME, POSTGRES_PORT

    door = component_type("maps").front_door
    assert [(s.workload, s.port) for s in door.side_doors] == [(POSTGIS_NAME, POSTGRES_PORT)]
