"""MapLayer end to end: embedded cluster + real PostGIS + real martin + `python -m cityhub_operator`.

Request a layer → Ready and a Secret; with the Secret's credentials load features in CGCS2000; the tile
covering them, fetched from martin and decoded, holds them at the right place; another department's
credentials cannot write; sharing works as declared; bad requests are rejected naming the field; deleting
a layer with data is refused (Ready=False and an event) until the request says to drop it; then the layer
is gone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, condition, wait_for
from cityhub_api.registry import component_type
from component_types.maps.local import LocalMaps
from tests.integration.test_maps_driver import insert, refused, tile, tile_xy

pytestmark = pytest.mark.integration
DEPARTMENTS = ("yingji", "jiaotong", "weijian")
PLURAL = "maplayers"


def map_layer(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MapLayer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"offering": "maps", "geometryType": "Point", **spec},
    }


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [yaml.safe_load(component_type("maps").catalog_file.read_text())])
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def maps(maps_backend: LocalMaps) -> LocalMaps:
    """PostGIS + martin (component_types/maps/fixtures.py), one per module."""
    return maps_backend


@pytest.fixture(scope="module")
def operator(
    cluster: Path, maps: LocalMaps, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("maps-operator")
    env = {
        **maps.operator_env(),  # what `cityhub operator start` gives it: secrets as files
        "CITYHUB_COMPONENTS": "maps",
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "3",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "2",
    }
    proc = OperatorProcess(cluster, env, tmp / "operator.log").start()
    yield proc
    # Other test modules share the session cluster: release this module's layers while the operator runs.
    testing.delete_requests(cluster, PLURAL)
    proc.stop()
    log = (tmp / "operator.log").read_text(errors="replace")
    assert maps.secret.decode() not in log and "postgresql://dept_" not in log, (
        "a credential leaked into the log"
    )
    assert maps.postgis.password not in log, "the superuser's password leaked into the log"


@pytest.fixture(scope="module")
def k8s(cluster: Path) -> client.ApiClient:
    return testing.api(cluster)


def get(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            "hub.cityhub.io", "v1alpha1", namespace, PLURAL, name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_ready(k8s: client.ApiClient, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(k8s, namespace, name)
        return obj if obj and condition(obj, "Ready").get("status") == "True" else None

    return wait_for(check, timeout, f"{namespace}/{name} Ready=True")


def secret_data(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def event_messages(k8s: client.ApiClient, namespace: str, name: str) -> list[str]:
    found = client.CoreV1Api(k8s).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [f"{e.reason}: {e.message}" for e in found.items]


def test_admission_rejects_bad_layers_naming_the_field(cluster: Path) -> None:
    bad = [
        (map_layer("jiaotong", "bad-geometry", geometryType="Circle"), "spec.geometryType"),
        (map_layer("jiaotong", "bad-crs", coordinateSystem="EPSG:3857"), "spec.coordinateSystem"),
        (
            map_layer("jiaotong", "bad-attr", attributes=[{"name": "name; DROP TABLE x"}]),
            "spec.attributes[0].name",
        ),
        (map_layer("jiaotong", "reserved-attr", attributes=[{"name": "geom"}]), "spec.attributes[0].name"),
        (
            map_layer("jiaotong", "bad-type", attributes=[{"name": "a", "type": "money"}]),
            "spec.attributes[0].type",
        ),
        (
            map_layer("jiaotong", "bad-zoom", minZoom=14, maxZoom=8),
            "spec.minZoom must not be above spec.maxZoom",
        ),
        (map_layer("jiaotong", "too-deep", maxZoom=30), "spec.maxZoom"),
        (
            map_layer("jiaotong", "bad-share", visibility="Shared"),
            "spec.shareWith needs at least one department",
        ),
    ]
    for doc, field in bad:
        proc = testing.apply(cluster, [doc], check=False)
        assert proc.returncode != 0, doc
        assert field in proc.stderr, proc.stderr


def test_layer_ready_tiles_sharing_and_guarded_delete(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, maps: LocalMaps
) -> None:
    testing.apply(
        cluster,
        [
            map_layer(
                "yingji",
                "shelters",
                attributes=[{"name": "label", "type": "text"}],
                visibility="Shared",
                shareWith=[{"department": "jiaotong", "purpose": "疏散路线规划"}],
                minZoom=5,
                maxZoom=18,
            ),
            map_layer("jiaotong", "stops"),
            map_layer("weijian", "clinics"),
        ],
    )
    shelters = wait_ready(k8s, "yingji", "shelters")
    for ns, name in (("jiaotong", "stops"), ("weijian", "clinics")):
        wait_ready(k8s, ns, name)
    assert shelters["status"]["endpoints"]["layer"] == "yingji.shelters"
    assert "tileToken" not in shelters["status"]["endpoints"]
    own = secret_data(k8s, "yingji", "shelters-connection")
    reader = secret_data(k8s, "jiaotong", "stops-connection")
    outsider = secret_data(k8s, "weijian", "clinics-connection")

    # Load features in CGCS2000 with the Secret's own credentials.
    places = [
        ("tiananmen", 116.3975, 39.9087),
        ("guomao", 116.4589, 39.9087),
        ("xizhimen", 116.3550, 39.9405),
    ]
    with psycopg.connect(own["databaseUrl"]) as conn:
        conn.cursor().executemany(insert(own, label=True), places)

    # The tile covering 天安门 holds it, at the right place, in Web Mercator.
    x, y, px, py = tile_xy(116.3975, 39.9087, 15)
    status, decoded = tile(own, 15, x, y)
    assert status == 200, decoded
    features = {
        f["properties"]["label"]: f["geometry"]["coordinates"] for f in decoded["shelters"]["features"]
    }
    assert set(features) == {"tiananmen"}
    assert abs(features["tiananmen"][0] - px) <= 2 and abs(features["tiananmen"][1] - py) <= 2
    x4, y4, _, _ = tile_xy(116.3975, 39.9087, 4)
    assert tile(own, 4, x4, y4)[0] in (200, 204) and not tile(own, 4, x4, y4)[1], "below minZoom: empty"

    # Another department cannot write; sharing reads as declared.
    with psycopg.connect(reader["databaseUrl"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(insert(own), (116.40, 39.90))
    assert len(tile(own, 15, x, y, token=reader["tileToken"])[1]["shelters"]["features"]) == 1
    assert refused(tile(own, 15, x, y, token=outsider["tileToken"]))

    # Stop sharing: the reader loses access at once.
    testing.apply(cluster, [map_layer("yingji", "shelters", visibility="Department", minZoom=5, maxZoom=18,
                                      attributes=[{"name": "label", "type": "text"}])])  # fmt: skip
    wait_for(
        lambda: refused(tile(own, 15, x, y, token=reader["tileToken"])), 30, "sharing with jiaotong revoked"
    )

    # Deleting a layer with data is refused until the request says to drop it.
    testing.kubectl(cluster, "delete", PLURAL, "shelters", "-n", "yingji", "--wait=false")
    deleting = wait_for(
        lambda: (
            (o := get(k8s, "yingji", "shelters"))
            and condition(o, "Ready").get("reason") == "DeleteFailed"
            and o
        ),
        30,
        "the delete to be refused",
    )
    assert "spec.dataDeletion" in condition(deleting, "Ready")["message"]
    wait_for(  # kopf posts events in the background, a moment after the status patch
        lambda: any(
            "LayerHasData" in m or "holds 3 features" in m for m in event_messages(k8s, "yingji", "shelters")
        ),
        15,
        "a LayerHasData event",
    )
    assert tile(own, 15, x, y)[0] == 200, "nothing was dropped"
    testing.kubectl(
        cluster, "patch", PLURAL, "shelters", "-n", "yingji", "--type", "merge", "-p",
        '{"spec": {"dataDeletion": "Drop"}}',
    )  # fmt: skip
    wait_for(lambda: get(k8s, "yingji", "shelters") is None, 60, "the layer to be deleted")
    assert refused(tile(own, 15, x, y))
    with psycopg.connect(maps.postgis.dsn()) as conn:
        assert conn.execute("SELECT to_regclass('dept_yingji.shelters')").fetchone() == (None,)
    with pytest.raises(psycopg.OperationalError):  # yingji's last layer: its role no longer logs in
        psycopg.connect(own["databaseUrl"]).close()
    assert wait_for(
        # Only this component's Secrets: other test modules share the session cluster and its namespaces.
        lambda: (
            not client.CoreV1Api(k8s)
            .list_namespaced_secret("yingji", label_selector="hub.cityhub.io/component-type=maps")
            .items
        ),
        30,
        "the Secret to go",
    )
