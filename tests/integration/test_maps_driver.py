"""The maps driver against a real PostGIS and a real martin (both local, component_types/maps/local.py).

A layer written in CGCS2000 appears in the Web Mercator tile that covers it, at the right pixel; only the
owning department can write; reading follows visibility (Department, Shared with named departments,
Public); zoom range, drift repair and deletion (refused while the layer holds data) behave as documented.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import mapbox_vector_tile
import psycopg
import pytest
from cityhub_operator.driver import PermanentBackendError, Request, Result
from psycopg import sql

from cityhub import supervisor
from cityhub.local_backends import LocalContext
from cityhub.supervisor import Supervisor
from cityhub_api.settings import cache_dir
from component_types.maps import local
from component_types.maps.driver import MapsDriver, create_driver
from component_types.maps.local import LocalMaps
from component_types.maps.naming import DENIED_LAYER

pytestmark = pytest.mark.integration
# 天安门 / 北京站 / 国贸 in CGCS2000 (lon, lat).
PLACES = {
    "tiananmen": (116.3975, 39.9087),
    "beijing-station": (116.4270, 39.9029),
    "guomao": (116.4589, 39.9087),
}
ZOOM = 14


@pytest.fixture(scope="module")
def maps(maps_backend: LocalMaps) -> LocalMaps:
    """PostGIS + martin (component_types/maps/fixtures.py), one per module."""
    return maps_backend


@pytest.fixture(scope="module")
def driver(maps: LocalMaps) -> MapsDriver:
    """The driver with the settings `cityhub operator start` gives the operator (files for the secrets)."""
    return create_driver(maps.operator_env())


def request(department: str, name: str, uid: str = "", **spec: Any) -> Request:
    return Request(
        namespace=department,
        name=name,
        uid=uid or f"uid-{department}-{name}",
        department=department,
        spec={"geometryType": "Point", "coordinateSystem": "EPSG:4490", **spec},
        limits={},
    )


def secret_of(result: Result) -> dict[str, str]:
    return {**result.endpoints, **result.credentials}


def table(secret: Mapping[str, str]) -> sql.Identifier:
    """The layer's table as the Secret names it (schema.table), quoted."""
    return sql.Identifier(*secret["table"].split("."))


def insert(secret: Mapping[str, str], srid: int = 4490, label: bool = False) -> sql.Composed:
    """INSERT of one point (lon, lat[, label first]) in `srid` into the Secret's table."""
    columns = sql.SQL("label, geom" if label else "geom")
    values = sql.SQL("%s, " if label else "")
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}ST_SetSRID(ST_MakePoint(%s, %s), {}))").format(
        table(secret), columns, values, sql.Literal(srid)
    )


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int, float, float]:
    """Tile x, y at zoom z and the position inside it in MVT units (extent 4096, y down)."""
    n = 2**z
    fx = (lon + 180.0) / 360.0 * n
    rad = math.radians(lat)
    fy = (1.0 - math.log(math.tan(rad) + 1.0 / math.cos(rad)) / math.pi) / 2.0 * n
    return int(fx), int(fy), (fx - int(fx)) * 4096, (fy - int(fy)) * 4096


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tile(secret: Mapping[str, str], z: int, x: int, y: int, token: str | None = None) -> tuple[int, Any]:
    url = secret["tileUrl"].format(z=z, x=x, y=y) + "&" + urlencode({"token": token or secret["tileToken"]})
    status, body = fetch(url)
    if status == 204:  # martin's answer for an empty tile
        return status, {}
    if status != 200:
        return status, body
    return status, mapbox_vector_tile.decode(body, default_options={"y_coord_down": True})


def refused(answer: tuple[int, Any]) -> str:
    """The reason a tile answer carries when the token may not read the layer ('' when it was served)."""
    status, decoded = answer
    assert status in (200, 204), answer
    features = (decoded or {}).get(DENIED_LAYER, {}).get("features", [])
    return str(features[0]["properties"]["reason"]) if features else ""


def load(secret: Mapping[str, str], rows: list[tuple[str, float, float]]) -> None:
    with psycopg.connect(secret["databaseUrl"]) as conn:
        conn.cursor().executemany(
            insert(secret, label=True),
            rows,
        )


def test_layer_in_cgcs2000_is_served_in_web_mercator_at_the_right_place(
    maps: LocalMaps, driver: MapsDriver
) -> None:
    req = request("yingji", "shelters", attributes=[{"name": "label", "type": "text"}])
    secret = secret_of(asyncio.run(driver.ensure(req)))
    assert secret_of(asyncio.run(driver.ensure(req))) == secret, "ensure is idempotent"
    assert secret["tileUrl"].startswith(maps.operator_env()["CITYHUB_MAPS_TILE_URL"] + "/layers/{z}/{x}/{y}?")
    load(secret, [(label, lon, lat) for label, (lon, lat) in PLACES.items()])

    x, y, px, py = tile_xy(*PLACES["tiananmen"], ZOOM)
    status, decoded = tile(secret, ZOOM, x, y)
    assert status == 200
    features = {f["properties"]["label"]: f for f in decoded["shelters"]["features"]}
    assert "tiananmen" in features and "guomao" not in features  # 国贸 is in the next tile east
    got = features["tiananmen"]["geometry"]["coordinates"]
    assert abs(got[0] - px) <= 2 and abs(got[1] - py) <= 2, (got, (px, py))
    # A tile elsewhere holds nothing of the layer.
    status, empty = tile(secret, ZOOM, x + 40, y)
    assert status in (200, 204) and not empty.get("shelters")


def test_only_the_owning_department_writes(driver: MapsDriver) -> None:
    own = secret_of(asyncio.run(driver.ensure(request("yingji", "hazards"))))
    other = secret_of(asyncio.run(driver.ensure(request("jiaotong", "stops"))))
    with psycopg.connect(other["databaseUrl"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(insert(own, 4490), (116.4, 39.9))
    with psycopg.connect(own["databaseUrl"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE dept_yingji.extra (id int)")  # layers only through the operator
        conn.rollback()
        with pytest.raises(psycopg.errors.InvalidParameterValue):  # wrong coordinate system: typmod refuses
            conn.execute(insert(own, 3857), (1, 2))


def test_sharing_follows_visibility(driver: MapsDriver) -> None:
    owner = secret_of(
        asyncio.run(
            driver.ensure(
                request("chengguan", "grid", visibility="Shared", shareWith=[{"department": "huanbao"}])
            )
        )
    )
    reader = secret_of(asyncio.run(driver.ensure(request("huanbao", "sensors"))))
    outsider = secret_of(asyncio.run(driver.ensure(request("weijian", "clinics"))))
    load_point(owner)
    x, y, _, _ = tile_xy(116.40, 39.91, 10)
    assert tile(owner, 10, x, y)[1]["grid"]["features"]
    assert tile(owner, 10, x, y, token=reader["tileToken"])[1]["grid"]["features"]
    denied = tile(owner, 10, x, y, token=outsider["tileToken"])
    assert refused(denied) == "department weijian may not read layer chengguan.grid"
    assert set(denied[1]) == {DENIED_LAYER}, "nothing of the layer is in a refused tile"
    assert "token is not valid" in refused(tile(owner, 10, x, y, token="not-a-token"))
    # The reader may SELECT the shared table with its own credentials, the outsider may not.
    with psycopg.connect(reader["databaseUrl"]) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table(owner))).fetchone() == (1,)
    with (
        psycopg.connect(outsider["databaseUrl"]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table(owner)))

    # Public: every department with a token reads; revoking sharing takes effect at once.
    asyncio.run(driver.ensure(request("chengguan", "grid", visibility="Public")))
    assert tile(owner, 10, x, y, token=outsider["tileToken"])[1]["grid"]["features"]
    asyncio.run(driver.ensure(request("chengguan", "grid", visibility="Department")))
    assert refused(tile(owner, 10, x, y, token=reader["tileToken"]))
    with psycopg.connect(reader["databaseUrl"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table(owner)))


def load_point(secret: Mapping[str, str]) -> None:
    with psycopg.connect(secret["databaseUrl"]) as conn:
        conn.execute(insert(secret, 4490), (116.40, 39.91))


def test_zoom_range_and_wgs84(driver: MapsDriver) -> None:
    secret = secret_of(
        asyncio.run(
            driver.ensure(request("jiaotong", "roads", coordinateSystem="EPSG:4326", minZoom=8, maxZoom=12))
        )
    )
    with psycopg.connect(secret["databaseUrl"]) as conn:
        conn.execute(insert(secret, 4326), (116.40, 39.91))
    for z, present in ((7, False), (8, True), (12, True), (13, False)):
        x, y, _, _ = tile_xy(116.40, 39.91, z)
        status, decoded = tile(secret, z, x, y)
        assert status in (200, 204)
        assert bool(decoded and decoded.get("roads")) is present, z


def test_drift_is_seen_and_repaired(maps: LocalMaps, driver: MapsDriver) -> None:
    req = request("huanbao", "stations", visibility="Shared", shareWith=[{"department": "weijian"}])
    asyncio.run(driver.ensure(req))
    assert asyncio.run(driver.observe(req)).in_sync
    with psycopg.connect(maps.postgis.dsn()) as conn:
        conn.execute("DROP INDEX dept_huanbao.stations_geom_3857_gist")
        conn.execute("REVOKE SELECT ON dept_huanbao.stations FROM dept_weijian")
        conn.execute("DELETE FROM cityhub_maps.readers WHERE layer_id = 'huanbao.stations'")
    seen = asyncio.run(driver.observe(req))
    assert not seen.in_sync and len(seen.drift) == 3, seen.drift
    asyncio.run(driver.ensure(req))
    assert asyncio.run(driver.observe(req)).in_sync


def test_delete_refuses_data_unless_told_and_removes_everything(maps: LocalMaps, driver: MapsDriver) -> None:
    req = request("weijian", "pharmacies")
    secret = secret_of(asyncio.run(driver.ensure(req)))
    load_point(secret)
    with pytest.raises(PermanentBackendError) as refusal:
        asyncio.run(driver.delete(req))
    assert refusal.value.reason == "LayerHasData" and "spec.dataDeletion" in str(refusal.value)
    assert tile(secret, 0, 0, 0)[0] == 200, "a refused delete leaves the layer serving"
    dropping = request("weijian", "pharmacies", dataDeletion="Drop")
    asyncio.run(driver.delete(dropping))
    asyncio.run(driver.delete(dropping))  # already gone: still succeeds
    assert refused(tile(secret, 0, 0, 0))
    with psycopg.connect(maps.postgis.dsn()) as conn:
        assert conn.execute("SELECT to_regclass('dept_weijian.pharmacies')").fetchone() == (None,)
    # weijian still has its clinics layer: its credentials keep working.
    with psycopg.connect(secret["databaseUrl"]) as conn:
        conn.execute("SELECT 1")


def test_last_layer_gone_revokes_the_department(maps: LocalMaps, driver: MapsDriver) -> None:
    req = request("gongan", "cameras")
    secret = secret_of(asyncio.run(driver.ensure(req)))
    asyncio.run(driver.delete(req))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(secret["databaseUrl"]).close()
    assert refused(tile(secret, 0, 0, 0))
    with psycopg.connect(maps.postgis.dsn()) as conn:
        assert conn.execute("SELECT to_regnamespace('dept_gongan')").fetchone() == (None,)


def test_probe_fetches_a_tile_with_the_departments_token(driver: MapsDriver) -> None:
    req = request("yingji", "probe-me")
    secret = secret_of(asyncio.run(driver.ensure(req)))
    asyncio.run(driver.probe(req, secret))
    with pytest.raises(PermanentBackendError):
        asyncio.run(driver.probe(req, {**secret, "tileToken": "wrong"}))


def test_bad_input_names_the_field(driver: MapsDriver) -> None:
    cases = {
        "spec.geometryType": {"geometryType": "Circle"},
        "spec.coordinateSystem": {"coordinateSystem": "EPSG:3857"},
        "spec.attributes[0].name": {"attributes": [{"name": 'x"; DROP TABLE cityhub_maps.layers; --'}]},
        "spec.minZoom": {"minZoom": 15, "maxZoom": 10},
    }
    for field, spec in cases.items():
        with pytest.raises(PermanentBackendError) as refusal:
            asyncio.run(driver.ensure(request("yingji", "bad", **spec)))
        assert refusal.value.reason == "InvalidSpec" and field in str(refusal.value), (field, refusal.value)


def test_concurrent_requests_on_a_fresh_driver(maps: LocalMaps) -> None:
    """An operator (re)start reconciles many layers at once: bootstrap and roles must not race."""
    fresh = create_driver(maps.operator_env())

    async def main() -> list[Result]:
        return await asyncio.gather(
            *(
                fresh.ensure(request(d, f"layer-{i}"))
                for i, d in enumerate(("tongji", "tongji", "minzheng", "shuiwu"))
            )
        )

    results = asyncio.run(main())
    assert {r.backend["table"] for r in results} == {
        "dept_tongji.layer_0",
        "dept_tongji.layer_1",
        "dept_minzheng.layer_2",
        "dept_shuiwu.layer_3",
    }


def test_the_launcher_is_idempotent_and_restarts_what_died() -> None:
    """`cityhub operator start` twice changes nothing; after a crash of martin only martin is restarted."""
    root = local.scratch_directory("cityhub-maps-launcher-")  # the postgres user can enter it
    ctx = LocalContext(
        type_name="maps",
        directory=root / "backends" / "maps",
        supervisor=Supervisor(root / "processes"),
        cache=cache_dir(),
    )
    try:
        first = local.start(ctx)
        assert [r.name for r in first.processes] == ["maps-postgres", "maps-martin"]
        assert all(Path(v).exists() for k, v in first.operator_env.items() if k.endswith("_FILE"))
        again = local.start(ctx)
        assert again.processes == first.processes and again.operator_env == first.operator_env
        supervisor.kill(first.processes[1])
        revived = local.start(ctx)
        assert revived.processes[0] == first.processes[0], "PostGIS kept running"
        assert revived.processes[1].pid != first.processes[1].pid
        assert revived.operator_env == first.operator_env, "martin got its port back"
        driver = create_driver(revived.operator_env)
        req = request("yingji", "launched")
        secret = secret_of(asyncio.run(driver.ensure(req)))
        assert tile(secret, 0, 0, 0)[0] in (200, 204)
        asyncio.run(driver.delete(req))
    finally:
        ctx.supervisor.stop_all()
        shutil.rmtree(root, ignore_errors=True)
