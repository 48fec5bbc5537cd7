"""The maps driver without a backend: spec checks, SQL composition, names, settings, CRD rules."""

from __future__ import annotations

from typing import Any

import pytest
from cityhub_operator import crds, schemas
from cityhub_operator.driver import Driver, PermanentBackendError, Prober
from component_types.maps.driver.catalog_sql import bootstrap_script
from component_types.maps.driver.credentials import Credentials

from component_types.maps.driver import MapsSettings, create_driver, layer, naming
from component_types.maps.driver.server import martin_config

ENV = {
    "CITYHUB_MAPS_DSN": "postgresql://postgres:pw@postgis.cityhub-system:5432/cityhub_maps",
    "CITYHUB_MAPS_SECRET": "x" * 40,
    "CITYHUB_MAPS_TILE_URL": "http://maps-tiles.cityhub-system:3000/",
}


def parse(**spec: Any) -> layer.LayerSpec:
    return layer.parse({"geometryType": "Point", **spec}, "yingji")


def test_defaults_are_cgcs2000_private_all_zooms() -> None:
    got = parse()
    assert (got.srid, got.visibility, got.min_zoom, got.max_zoom, got.readers, got.drop_data) == (
        4490,
        "Department",
        0,
        22,
        (),
        False,
    )
    assert parse(coordinateSystem="EPSG:4326").srid == 4326


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"geometryType": "Circle"}, "spec.geometryType"),
        ({"coordinateSystem": "EPSG:3857"}, "spec.coordinateSystem"),
        ({"attributes": [{"name": "Name"}]}, "spec.attributes[0].name"),
        ({"attributes": [{"name": "a b"}]}, "spec.attributes[0].name"),
        ({"attributes": [{"name": "ok"}, {"name": "geom"}]}, "spec.attributes[1].name"),
        ({"attributes": [{"name": "ok"}, {"name": "ok"}]}, "spec.attributes[1].name"),
        ({"attributes": [{"name": "ok", "type": "money"}]}, "spec.attributes[0].type"),
        ({"minZoom": 12, "maxZoom": 3}, "spec.minZoom"),
        ({"maxZoom": 30}, "spec.maxZoom"),
        ({"visibility": "Shared"}, "spec.shareWith"),
        ({"visibility": "Public", "shareWith": [{"department": "jiaotong"}]}, "spec.shareWith"),
        ({"visibility": "Everyone"}, "spec.visibility"),
    ],
)
def test_bad_input_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(PermanentBackendError) as refused:
        parse(**spec)
    assert refused.value.reason == "InvalidSpec"
    assert str(refused.value).startswith(field), str(refused.value)


def test_sharing_with_oneself_is_no_reader() -> None:
    shared = parse(visibility="Shared", shareWith=[{"department": "yingji"}, {"department": "jiaotong"}])
    assert shared.readers == ("jiaotong",)


def test_identifiers_are_quoted_never_concatenated() -> None:
    spec = parse(attributes=[{"name": "select", "type": "double"}, {"name": "_x1"}])
    text = layer.create_table("dept_yingji", "shelters", spec).as_string()
    assert '"select" double precision' in text and '"_x1" text' in text
    assert "geometry(Point, 4490)" in text and "ST_Transform(geom, 3857)" in text
    assert '"dept_yingji"."shelters"' in text


def test_long_names_stay_unique_within_postgres_limits() -> None:
    a, b = "x" * 60 + "-a", "x" * 60 + "-b"
    assert naming.schema_name(a) != naming.schema_name(b)
    assert max(len(naming.schema_name(a)), len(naming.schema_name(b))) <= 63
    assert naming.schema_name("jiao-tong") == "dept_jiao_tong"


def test_credentials_are_derived_and_distinct() -> None:
    one, again = Credentials(b"s" * 40), Credentials(b"s" * 40)
    assert one.department_password("yingji") == again.department_password("yingji")
    assert one.department_password("yingji") != one.department_password("jiaotong")
    assert one.tile_token("yingji") != one.department_password("yingji")
    assert Credentials(b"t" * 40).tiles_password() != one.tiles_password()


def test_settings_from_env() -> None:
    settings = MapsSettings.from_env(ENV)
    assert settings.tile_url == "http://maps-tiles.cityhub-system:3000"
    assert settings.public_host == "postgis.cityhub-system:5432" and settings.database == "cityhub_maps"
    driver = create_driver(ENV)
    assert isinstance(driver, Driver) and isinstance(driver, Prober)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CITYHUB_MAPS_DSN": "mysql://x"}, "CITYHUB_MAPS_DSN"),
        ({"CITYHUB_MAPS_TILE_URL": "maps-tiles:3000"}, "CITYHUB_MAPS_TILE_URL"),
        ({"CITYHUB_MAPS_SECRET": "short"}, "CITYHUB_MAPS_SECRET"),
        ({"CITYHUB_MAPS_TIMEOUT": "-1"}, "CITYHUB_MAPS_TIMEOUT"),
        ({"CITYHUB_MAPS_SECRET_FILE": "/nonexistent/secret"}, "CITYHUB_MAPS_SECRET_FILE"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        MapsSettings.from_env({**ENV, **change})


def test_martin_publishes_only_the_tile_function_and_caches_nothing() -> None:
    config = martin_config("${DATABASE_URL}", listen="0.0.0.0:3000")
    assert "auto_publish: false" in config and "cache_size_mb: 0" in config
    assert "function: layer_tile" in config and "${DATABASE_URL}" in config


def test_bootstrap_script_grants_the_tiles_role_only_the_function() -> None:
    script = bootstrap_script("pw'; DROP ROLE postgres; --")
    assert "PASSWORD 'pw''; DROP ROLE postgres; --'" in script
    assert 'GRANT EXECUTE ON FUNCTION "cityhub_maps"."layer_tile"' in script
    assert "GRANT SELECT" not in script


def test_crd_carries_the_schema_rules() -> None:
    ctype = schemas.component_types()["maps"]
    assert (ctype.kind, ctype.plural) == ("MapLayer", "maplayers")
    crd = next(c for c in crds.render_crds() if c["spec"]["names"]["kind"] == "MapLayer")
    assert crd["spec"]["names"]["shortNames"] == ["ml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = " ".join(r["message"] for r in spec["x-kubernetes-validations"])
    assert "spec.minZoom must not be above spec.maxZoom" in messages
    assert "spec.shareWith needs at least one department" in messages
    assert spec["properties"]["coordinateSystem"]["default"] == "EPSG:4490"
    assert spec["properties"]["attributes"]["items"]["properties"]["name"]["pattern"] == "^[a-z_][a-z0-9_]*$"
