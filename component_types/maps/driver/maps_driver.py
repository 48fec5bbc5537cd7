"""MapsDriver: a MapLayer's table, role, grants and catalog rows in PostGIS (ensure, observe, delete), and
its probe. Every identifier derived from a request goes through psycopg.sql.Identifier, every value through
sql.Literal or a parameter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from cityhub_operator.driver import Observation, PermanentBackendError, Request, Result
from psycopg import sql

from component_types.maps.catalog_sql import quote_ident
from component_types.maps.credentials import Credentials, token_hash
from component_types.maps.driver import layer
from component_types.maps.driver.layer import LayerSpec
from component_types.maps.driver.postgis import Connection, Postgis
from component_types.maps.driver.probe import probe_tile
from component_types.maps.driver.settings import MapsSettings
from component_types.maps.naming import (
    CATALOG_SCHEMA,
    GROUP_ROLE,
    TILE_SOURCE,
    layer_function,
    layer_id,
    role_name,
    schema_name,
    table_name,
)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


class MapsDriver:
    """The maps backend: PostGIS (tables, roles, catalog) and martin (tiles through the catalog function)."""

    def __init__(self, settings: MapsSettings) -> None:
        self.settings = settings
        self.credentials = Credentials(settings.secret)
        self.postgis = Postgis(settings, self.credentials.tiles_password())

    # -- ensure ------------------------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        spec = layer.parse(request.spec, request.department)
        d, schema, table = request.department, schema_name(request.department), table_name(request.name)
        async with self.postgis.transaction(f"layer {request.key}") as conn:
            await self._ensure_role(conn, d, login=True)
            for reader in spec.readers:
                await self._ensure_role(conn, reader, login=None)
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_ident(schema)))
            await conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_ident(schema), _ident(role_name(d)))
            )
            await self._ensure_table(conn, request, spec, schema, table)
            await self._ensure_grants(conn, request, spec, schema, table)
            await self._ensure_catalog(conn, request, spec, schema, table)
        return self._result(request, schema, table)

    async def _ensure_role(self, conn: Connection, department: str, *, login: bool | None) -> None:
        """The department's role; login=None creates it NOLOGIN if missing and leaves an existing one."""
        role = role_name(department)
        cur = await conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,))
        row = await cur.fetchone()
        if row is None:
            await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(_ident(role)))
        await conn.execute(sql.SQL("GRANT {} TO {}").format(_ident(GROUP_ROLE), _ident(role)))
        if login:
            password = self.credentials.department_password(department)
            await conn.execute(
                sql.SQL(
                    "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT {} PASSWORD {}"
                ).format(
                    _ident(role), sql.Literal(self.settings.department_connections), sql.Literal(password)
                )
            )

    async def _columns(self, conn: Connection, schema: str, table: str) -> dict[str, str]:
        cur = await conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (schema, table),
        )
        return {name: kind for name, kind in await cur.fetchall()}

    async def _ensure_table(
        self, conn: Connection, request: Request, spec: LayerSpec, schema: str, table: str
    ) -> None:
        existing = await self._columns(conn, schema, table)
        if existing:
            want = f"geometry({spec.geometry_type},{spec.srid})".lower()
            have = existing.get("geom", "").lower()
            if have != want:
                raise PermanentBackendError(
                    "ImmutableField",
                    f"layer {request.name} exists with geometry {existing.get('geom')}; "
                    "spec.geometryType and spec.coordinateSystem cannot change: create a new layer and copy "
                    "the features",
                )
            for attribute in spec.attributes:
                have_type = existing.get(attribute.name)
                if have_type is not None and have_type != attribute.sql_type:
                    raise PermanentBackendError(
                        "ImmutableField",
                        f"attribute {attribute.name} of layer {request.name} is {have_type}, not "
                        f"{attribute.sql_type}: a type cannot change; add an attribute with a new name",
                    )
                if have_type is None:
                    await conn.execute(layer.add_column(schema, table, attribute))
        else:
            await conn.execute(layer.create_table(schema, table, spec))
        for statement in layer.spatial_indexes(schema, table):
            await conn.execute(statement)

    async def _ensure_grants(
        self, conn: Connection, request: Request, spec: LayerSpec, schema: str, table: str
    ) -> None:
        target = sql.SQL("{}.{}").format(_ident(schema), _ident(table))
        owner = _ident(role_name(request.department))
        await conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(target, owner))
        # Readers: revoke whoever holds SELECT and is no longer granted, then grant the declared ones.
        cur = await conn.execute(
            "SELECT grantee FROM information_schema.role_table_grants "
            "WHERE table_schema = %s AND table_name = %s AND privilege_type = 'SELECT'",
            (schema, table),
        )
        holders = {r for (r,) in await cur.fetchall()}
        want = {role_name(r) for r in spec.readers}
        if spec.visibility == "Public":
            want.add(GROUP_ROLE)
        for stale in sorted(holders - want - {role_name(request.department)}):
            if stale == GROUP_ROLE or stale.startswith("dept_"):
                await conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(target, _ident(stale)))
        for reader in sorted(want):
            await conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_ident(schema), _ident(reader))
            )
            await conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, _ident(reader)))

    async def _ensure_catalog(
        self, conn: Connection, request: Request, spec: LayerSpec, schema: str, table: str
    ) -> None:
        lid = layer_id(request.department, request.name)
        await conn.execute(
            "INSERT INTO cityhub_maps.layers (layer_id, department, name, uid, schema_name, table_name, "
            "geometry_type, srid, attributes, visibility, min_zoom, max_zoom, full_detail_zoom) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (layer_id) DO UPDATE SET uid = EXCLUDED.uid, attributes = EXCLUDED.attributes, "
            "visibility = EXCLUDED.visibility, min_zoom = EXCLUDED.min_zoom, max_zoom = EXCLUDED.max_zoom, "
            "full_detail_zoom = EXCLUDED.full_detail_zoom, geometry_type = EXCLUDED.geometry_type, "
            "srid = EXCLUDED.srid",
            (
                lid,
                request.department,
                request.name,
                request.uid,
                schema,
                table,
                spec.geometry_type,
                spec.srid,
                json.dumps([a.name for a in spec.attributes]),
                spec.visibility,
                spec.min_zoom,
                spec.max_zoom,
                spec.full_detail_zoom,
            ),
        )
        await conn.execute(
            "DELETE FROM cityhub_maps.readers WHERE layer_id = %s AND NOT department = ANY(%s)",
            (lid, list(spec.readers)),
        )
        for reader in spec.readers:
            await conn.execute(
                "INSERT INTO cityhub_maps.readers (layer_id, department) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (lid, reader),
            )
        # The layer's own tile function, from the row just written (catalog_sql.py).
        await conn.execute("SELECT cityhub_maps.publish_layer(%s)", (lid,))
        await conn.execute(
            "INSERT INTO cityhub_maps.tile_tokens (department, token_hash) VALUES (%s, %s) "
            "ON CONFLICT (department) DO UPDATE SET token_hash = EXCLUDED.token_hash",
            (request.department, token_hash(self.credentials.tile_token(request.department))),
        )

    def _result(self, request: Request, schema: str, table: str) -> Result:
        d = request.department
        role, password = role_name(d), self.credentials.department_password(d)
        lid = layer_id(d, request.name)
        template = f"{self.settings.tile_url}/{TILE_SOURCE}/{{z}}/{{x}}/{{y}}?{urlencode({'layer': lid})}"
        token = self.credentials.tile_token(d)
        host, _, port = self.settings.public_host.rpartition(":")
        return Result(
            endpoints={
                "host": host,
                "port": port,
                "database": self.settings.database,
                "table": f"{schema}.{table}",
                "layer": lid,
                "tileUrl": template,
            },
            credentials={
                "username": role,
                "password": password,
                "databaseUrl": (
                    f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}"
                    f"@{self.settings.public_host}/{quote(self.settings.database, safe='')}"
                ),
                "tileToken": token,
                "tileUrlWithToken": f"{template}&{urlencode({'token': token})}",
            },
            backend={"table": f"{schema}.{table}", "role": role, "layer": lid},
        )

    # -- observe -----------------------------------------------------------------------------------

    async def observe(self, request: Request) -> Observation:
        spec = layer.parse(request.spec, request.department)
        d, schema, table = request.department, schema_name(request.department), table_name(request.name)
        role, lid = role_name(d), layer_id(d, request.name)
        drift: list[str] = []
        async with self.postgis.transaction(f"observing layer {request.key}") as conn:
            columns = await self._columns(conn, schema, table)
            if not columns:
                drift.append(f"table {schema}.{table} is missing")
            else:
                missing = [a.name for a in spec.attributes if a.name not in columns]
                if missing:
                    drift.append(f"table {schema}.{table} lacks attributes {', '.join(missing)}")
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
                    "AND indexdef LIKE '%%USING gist%%'",
                    (schema, table),
                )
                if ((await cur.fetchone()) or (0,))[0] < 2:
                    drift.append(f"table {schema}.{table} lacks its spatial indexes")
                await self._observe_grants(conn, spec, role, schema, table, drift)
            cur = await conn.execute(
                "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)
            )
            row = await cur.fetchone()
            if not row or not row[0]:
                drift.append(f"role {role} is missing or cannot log in")
            elif row[1] != self.settings.department_connections:
                drift.append(
                    f"role {role} may hold {row[1]} connections, not {self.settings.department_connections}"
                )
            cur = await conn.execute(
                "SELECT visibility, min_zoom, max_zoom, full_detail_zoom, attributes "
                "FROM cityhub_maps.layers WHERE layer_id = %s",
                (lid,),
            )
            row = await cur.fetchone()
            want = (
                spec.visibility,
                spec.min_zoom,
                spec.max_zoom,
                spec.full_detail_zoom,
                [a.name for a in spec.attributes],
            )
            if row is None:
                drift.append(f"layer {lid} is not published in the tile catalog")
            elif tuple(row) != want:
                drift.append(
                    f"layer {lid} is published with visibility/zoom/full detail/attributes {tuple(row)}, "
                    f"not {want}"
                )
            cur = await conn.execute(
                "SELECT to_regprocedure(%s) IS NOT NULL",
                (f"{CATALOG_SCHEMA}.{layer_function(lid)}(integer, integer, integer)",),
            )
            if row is not None and not ((await cur.fetchone()) or (False,))[0]:
                drift.append(f"layer {lid} has no tile function")
            cur = await conn.execute(
                "SELECT department FROM cityhub_maps.readers WHERE layer_id = %s ORDER BY 1", (lid,)
            )
            readers = tuple(r for (r,) in await cur.fetchall())
            if readers != spec.readers:
                drift.append(f"layer {lid} is shared with {list(readers)}, not {list(spec.readers)}")
            cur = await conn.execute(
                "SELECT token_hash FROM cityhub_maps.tile_tokens WHERE department = %s", (d,)
            )
            row = await cur.fetchone()
            if row is None or bytes(row[0]) != token_hash(self.credentials.tile_token(d)):
                drift.append(f"the tile token of department {d} is missing")
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def _observe_grants(
        self,
        conn: Connection,
        spec: LayerSpec,
        role: str,
        schema: str,
        table: str,
        drift: list[str],
    ) -> None:
        target = f"{quote_ident(schema)}.{quote_ident(table)}"  # a regclass text
        checks: list[tuple[str, str, bool]] = [(role, "INSERT", True), (role, "SELECT", True)]
        checks += [(role_name(r), "SELECT", True) for r in spec.readers]
        checks.append((GROUP_ROLE, "SELECT", spec.visibility == "Public"))
        for grantee, privilege, want in checks:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) AND has_table_privilege(%s, %s, %s)",
                (grantee, grantee, target, privilege),
            )
            row = await cur.fetchone()
            have = bool(row and row[0])
            if have != want:
                drift.append(f"{grantee} {'lacks' if want else 'holds'} {privilege} on {schema}.{table}")

    # -- delete ------------------------------------------------------------------------------------

    async def delete(self, request: Request) -> None:
        d, schema, table = request.department, schema_name(request.department), table_name(request.name)
        drop_data = (request.spec or {}).get("dataDeletion") == "Drop"
        lid = layer_id(d, request.name)
        async with self.postgis.transaction(f"deleting layer {request.key}") as conn:
            cur = await conn.execute("SELECT uid FROM cityhub_maps.layers WHERE layer_id = %s", (lid,))
            row = await cur.fetchone()
            if row is not None and row[0] != request.uid:
                # Another request of the same name owns the layer now: it is not this request's to delete.
                return
            target = sql.SQL("{}.{}").format(_ident(schema), _ident(table))
            if await self._columns(conn, schema, table):
                cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
                features = ((await cur.fetchone()) or (0,))[0]
                if features and not drop_data:
                    raise PermanentBackendError(
                        "LayerHasData",
                        f"layer {request.name} holds {features} features and is not dropped: set "
                        "spec.dataDeletion to Drop to delete them, or spec.deletionPolicy to Orphan to keep "
                        "the table",
                    )
                await conn.execute(sql.SQL("DROP TABLE {}").format(target))
            await conn.execute("DELETE FROM cityhub_maps.layers WHERE layer_id = %s", (lid,))
            await conn.execute("SELECT cityhub_maps.publish_layer(%s)", (lid,))  # drops its tile function
            cur = await conn.execute("SELECT count(*) FROM cityhub_maps.layers WHERE department = %s", (d,))
            if ((await cur.fetchone()) or (0,))[0] == 0:
                await self._retire_department(conn, d, schema)

    async def _retire_department(self, conn: Connection, department: str, schema: str) -> None:
        """The department's last layer is gone: its credentials stop working; its role stays for grants."""
        role = role_name(department)
        await conn.execute("DELETE FROM cityhub_maps.tile_tokens WHERE department = %s", (department,))
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if await cur.fetchone():
            await conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(_ident(role)))
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
        cur = await conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s",
            (schema,),
        )
        if ((await cur.fetchone()) or (0,))[0] == 0:
            # Empty only: tables kept by deletionPolicy Orphan keep their schema.
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(_ident(schema)))

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""

    # -- probe -------------------------------------------------------------------------------------

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """Fetch tile 0/0/0 of the layer with the department's token, as a map client would. Where to connect
        and which layer come from the operator's settings and the request, only the token from the Secret."""
        lid = layer_id(request.department, request.name)
        await probe_tile(self.settings.probe_url, lid, secret.get("tileToken", ""), self.settings.timeout)
