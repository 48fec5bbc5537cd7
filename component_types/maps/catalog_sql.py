"""The maps catalog in PostGIS: which layers exist, who may read them, and the one tile function.

The tile server (martin) connects as `cityhub_tiles`, which may do exactly one thing: EXECUTE
cityhub_maps.layer_tile(z, x, y, query_params). That function (SECURITY DEFINER) looks the request's `token`
up in cityhub_maps.tile_tokens (sha256 only, never the token), finds the `layer` in cityhub_maps.layers and
serves it only to its own department, to the departments listed in cityhub_maps.readers, or to every
department when the layer is Public. Anyone else gets a tile whose only layer, `cityhub_denied`, holds
the reason (a map draws nothing from it). Authorization therefore lives next to the data, in one place, for
every way of reading it; the tile server holds no table privileges and cannot leak a layer by
misconfiguration. Unknown layers and forbidden ones get the same answer, so names do not leak either.
Refusing with an error instead would make martin answer 500 and log the query string, token included.

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

_TILE_FUNCTION = """
CREATE OR REPLACE FUNCTION cityhub_maps.layer_tile(z integer, x integer, y integer, query_params json)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $fn$
DECLARE
    reader text;
    refusal text;
    lyr cityhub_maps.layers%ROWTYPE;
    columns text;
    mvt bytea;
BEGIN
    IF z < 0 OR z > 30 OR x < 0 OR y < 0 OR x >= (1::bigint << z) OR y >= (1::bigint << z) THEN
        -- Outside the zoom's grid: no tile. ST_TileEnvelope would raise, and martin answer 500 quoting
        -- (and logging) the query parameters, token included.
        RETURN ''::bytea;
    END IF;
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
    SELECT coalesce(string_agg(format('%I, ', a), ''), '') INTO columns
      FROM jsonb_array_elements_text(lyr.attributes) AS a;
    EXECUTE format(
        'SELECT ST_AsMVT(t, %L, 4096, ''geom'', ''id'') FROM ('
        '  SELECT id, %s ST_AsMVTGeom(geom_3857, ST_TileEnvelope($1, $2, $3), 4096, 64, true) AS geom'
        '    FROM %I.%I WHERE geom_3857 && ST_TileEnvelope($1, $2, $3, margin => 64.0 / 4096)'
        ') AS t WHERE t.geom IS NOT NULL',
        lyr.name, columns, lyr.schema_name, lyr.table_name)
      INTO mvt USING z, x, y;
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
        _TILE_FUNCTION,
        f"GRANT USAGE ON SCHEMA {quote_ident(CATALOG_SCHEMA)} TO {tiles}",
        f"GRANT EXECUTE ON FUNCTION {quote_ident(CATALOG_SCHEMA)}.{quote_ident(TILE_FUNCTION)}"
        f"(integer, integer, integer, json) TO {tiles}",
    ]


def bootstrap_script(tiles_password: str) -> str:
    """The bootstrap as one psql script (the cluster's PostGIS runs it from its init directory, the local
    launcher through psql)."""
    return ";\n".join(bootstrap_statements(tiles_password)) + ";\n"
