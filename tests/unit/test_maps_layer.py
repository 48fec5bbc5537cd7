"""The maps type without a backend: spec checks, SQL composition and quoting, names, settings, CRD rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cityhub_operator.driver import Driver, PermanentBackendError, Prober
from psycopg import sql

from cityhub_api import crds, registry
from cityhub_api.settings import Env, SettingError
from component_types.maps import naming
from component_types.maps.catalog_sql import (
    bootstrap_script,
    bootstrap_statements,
    quote_ident,
    quote_literal,
)
from component_types.maps.credentials import Credentials
from component_types.maps.driver import MapsSettings, create_driver, layer
from component_types.maps.martin_config import martin_config

ENV = {
    "CITYHUB_MAPS_DSN": "postgresql://postgres:pw@postgis.cityhub-system:5432/cityhub_maps",
    "CITYHUB_MAPS_SECRET": "x" * 40,
    "CITYHUB_MAPS_TILE_URL": "http://maps.cityhub-system.svc:3000/",
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
        ({"fullDetailZoom": 25}, "spec.fullDetailZoom"),
        ({"fullDetailZoom": -1}, "spec.fullDetailZoom"),
        ({"fullDetailZoom": 10.5}, "spec.fullDetailZoom"),
        ({"fullDetailZoom": True}, "spec.fullDetailZoom"),
        # Generalized point tiles carry `count` (points per grid cell): no attribute may take that name.
        ({"attributes": [{"name": "count"}]}, "spec.attributes[0].name"),
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
    settings = MapsSettings.from_env(Env(ENV))
    assert settings.tile_url == "http://maps.cityhub-system.svc:3000"
    assert settings.probe_url == settings.tile_url and settings.timeout == 10.0
    assert settings.public_host == "postgis.cityhub-system:5432" and settings.database == "cityhub_maps"
    driver = create_driver(ENV)
    assert isinstance(driver, Driver) and isinstance(driver, Prober)


def test_secrets_come_from_mounted_files(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text(ENV["CITYHUB_MAPS_DSN"] + "\n")
    (tmp_path / "secret").write_text("s" * 48)
    env = {
        "CITYHUB_MAPS_DSN_FILE": str(tmp_path / "dsn"),
        "CITYHUB_MAPS_SECRET_FILE": str(tmp_path / "secret"),
        "CITYHUB_MAPS_TILE_URL": ENV["CITYHUB_MAPS_TILE_URL"],
    }
    settings = MapsSettings.from_env(Env(env))
    assert settings.dsn == ENV["CITYHUB_MAPS_DSN"] and settings.secret == b"s" * 48


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"CITYHUB_MAPS_DSN": "mysql://x"}, "CITYHUB_MAPS_DSN"),
        ({"CITYHUB_MAPS_DSN": ""}, "CITYHUB_MAPS_DSN is not set"),
        ({"CITYHUB_MAPS_DSN": "postgresql://postgres:pw@host:port/db"}, "CITYHUB_MAPS_DSN"),
        ({"CITYHUB_MAPS_TILE_URL": "maps-tiles:3000"}, "CITYHUB_MAPS_TILE_URL"),
        ({"CITYHUB_MAPS_TILE_URL": ""}, "CITYHUB_MAPS_TILE_URL is not set"),
        ({"CITYHUB_MAPS_PUBLIC_HOST": "postgis"}, "CITYHUB_MAPS_PUBLIC_HOST"),
        ({"CITYHUB_MAPS_SECRET": "short"}, "CITYHUB_MAPS_SECRET"),
        ({"CITYHUB_MAPS_TIMEOUT": "-1"}, "CITYHUB_MAPS_TIMEOUT"),
        ({"CITYHUB_MAPS_TIMEOUT": "0"}, "CITYHUB_MAPS_TIMEOUT"),
        ({"CITYHUB_MAPS_SECRET_FILE": "/nonexistent/secret"}, "CITYHUB_MAPS_SECRET_FILE"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(SettingError, match=named) as bad:
        MapsSettings.from_env(Env({**ENV, **change}))
    assert "pw@" not in str(bad.value), "a DSN's password is never repeated"


def test_martin_publishes_only_the_tile_function_and_caches_nothing() -> None:
    config = martin_config("${DATABASE_URL}", listen="0.0.0.0:3000")
    assert "auto_publish: false" in config and "cache_size_mb: 0" in config
    assert "function: layer_tile" in config and "${DATABASE_URL}" in config


def test_bootstrap_script_grants_the_tiles_role_only_the_function() -> None:
    script = bootstrap_script("pw'; DROP ROLE postgres; --")
    assert "PASSWORD 'pw''; DROP ROLE postgres; --'" in script
    assert 'GRANT EXECUTE ON FUNCTION "cityhub_maps"."layer_tile"' in script
    assert "GRANT SELECT" not in script
    statements = bootstrap_statements("pw")
    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS postgis"
    assert script.count(";\n") >= len(statements)


@pytest.mark.parametrize("name", ["cityhub_tiles", 'we"ird', "Mixed Case", "层"])
def test_identifiers_are_quoted_as_psycopg_quotes_them(name: str) -> None:
    assert quote_ident(name) == sql.Identifier(name).as_string()


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain-text_09", "'plain-text_09'"),
        ("it's", "'it''s'"),
        ("", "''"),
        ("a\\b 'q'", "E'a\\\\b ''q'''"),
    ],
)
def test_literals_read_back_as_written(text: str, quoted: str) -> None:
    assert quote_literal(text) == quoted


def test_quoting_refuses_what_postgres_cannot_hold() -> None:
    for bad in ("", "nul\x00byte"):
        with pytest.raises(ValueError):
            quote_ident(bad)
    with pytest.raises(ValueError):
        quote_literal("nul\x00byte")


def test_crd_carries_the_schema_rules() -> None:
    ctype = registry.component_types()["maps"]
    assert (ctype.kind, ctype.plural) == ("MapLayer", "maplayers")
    crd = next(c for c in crds.render_crds() if c["spec"]["names"]["kind"] == "MapLayer")
    assert crd["spec"]["names"]["shortNames"] == ["ml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = " ".join(r["message"] for r in spec["x-kubernetes-validations"])
    assert "spec.minZoom must not be above spec.maxZoom" in messages
    assert "spec.shareWith needs at least one department" in messages
    assert spec["properties"]["coordinateSystem"]["default"] == "EPSG:4490"
    assert spec["properties"]["attributes"]["items"]["properties"]["name"]["pattern"] == "^[a-z_][a-z0-9_]*$"
