"""The maps catalog in PostGIS: which layers exist, who may read them, and the tile function that checks.

The tile server (martin) connects as `cityhub_tiles`, which may do exactly one thing: EXECUTE
cityhub_maps.layer_tile(z, x, y, query_params). That function (SECURITY DEFINER) looks the request's `token`
up in cityhub_maps.tile_tokens (sha256 only, never the token), finds the `layer` in cityhub_maps.layers and
serves it only to its own department, to the departments listed in cityhub_maps.readers, or to every
department when the layer is Public. Anyone else gets a tile whose only layer, `cityhub_denied`, holds
the reason (a map draws nothing from it). Authorization therefore lives next to the data, in one place, for
every way of reading it; the tile server holds no table privileges and cannot leak a layer by
misconfiguration. Unknown layers and forbidden ones get the same answer, so names do not leak either.
Refusing with an error instead would make martin answer 500 and log the query string, token included.

Past the check, layer_tile calls the layer's own function, cityhub_maps.layer_<md5 of the layer id>(z, x, y),
which cityhub_maps.publish_layer (re)creates from the catalog row whenever the driver changes the layer (and
the bootstrap for every layer): static SQL, so PostgreSQL keeps its plans, where an EXECUTE of the same text
would be planned for every tile. Only the owner may call these functions. Their queries
(FEATURES_QUERY, POINT_CLUSTERS_QUERY, SHAPES_QUERY, rendered by cityhub_maps.layer_query) generalize a
layer below its full_detail_zoom the way production tile pipelines do: points aggregated per grid cell
with a `count`, lines and polygons simplified to a pixel (README.md says what a client receives).

The statements are plain text (no database client): the driver executes them, the local launcher runs them
through psql and the stack puts them into the PostGIS image's init directory. Every name in them is a
constant (naming.py), quoted by `quote_ident` where it is not spelled out; the one value, the tiles role's
password, goes through `quote_literal`. SQL built from request-derived names stays in the driver, composed
with psycopg.sql.

Geometries are stored in the layer's own coordinate system (`geom`, e.g. EPSG:4490) and, as a stored
generated column with its own GiST index, in Web Mercator (`geom_3857`), so tiles never reproject at read
time.
"""

from __future__ import annotations

from component_types.maps.naming import CATALOG_SCHEMA, GROUP_ROLE, TILE_FUNCTION, TILES_ROLE


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL identifier: in double quotes, a double quote inside doubled (as
    psycopg.sql.Identifier renders it)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a PostgreSQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a PostgreSQL string constant: in single quotes, a single quote inside doubled. A backslash
    makes it an escape string (E'…', backslashes doubled), which reads the same whatever
    standard_conforming_strings says."""
    if "\x00" in text:
        raise ValueError("a PostgreSQL string cannot hold a NUL character")
    body = text.replace("'", "''")
    if "\\" in text:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


_CATALOG_TABLES = """
CREATE SCHEMA IF NOT EXISTS cityhub_maps;
REVOKE ALL ON SCHEMA cityhub_maps FROM PUBLIC;
CREATE TABLE IF NOT EXISTS cityhub_maps.layers (
    layer_id      text PRIMARY KEY,
    department    text NOT NULL,
    name          text NOT NULL,
    uid           text NOT NULL,
    schema_name   text NOT NULL,
    table_name    text NOT NULL,
    geometry_type text NOT NULL,
    srid          integer NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '[]',
    visibility    text NOT NULL CHECK (visibility IN ('Department', 'Shared', 'Public')),
    min_zoom      integer NOT NULL CHECK (min_zoom BETWEEN 0 AND 24),
    max_zoom      integer NOT NULL CHECK (max_zoom BETWEEN 0 AND 24),
    CHECK (min_zoom <= max_zoom)
);
-- Added after the first release: catalogs created before get the column with the default.
ALTER TABLE cityhub_maps.layers ADD COLUMN IF NOT EXISTS full_detail_zoom integer NOT NULL DEFAULT 14
    CHECK (full_detail_zoom BETWEEN 0 AND 24);
CREATE TABLE IF NOT EXISTS cityhub_maps.readers (
    layer_id   text NOT NULL REFERENCES cityhub_maps.layers ON DELETE CASCADE,
    department text NOT NULL,
    PRIMARY KEY (layer_id, department)
);
CREATE TABLE IF NOT EXISTS cityhub_maps.tile_tokens (
    department text PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE
);
"""

GRID = 64
"""Below a layer's full_detail_zoom, points are aggregated into GRID by GRID cells per tile (4 pixels of a
256-pixel tile), so a tile holds at most GRID² point features however dense the layer is."""
WORLD = 40075016.685578488
"""Web Mercator's width in metres: one tile at zoom z is WORLD / 2^z wide."""

# The tile queries, as format() templates the tile function fills in for a layer (PostgreSQL's format:
# %1$L the layer's name, %2$I.%3$I its table, %4$s its attribute columns "a, b, "; for point clusters also
# %5$s "CASE WHEN "N" = 1 THEN a END AS a, ", %6$s "min(a) AS a, " and %7$s the point to place, geom_3857 or
# its centroid for MultiPoint). $1, $2, $3 are z, x, y. Every geometry is read from geom_3857 (stored,
# indexed), so nothing is reprojected at read time. The queries' own names are upper case and quoted, so no
# attribute (lower case, CRD and driver) can shadow them.
FEATURES_QUERY = (
    """SELECT ST_AsMVT("Tile", %1$L, 4096, 'geom', 'id') FROM ("""
    " SELECT id, %4$s ST_AsMVTGeom(geom_3857, ST_TileEnvelope($1, $2, $3), 4096, 64, true) AS geom"
    " FROM %2$I.%3$I WHERE geom_3857 && ST_TileEnvelope($1, $2, $3, margin => 64.0 / 4096)"
    """) AS "Tile" WHERE "Tile".geom IS NOT NULL"""
)
"""Full detail: every feature as stored, with its id and attributes."""
POINT_CLUSTERS_QUERY = (
    """SELECT ST_AsMVT("Tile", %1$L, 4096, 'geom', 'id') FROM ("""
    ' SELECT CASE WHEN "N" = 1 THEN id END AS id, %5$s "N" AS count, ST_AsMVTGeom('
    'ST_Point("SX" / "N", "SY" / "N", 3857), ST_TileEnvelope($1, $2, $3), 4096, 64, true) AS geom'
    ' FROM (SELECT min(id) AS id, %6$s count(*) AS "N", sum("PX") AS "SX", sum("PY") AS "SY"'
    ' FROM (SELECT id, %4$s ST_X(%7$s) AS "PX", ST_Y(%7$s) AS "PY" FROM %2$I.%3$I'
    ' WHERE geom_3857 && ST_TileEnvelope($1, $2, $3, margin => 64.0 / 4096) OFFSET 0) AS "Points"'
    f' GROUP BY floor("PX" / ({WORLD} / {GRID} / 2 ^ $1)), floor("PY" / ({WORLD} / {GRID} / 2 ^ $1))'
    ') AS "Cells") AS "Tile" WHERE "Tile".geom IS NOT NULL'
)
"""Generalized points: one feature per grid cell at the mean position of its points with `count`; a point
alone in its cell keeps its id and attributes. The cells are aligned on the world's grid, so neighbouring
tiles agree on them. (OFFSET 0 keeps ST_X/ST_Y computed once per row.)"""
SHAPES_QUERY = (
    """SELECT ST_AsMVT("Tile", %1$L, 4096, 'geom', 'id') FROM ("""
    f" SELECT id, %4$s ST_AsMVTGeom(ST_Simplify(geom_3857, {WORLD} / 256 / 2 ^ $1),"
    " ST_TileEnvelope($1, $2, $3), 4096, 64, true) AS geom"
    " FROM %2$I.%3$I WHERE geom_3857 && ST_TileEnvelope($1, $2, $3, margin => 64.0 / 4096)"
    " AND greatest(ST_XMax(geom_3857) - ST_XMin(geom_3857), ST_YMax(geom_3857) - ST_YMin(geom_3857))"
    f" >= {WORLD} / 256 / 2 ^ $1"
    """) AS "Tile" WHERE "Tile".geom IS NOT NULL"""
)
"""Generalized lines and polygons: simplified to one pixel of a 256-pixel tile; those smaller than a pixel
either way are left out (what a map could not draw)."""

_LAYER_QUERY = f"""
CREATE OR REPLACE FUNCTION cityhub_maps.layer_query(lyr cityhub_maps.layers, generalized boolean)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    columns text;
    firsts text;
    lone text;
BEGIN
    SELECT coalesce(string_agg(format('%I, ', a), '' ORDER BY i), '') INTO columns
      FROM jsonb_array_elements_text(lyr.attributes) WITH ORDINALITY AS e(a, i);
    IF NOT generalized THEN
        RETURN format({quote_literal(FEATURES_QUERY)}, lyr.name, lyr.schema_name, lyr.table_name, columns);
    ELSIF lyr.geometry_type NOT IN ('Point', 'MultiPoint') THEN
        RETURN format({quote_literal(SHAPES_QUERY)}, lyr.name, lyr.schema_name, lyr.table_name, columns);
    END IF;
    -- A lone point's attributes come through an aggregate: min() for every type but boolean (bool_and).
    -- to_regclass: a table dropped behind the operator's back must not fail the bootstrap.
    SELECT coalesce(string_agg(format('%s(%I) AS %I, ',
                   CASE WHEN c.atttypid = 'boolean'::regtype THEN 'bool_and' ELSE 'min' END, a, a),
                   '' ORDER BY i), ''),
           coalesce(string_agg(format('CASE WHEN "N" = 1 THEN %1$I END AS %1$I, ', a), '' ORDER BY i), '')
      INTO firsts, lone
      FROM jsonb_array_elements_text(lyr.attributes) WITH ORDINALITY AS e(a, i)
      LEFT JOIN pg_attribute c
        ON c.attrelid = to_regclass(format('%I.%I', lyr.schema_name, lyr.table_name)) AND c.attname = a;
    RETURN format({quote_literal(POINT_CLUSTERS_QUERY)}, lyr.name, lyr.schema_name, lyr.table_name, columns,
                  lone, firsts,
                  CASE lyr.geometry_type WHEN 'Point' THEN 'geom_3857' ELSE 'ST_Centroid(geom_3857)' END);
END
$fn$;
REVOKE ALL ON FUNCTION cityhub_maps.layer_query(cityhub_maps.layers, boolean) FROM PUBLIC;
"""

_PUBLISH_LAYER = """
CREATE OR REPLACE FUNCTION cityhub_maps.publish_layer(id text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    lyr cityhub_maps.layers%ROWTYPE;
    fn text := 'layer_' || md5(id);
BEGIN
    SELECT * INTO lyr FROM cityhub_maps.layers l WHERE l.layer_id = id;
    IF NOT FOUND THEN
        EXECUTE format('DROP FUNCTION IF EXISTS cityhub_maps.%I(integer, integer, integer)', fn);
        RETURN;
    END IF;
    -- Static SQL, so PL/pgSQL keeps its plans per session (an EXECUTE of the same text in the tile function
    -- would parse and plan it for every tile). Only the owner may call it: the tile function does, after
    -- its access check. enable_sort is off because the kept (generic) plan cannot know how many features
    -- a tile holds: it guesses 10 and would sort a z10 tile's 30,000 points to group them into cells, at
    -- twice the time of hashing them (a tile has at most 64 x 64 cells, so hashing is always right here).
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION cityhub_maps.%I(z integer, x integer, y integer) RETURNS bytea '
        'LANGUAGE plpgsql STABLE PARALLEL SAFE SET enable_sort = off AS %L', fn,
        format('BEGIN IF z < %s THEN RETURN (%s); END IF; RETURN (%s); END', lyr.full_detail_zoom,
               cityhub_maps.layer_query(lyr, true), cityhub_maps.layer_query(lyr, false)));
    EXECUTE format('REVOKE ALL ON FUNCTION cityhub_maps.%I(integer, integer, integer) FROM PUBLIC', fn);
    EXECUTE format('COMMENT ON FUNCTION cityhub_maps.%I(integer, integer, integer) IS %L', fn,
                   'tiles of layer ' || id || ', without access check (cityhub_maps.publish_layer)');
END
$fn$;
REVOKE ALL ON FUNCTION cityhub_maps.publish_layer(text) FROM PUBLIC;
"""

_TILE_FUNCTION = """
CREATE OR REPLACE FUNCTION cityhub_maps.layer_tile(z integer, x integer, y integer, query_params json)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, public
SET jit = off
AS $fn$
DECLARE
    reader text;
    refusal text;
    lyr cityhub_maps.layers%ROWTYPE;
    fn text;
    mvt bytea;
BEGIN
    IF z < 0 OR z > 30 OR x < 0 OR y < 0 OR x >= (1::bigint << z) OR y >= (1::bigint << z) THEN
        -- Outside the zoom's grid: no tile. ST_TileEnvelope would raise, and martin answer 500 quoting
        -- (and logging) the query parameters, token included.
        RETURN ''::bytea;
    END IF;
    -- The access check comes first: nothing of a layer is read before it passed.
    SELECT t.department INTO reader FROM cityhub_maps.tile_tokens t
     WHERE t.token_hash = sha256(convert_to(coalesce(query_params->>'token', ''), 'UTF8'));
    IF reader IS NULL THEN
        refusal := 'the token is not valid: use tileToken from the layer''s Secret';
    ELSE
        SELECT * INTO lyr FROM cityhub_maps.layers l WHERE l.layer_id = query_params->>'layer';
        IF NOT FOUND OR NOT (
            lyr.department = reader
            OR lyr.visibility = 'Public'
            OR (lyr.visibility = 'Shared' AND EXISTS (
                SELECT 1 FROM cityhub_maps.readers r
                 WHERE r.layer_id = lyr.layer_id AND r.department = reader)))
        THEN
            refusal := format('department %s may not read layer %s', reader, query_params->>'layer');
        END IF;
    END IF;
    IF refusal IS NOT NULL THEN
        -- A tile whose only layer, cityhub_denied, says why: an error would make martin answer 500 and log
        -- the query parameters, token included.
        SELECT ST_AsMVT(d, 'cityhub_denied', 4096, 'geom') INTO mvt FROM (
            SELECT refusal AS reason,
                   ST_AsMVTGeom(ST_Centroid(ST_TileEnvelope(z, x, y)), ST_TileEnvelope(z, x, y)) AS geom
        ) AS d;
        RETURN mvt;
    END IF;
    IF z < lyr.min_zoom OR z > lyr.max_zoom THEN
        RETURN ''::bytea;
    END IF;
    -- The layer's own function (publish_layer): below full_detail_zoom the tile is generalized (points
    -- aggregated per grid cell, lines and polygons simplified). A layer not published yet (a catalog row of
    -- an older operator) gets the same query planned here. jit is off: compiling a tile query costs more
    -- than running it.
    fn := 'layer_' || md5(lyr.layer_id);
    IF to_regprocedure(format('cityhub_maps.%I(integer, integer, integer)', fn)) IS NULL THEN
        EXECUTE cityhub_maps.layer_query(lyr, z < lyr.full_detail_zoom) INTO mvt USING z, x, y;
    ELSE
        EXECUTE format('SELECT cityhub_maps.%I($1, $2, $3)', fn) INTO mvt USING z, x, y;
    END IF;
    RETURN coalesce(mvt, ''::bytea);
END
$fn$;
REVOKE ALL ON FUNCTION cityhub_maps.layer_tile(integer, integer, integer, json) FROM PUBLIC;
"""


def bootstrap_statements(tiles_password: str) -> list[str]:
    """Idempotent statements creating the catalog, the tile function and the roles (run as a superuser)."""
    tiles, group = quote_ident(TILES_ROLE), quote_ident(GROUP_ROLE)
    return [
        "CREATE EXTENSION IF NOT EXISTS postgis",
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
        f"{quote_literal(GROUP_ROLE)}) THEN CREATE ROLE {group} NOLOGIN; END IF; END $$",
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
        f"{quote_literal(TILES_ROLE)}) THEN CREATE ROLE {tiles} LOGIN; END IF; END $$",
        f"ALTER ROLE {tiles} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
        f"PASSWORD {quote_literal(tiles_password)}",
        # Departments connect to read and write their layers; nothing else in the database is theirs.
        "DO $$ BEGIN "
        "EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()); "
        f"EXECUTE format('GRANT CONNECT ON DATABASE %I TO {group}, {tiles}', current_database()); "
        "END $$",
        # ... and no other database of the server (PostgreSQL lets PUBLIC connect to every new database).
        "DO $$ DECLARE d text; BEGIN FOR d IN SELECT datname FROM pg_database "
        "WHERE datname <> current_database() AND datallowconn LOOP "
        "EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', d); END LOOP; END $$",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {group}, {tiles}",
        _CATALOG_TABLES,
        _LAYER_QUERY,
        _PUBLISH_LAYER,
        _TILE_FUNCTION,
        f"GRANT USAGE ON SCHEMA {quote_ident(CATALOG_SCHEMA)} TO {tiles}",
        f"GRANT EXECUTE ON FUNCTION {quote_ident(CATALOG_SCHEMA)}.{quote_ident(TILE_FUNCTION)}"
        f"(integer, integer, integer, json) TO {tiles}",
        # Every layer's function again, from this version's queries.
        "SELECT cityhub_maps.publish_layer(layer_id) FROM cityhub_maps.layers",
    ]


def bootstrap_script(tiles_password: str) -> str:
    """The bootstrap as one psql script (the cluster's PostGIS runs it from its init directory, the local
    launcher through psql)."""
    return ";\n".join(bootstrap_statements(tiles_password)) + ";\n"
