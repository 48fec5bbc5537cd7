"""A MapLayer's spec, checked again on the driver side, and the SQL that makes its table.

The CRD already rejects bad input (component_types/maps/schema.json); this module re-checks it because
the driver is also called directly (tests, benchmarks) and because SQL must never be built from unchecked
text. Every identifier goes through psycopg.sql.Identifier, every value through sql.Literal or a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityhub_operator.driver import PermanentBackendError
from psycopg import sql

from component_types.maps.naming import identifier

GEOMETRY_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
COORDINATE_SYSTEMS = {"EPSG:4490": 4490, "EPSG:4326": 4326}
"""CGCS2000 (the national default) and WGS84; tiles are always Web Mercator (EPSG:3857)."""
ATTRIBUTE_TYPES = {
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "double": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp with time zone",
}
RESERVED = ("id", "geom", "geom_3857", "count")
"""Columns of the table (id, geom, geom_3857) and `count`, the attribute of aggregated points in tiles."""
VISIBILITIES = ("Department", "Shared", "Public")
ATTRIBUTE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEPARTMENT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_ZOOM = 24
FULL_DETAIL_ZOOM = 14
"""Default of spec.fullDetailZoom: below it tiles are generalized (catalog_sql.py, README.md)."""


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str

    @property
    def sql_type(self) -> str:
        return ATTRIBUTE_TYPES[self.type]


@dataclass(frozen=True)
class LayerSpec:
    geometry_type: str
    srid: int
    attributes: tuple[Attribute, ...]
    visibility: str
    share_with: tuple[str, ...]
    min_zoom: int
    max_zoom: int
    drop_data: bool
    full_detail_zoom: int = FULL_DETAIL_ZOOM

    @property
    def readers(self) -> tuple[str, ...]:
        """Departments besides the owner that may read the layer (Public: everyone, see the catalog)."""
        return self.share_with if self.visibility == "Shared" else ()


def _invalid(field: str, message: str) -> PermanentBackendError:
    return PermanentBackendError("InvalidSpec", f"spec.{field} {message}")


def parse(spec: Mapping[str, Any], department: str) -> LayerSpec:
    """The spec as a LayerSpec; raises PermanentBackendError(InvalidSpec) naming the field and the fix."""
    geometry = spec.get("geometryType")
    if geometry not in GEOMETRY_TYPES:
        raise _invalid("geometryType", f"is {geometry!r}: needs to be one of {', '.join(GEOMETRY_TYPES)}")
    crs = spec.get("coordinateSystem", "EPSG:4490")
    if crs not in COORDINATE_SYSTEMS:
        raise _invalid(
            "coordinateSystem",
            f"is {crs!r}: needs to be EPSG:4490 (CGCS2000, the national default) or EPSG:4326 (WGS84)",
        )
    attributes: list[Attribute] = []
    for i, item in enumerate(spec.get("attributes") or []):
        name, kind = item.get("name"), item.get("type", "text")
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            raise _invalid(
                f"attributes[{i}].name",
                f"is {name!r}: needs to be a lower-case identifier (a-z, 0-9, _; not starting with a digit)",
            )
        if name in RESERVED:
            raise _invalid(f"attributes[{i}].name", f"is {name!r}: {', '.join(RESERVED)} are reserved")
        if name in (a.name for a in attributes):
            raise _invalid(f"attributes[{i}].name", f"repeats {name!r}: attribute names need to be unique")
        if kind not in ATTRIBUTE_TYPES:
            raise _invalid(
                f"attributes[{i}].type", f"is {kind!r}: needs to be one of {', '.join(ATTRIBUTE_TYPES)}"
            )
        attributes.append(Attribute(name, kind))
    visibility = spec.get("visibility", "Department")
    if visibility not in VISIBILITIES:
        raise _invalid("visibility", f"is {visibility!r}: needs to be one of {', '.join(VISIBILITIES)}")
    share_with = tuple(sorted({str(s.get("department", "")) for s in spec.get("shareWith") or []}))
    for reader in share_with:
        if not DEPARTMENT.match(reader):
            raise _invalid("shareWith", f"names {reader!r}: needs to be a department (namespace) name")
    if visibility == "Shared" and not share_with:
        raise _invalid("shareWith", "is empty: visibility Shared needs at least one department to share with")
    if visibility != "Shared" and share_with:
        raise _invalid("shareWith", f"is only used with visibility Shared (visibility is {visibility})")
    min_zoom, max_zoom = int(spec.get("minZoom", 0)), int(spec.get("maxZoom", 22))
    for field, value in (("minZoom", min_zoom), ("maxZoom", max_zoom)):
        if not 0 <= value <= MAX_ZOOM:
            raise _invalid(field, f"is {value}: needs to be from 0 to {MAX_ZOOM}")
    if min_zoom > max_zoom:
        raise _invalid("minZoom", f"({min_zoom}) is above spec.maxZoom ({max_zoom}): swap or fix them")
    full_detail_zoom = spec.get("fullDetailZoom", FULL_DETAIL_ZOOM)
    if (
        isinstance(full_detail_zoom, bool)
        or not isinstance(full_detail_zoom, int)
        or not (0 <= full_detail_zoom <= MAX_ZOOM)
    ):
        raise _invalid(
            "fullDetailZoom", f"is {full_detail_zoom!r}: needs to be from 0 (never generalize) to {MAX_ZOOM}"
        )
    return LayerSpec(
        geometry_type=geometry,
        srid=COORDINATE_SYSTEMS[crs],
        attributes=tuple(attributes),
        visibility=visibility,
        share_with=tuple(r for r in share_with if r != department),
        min_zoom=min_zoom,
        max_zoom=max_zoom,
        drop_data=spec.get("dataDeletion", "Refuse") == "Drop",
        full_detail_zoom=full_detail_zoom,
    )


def create_table(schema: str, table: str, layer: LayerSpec) -> sql.Composed:
    """The layer's table: an id, its attributes, the source geometry and its Web Mercator copy."""
    geometry = sql.SQL("geometry({}, {})").format(sql.SQL(layer.geometry_type), sql.Literal(layer.srid))
    mercator = sql.SQL("geometry({}, 3857)").format(sql.SQL(layer.geometry_type))
    columns = [
        sql.SQL("id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        *(sql.SQL("{} {}").format(sql.Identifier(a.name), sql.SQL(a.sql_type)) for a in layer.attributes),
        sql.SQL("geom {} NOT NULL").format(geometry),
        sql.SQL("geom_3857 {} GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED").format(mercator),
    ]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(columns)
    )


def add_column(schema: str, table: str, attribute: Attribute) -> sql.Composed:
    return sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.Identifier(attribute.name),
        sql.SQL(attribute.sql_type),
    )


def spatial_indexes(schema: str, table: str) -> list[sql.Composed]:
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} USING gist ({})").format(
            sql.Identifier(identifier("", f"{table}_{column}_gist")),
            sql.Identifier(schema),
            sql.Identifier(table),
            sql.Identifier(column),
        )
        for column in ("geom", "geom_3857")
    ]
