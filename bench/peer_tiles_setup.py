"""The two sides of bench/peer_tiles.py on one PostGIS: cityhub's layers and the raw martin that serves them.

    Sides   cityhub's martin (the tiles role, the access-checked function `layers`, ?layer=&token=) and a
            second martin ("raw") on the same PostGIS, connected as a role that may SELECT the two tables,
            serving each table directly (martin's own table source SQL) and through a function that runs
            exactly the SQL cityhub's runs after its access check
    Data    a Point layer (100k points over central Beijing, the figure of issue 17) and a Polygon layer
            (star-shaped polygons of 8 to 32 vertices, 20 to 400 m across), both created through the maps
            driver as the operator would and loaded with the department's own credentials

The raw functions are copies of the layers' own functions (cityhub_maps.layer_<md5>, made by
cityhub_maps.publish_layer), the ones cityhub's tile function calls after its check: both sides run the same
SQL for the same layer and zoom, and the difference is what cityhub does around it (token, layer, readers,
zoom range, the dynamic call of the layer's function, SECURITY DEFINER).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cityhub_operator.driver import Request
from psycopg import sql

from cityhub import supervisor
from component_types.maps.catalog_sql import quote_ident, quote_literal
from component_types.maps.driver import create_driver
from component_types.maps.local import LocalMaps, MartinServer
from component_types.maps.naming import CATALOG_SCHEMA, DATABASE, layer_function

DEPARTMENT = "yingji"
RAW_ROLE = "bench_raw"
RAW_SCHEMA = "bench_raw"
# Central Beijing, roughly the 5th ring road (lon, lat in CGCS2000), as bench/bench_maps.py.
BBOX = (116.20, 39.75, 116.55, 40.03)


@dataclass(frozen=True)
class Layer:
    """One layer as both sides serve it."""

    name: str
    geometry: str
    table: str  # schema.table
    layer_id: str

    @property
    def raw_table_source(self) -> str:
        return f"{self.name}_table"

    @property
    def raw_function_source(self) -> str:
        return f"{self.name}_same_sql"


def create_layers(local: LocalMaps) -> tuple[dict[str, str], list[Layer]]:
    """The two layers through the driver; returns the department's Secret and the layers."""
    driver = create_driver(local.operator_env())
    layers: list[Layer] = []
    secret: dict[str, str] = {}
    for name, geometry in (("incidents", "Point"), ("districts", "Polygon")):
        request = Request(
            namespace=DEPARTMENT,
            name=name,
            uid=f"bench-{name}",
            department=DEPARTMENT,
            spec={"geometryType": geometry, "attributes": [{"name": "label", "type": "text"}]},
            limits={},
        )
        result = asyncio.run(driver.ensure(request))
        secret = {**result.endpoints, **result.credentials}
        layers.append(Layer(name, geometry, secret["table"], secret["layer"]))
    return secret, layers


def load(database_url: str, layers: list[Layer], points: int, polygons: int) -> None:
    """Random points and polygons over BBOX in CGCS2000 (EPSG:4490), written as the department."""
    lon, dlon, lat, dlat = BBOX[0], BBOX[2] - BBOX[0], BBOX[1], BBOX[3] - BBOX[1]
    with psycopg.connect(database_url) as conn:
        for layer in layers:
            target = sql.Identifier(*layer.table.split("."))
            if layer.geometry == "Point":
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (label, geom) SELECT 'p' || i, ST_SetSRID(ST_MakePoint("
                        "%s + random() * %s, %s + random() * %s), 4490) FROM generate_series(1, %s) AS i"
                    ).format(target),
                    (lon, dlon, lat, dlat, points),
                )
            else:
                # A star-ish ring: 8..32 vertices at a random radius each, around a random centre (metres in
                # Web Mercator, turned back into CGCS2000 as the department would write it).
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (label, geom) SELECT 'a' || i, ST_Transform(ST_MakePolygon("
                        "ST_AddPoint(r.ring, ST_StartPoint(r.ring))), 4490) FROM generate_series(1, %s) AS i,"
                        " LATERAL (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(%s + random() * %s + i * 0,"
                        " %s + random() * %s), 4490), 3857) AS c, 8 + (random() * 24)::int AS n,"
                        " 15 + random() * 185 AS radius) AS s,"
                        " LATERAL (SELECT ST_MakeLine(ST_Translate(s.c,"
                        " cos(2 * pi() * k / s.n) * s.radius * (0.6 + random() * 0.4),"
                        " sin(2 * pi() * k / s.n) * s.radius * (0.6 + random() * 0.4))"
                        " ORDER BY k) AS ring FROM generate_series(0, s.n - 1) AS k) AS r"
                    ).format(target),
                    (polygons, lon, dlon, lat, dlat),
                )


def prepare_raw(local: LocalMaps, layers: list[Layer]) -> str:
    """The raw side's role, grants and functions (as the superuser); returns its password. ANALYZEs the
    tables, so both sides plan with the same statistics."""
    password = secrets.token_urlsafe(18)
    role = quote_ident(RAW_ROLE)
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {quote_literal(RAW_ROLE)}) THEN "
        f"CREATE ROLE {role} LOGIN; END IF; END $$",
        f"ALTER ROLE {role} LOGIN PASSWORD {quote_literal(password)}",
        # martin's table source SQL (ST_Transform, ST_CurveToLine) is costed so high that PostgreSQL would
        # JIT-compile it (about 0.9 s on this machine for a z10 tile); a martin deployment turns JIT off,
        # as cityhub's tile function does for itself.
        f"ALTER ROLE {role} SET jit = off",
        f"GRANT CONNECT ON DATABASE {quote_ident(DATABASE)} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"CREATE SCHEMA IF NOT EXISTS {quote_ident(RAW_SCHEMA)} AUTHORIZATION {role}",
    ]
    for layer in layers:
        schema, table = layer.table.split(".")
        statements += [
            f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {role}",
            f"GRANT SELECT ON {quote_ident(schema)}.{quote_ident(table)} TO {role}",
            f"ANALYZE {quote_ident(schema)}.{quote_ident(table)}",
        ]
    local.postgis.psql(";\n".join(statements) + ";\n")
    with psycopg.connect(local.postgis.dsn(), autocommit=True) as conn:
        for layer in layers:
            # The layer's function that cityhub's tile function calls after its check, copied whole
            # (body and settings) under the raw side's name and owner.
            row = conn.execute(
                "SELECT pg_get_functiondef(to_regprocedure(%s))",
                (f"{CATALOG_SCHEMA}.{layer_function(layer.layer_id)}(integer, integer, integer)",),
            ).fetchone()
            assert row is not None and row[0], f"layer {layer.layer_id} has no tile function"
            own = f"FUNCTION {CATALOG_SCHEMA}.{layer_function(layer.layer_id)}("
            assert own in row[0], row[0][:200]
            copy = row[0].replace(own, f"FUNCTION {RAW_SCHEMA}.{layer.raw_function_source}(", 1)
            conn.execute(copy.encode())
            conn.execute(
                sql.SQL("ALTER FUNCTION {}.{}(integer, integer, integer) OWNER TO {}").format(
                    sql.Identifier(RAW_SCHEMA),
                    sql.Identifier(layer.raw_function_source),
                    sql.Identifier(RAW_ROLE),
                )
            )
    return password


def raw_martin_config(database_url: str, listen: str, layers: list[Layer]) -> str:
    """martin serving each table directly and through its raw function; pool and cache as cityhub's martin
    (component_types/maps/martin_config.py: pool_size 20, no cache)."""
    lines = [
        "# bench/peer_tiles_setup.py: raw martin over the same tables as cityhub's layers.",
        f"listen_addresses: '{listen}'",
        "cache_size_mb: 0",
        "postgres:",
        f"  connection_string: '{database_url}'",
        "  pool_size: 20",
        "  auto_publish: false",
        "  tables:",
    ]
    for layer in layers:
        schema, table = layer.table.split(".")
        lines += [
            f"    {layer.raw_table_source}:",
            f"      schema: {schema}",
            f"      table: {table}",
            f"      layer_id: {layer.name}",
            "      srid: 3857",
            "      geometry_column: geom_3857",
            f"      geometry_type: {layer.geometry.upper()}",
            "      id_column: id",
            "      extent: 4096",
            "      buffer: 64",
            "      clip_geom: true",
            "      properties:",
            "        label: text",
        ]
    lines.append("  functions:")
    for layer in layers:
        lines += [
            f"    {layer.raw_function_source}:",
            f"      schema: {RAW_SCHEMA}",
            f"      function: {layer.raw_function_source}",
            "      minzoom: 0",
            "      maxzoom: 24",
        ]
    return "\n".join(lines) + "\n"


class RawMartin(MartinServer):
    """martin with the raw config, started, awaited and stopped like cityhub's (maps/local.py)."""

    def __init__(self, directory: Path, database_url: str, layers: list[Layer]) -> None:
        super().__init__(directory, database_url, name="bench-raw-martin")
        self.layers = layers

    def _config(self, port: int) -> str:
        return raw_martin_config(self.database_url, f"{supervisor.HOST}:{port}", self.layers)
