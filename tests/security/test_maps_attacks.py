"""Attacks on maps' data path: department A, holding only its own Secret (tileToken, databaseUrl) and asking
for layers as it may, against department B, on a real PostGIS and a real martin (component_types/maps).

Each attack asserts the refusal and that B still works afterwards (`b_still_works`: B's token draws B's
feature from martin, B's credentials write and read B's table).

    token        A's token on B's private layer; layer names spelled around the catalog's key
    paths        encoded '..', '%2e', double encoding, ';', backslashes, composite sources, overlong,
                 negative and huge z/x/y on martin's tile URL
    injection    every string that reaches SQL: the layer and token query parameters, extra parameters,
                 layer and attribute names of requests
    share        a share withdrawn: A's token and A's open connection lose B's layer at once
    catalog      martin's /catalog, /health, TileJSON and metrics list no department's layer
    database     A's databaseUrl on B's table and the catalog, escalation (roles, functions, files,
                 programs, other databases, other sessions' queries and tokens)
    starvation   A's connections up to the database's limit; A holding a lock on its own table while the
                 operator changes it (the operator's other departments must not wait for A)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import mapbox_vector_tile
import psycopg
import pytest
from cityhub_operator.driver import PermanentBackendError, Request, Result, TemporaryBackendError
from psycopg import sql

from component_types.maps.driver import MapsDriver, create_driver
from component_types.maps.local import LocalMaps
from component_types.maps.naming import DENIED_LAYER

pytestmark = pytest.mark.integration
A, B = "dept-a", "dept-b"
POINT = (116.3975, 39.9087)  # 天安门, CGCS2000
SECRET_LABEL = "b-only-secret-label"


def request(department: str, name: str, **spec: Any) -> Request:
    return Request(
        namespace=department,
        name=name,
        uid=f"uid-{department}-{name}",
        department=department,
        spec={
            "geometryType": "Point",
            "coordinateSystem": "EPSG:4490",
            "attributes": [{"name": "label", "type": "text"}],
            **spec,
        },
        limits={},
    )


def secret_of(result: Result) -> dict[str, str]:
    return {**result.endpoints, **result.credentials}


def table(secret: dict[str, str]) -> sql.Identifier:
    """The layer's table as the Secret names it (schema.table; a namespace holds no '.'), quoted."""
    return sql.Identifier(*secret["table"].split(".", 1))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def raw(base: str, target: str, method: str = "GET", timeout: float = 15) -> Answer:
    """One HTTP/1.1 request with `target` sent byte for byte (no client normalises or encodes it)."""
    url = urlsplit(base)
    head = f"{method} {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
        s.sendall(head.encode("utf-8", "surrogateescape"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in header.lower():
        payload = dechunk(payload)
    return Answer(int(header.split(b" ", 2)[1]), payload)


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out, data = out + rest[:n], rest[n + 2 :]
    return out


def layers_in(answer: Answer) -> dict[str, Any]:
    if answer.status != 200 or not answer.body:
        return {}
    return dict(mapbox_vector_tile.decode(answer.body))


@dataclass
class City:
    maps: LocalMaps
    driver: MapsDriver
    a: dict[str, str]
    b: dict[str, str]
    b_shared: dict[str, str]

    @property
    def martin(self) -> str:
        return self.maps.martin.url

    def ensure(self, req: Request) -> dict[str, str]:
        return secret_of(asyncio.run(self.driver.ensure(req)))

    def tile(self, layer: str, token: str, z: int = 0, x: int = 0, y: int = 0) -> Answer:
        return raw(self.martin, f"/layers/{z}/{x}/{y}?{urlencode({'layer': layer, 'token': token})}")


@pytest.fixture(scope="module")
def city(maps_backend: LocalMaps) -> Iterator[City]:
    driver = create_driver(maps_backend.operator_env())
    c = City(maps_backend, driver, {}, {}, {})
    c.a = c.ensure(request(A, "roads"))
    c.b = c.ensure(request(B, "secret"))
    c.b_shared = c.ensure(request(B, "shared", visibility="Shared", shareWith=[{"department": A}]))
    for secret in (c.b, c.b_shared):
        with psycopg.connect(secret["databaseUrl"]) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (label, geom) VALUES (%s, ST_SetSRID(ST_MakePoint(%s, %s), 4490))"
                ).format(table(secret)),
                (SECRET_LABEL, *POINT),
            )
    yield c


def b_still_works(city: City) -> None:
    """B's token draws B's feature from martin; B's credentials write and read B's table."""
    got = layers_in(city.tile(city.b["layer"], city.b["tileToken"]))
    assert [f["properties"]["label"] for f in got["secret"]["features"]] == [SECRET_LABEL], got
    with psycopg.connect(city.b["databaseUrl"]) as conn:
        b_table = table(city.b)
        conn.execute(
            sql.SQL("INSERT INTO {} (geom) VALUES (ST_SetSRID(ST_MakePoint(1, 1), 4490))").format(b_table)
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE label IS NULL").format(b_table))
        assert conn.execute(sql.SQL("SELECT label FROM {}").format(b_table)).fetchall() == [(SECRET_LABEL,)]


def no_b_data(answer: Answer) -> None:
    """Whatever martin answered, nothing of B's layer is in it."""
    assert SECRET_LABEL.encode() not in answer.body, answer
    assert set(layers_in(answer)) <= {DENIED_LAYER, "roads"}, answer


# -- the tile URL ----------------------------------------------------------------------------------


def test_as_token_never_reads_bs_private_layer(city: City) -> None:
    token = city.a["tileToken"]
    denied = city.tile(city.b["layer"], token)
    (feature,) = layers_in(denied)[DENIED_LAYER]["features"]
    assert feature["properties"]["reason"] == f"department {A} may not read layer {B}.secret"
    # Spelled around the catalog's key; a zero-width space; '*' and '%' as if the key were a pattern.
    for layer in [
        *(f"{B}.secret ", f" {B}.secret", f"{B.upper()}.secret", f"{B}.SECRET", f"{B}%2esecret"),
        *(f"{B}..secret", f"{B}.secret\t", f"{B}/secret", f"{B}.secret.", "dept_b.secret"),
        *(f"{B}.secret\u200b", f"{A}.roads/../{B}.secret", "*", "%", f"{B}.%"),
    ]:
        answer = city.tile(layer, token)
        no_b_data(answer)
        assert answer.status == 200 and DENIED_LAYER in layers_in(answer), (layer, answer)
    # The same parameter twice, in both orders; and an array or object for it.
    for query in (
        f"layer={A}.roads&layer={B}.secret&token={token}",
        f"layer={B}.secret&layer={A}.roads&token={token}",
        f"layer[]={B}.secret&token={token}",
        f"layer[layer]={B}.secret&token={token}",
        f"token={token}&token=&layer={B}.secret",
    ):
        no_b_data(raw(city.martin, f"/layers/0/0/0?{query}"))
    b_still_works(city)


PATHS = [
    *("/layers/0/0/0/..%2f..%2fcatalog", "/layers/%2e%2e/0/0/0", "/layers/0/0/0%2f..%2f..%2f1"),
    *("/%2e%2e/layers/0/0/0", "/layers/%252e%252e/0/0/0", "/layers/..%252f0/0/0", "/layers;layer=x/0/0/0"),
    *("/layers/0;z=1/0/0", "/layers/0/0/0;.pbf", "/layers\\0\\0\\0", "//layers/0/0/0", "/layers/./0/0/0"),
    *("/layers/0/0/0/", "/layers/0/0/0.pbf", "/layers,layers/0/0/0", "/%6cayers/0/0/0", "/layers/-1/0/0"),
    *("/layers/0/-1/0", "/layers/0/0/-1", "/layers/25/0/0", "/layers/99/0/0", "/layers/4294967296/0/0"),
    *("/layers/99999999999999999999999/0/0", "/layers/1/2/0", "/layers/24/16777216/0"),
    *("/layers/24/0/16777216", "/layers/0x1/0/0", "/layers/1e3/0/0", "/layers/%00/0/0", "/layers/0/0/0%00"),
]


def test_path_tricks_on_the_tile_url_never_reach_b_or_break_martin(city: City) -> None:
    query = urlencode({"layer": city.b["layer"], "token": city.a["tileToken"]})
    statuses = {}
    for path in PATHS:
        answer = raw(city.martin, f"{path}?{query}")
        no_b_data(answer)
        statuses[path] = answer.status
        assert answer.status < 500, (path, answer)
    # Negative, overlong and out-of-grid coordinates and zooms: refused or an empty tile, never computed
    # (before the fix x or y beyond the zoom's grid made the tile function raise: martin answered 500
    # quoting the query parameters, token included).
    for path in ("/layers/-1/0/0", "/layers/25/0/0", "/layers/4294967296/0/0"):
        assert statuses[path] == 404, (path, statuses[path])
    for path in ("/layers/1/2/0", "/layers/24/16777216/0", "/layers/24/0/16777216"):
        assert statuses[path] == 204, (path, statuses[path])
    # An overlong query string, token or layer: refused (martin may close the connection) or denied.
    for big in ("x" * 8_000, "x" * 200_000):
        with contextlib.suppress(ConnectionError):
            no_b_data(raw(city.martin, f"/layers/0/0/0?layer={B}.secret&token={big}"))
    b_still_works(city)


INJECTIONS = [
    "' OR '1'='1",
    f"{B}.secret' OR '1'='1",
    f"{B}.secret'; --",
    "x'); DELETE FROM cityhub_maps.tile_tokens; --",
    'x"; DROP TABLE cityhub_maps.layers; --',
    "$fn$; DROP TABLE cityhub_maps.layers; $fn$",
    "\\' OR 1=1 --",
    "%' OR layer_id LIKE '%",
    "x') UNION SELECT * FROM cityhub_maps.layers --",
]


def test_sql_injection_through_every_query_parameter_is_inert(city: City) -> None:
    a_token = city.a["tileToken"]
    for text in INJECTIONS:
        for params in (
            {"layer": text, "token": a_token},
            {"layer": city.b["layer"], "token": text},
            {"layer": city.b["layer"], "token": a_token, text: text},
            {"layer": city.b["layer"], "token": a_token, "z": text, "x": "1", "query_params": text},
        ):
            answer = raw(city.martin, f"/layers/0/0/0?{urlencode(params)}")
            assert answer.status == 200, (params, answer)
            no_b_data(answer)
            assert DENIED_LAYER in layers_in(answer), (params, answer)
    with psycopg.connect(city.maps.postgis.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM cityhub_maps.tile_tokens").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM cityhub_maps.layers").fetchone() == (3,)
    b_still_works(city)


def test_hostile_layer_and_attribute_names_in_requests_are_refused_or_quoted(city: City) -> None:
    """The driver quotes every name it is given (admission refuses them first in a cluster)."""
    for name in ('x"; DROP TABLE cityhub_maps.layers; --', "x'; DROP TABLE cityhub_maps.layers; --"):
        with pytest.raises(PermanentBackendError, match=r"spec\.attributes\[0\]\.name"):
            city.ensure(request(A, "attrs", attributes=[{"name": name}]))
        got = city.ensure(request(A, name))
        with psycopg.connect(got["databaseUrl"]) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table(got)))
        asyncio.run(city.driver.delete(request(A, name)))
    with psycopg.connect(city.maps.postgis.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM cityhub_maps.layers").fetchone() == (3,)
    b_still_works(city)


def test_a_withdrawn_share_closes_bs_layer_to_as_token_and_open_connection(city: City) -> None:
    token, shared = city.a["tileToken"], city.b_shared["layer"]
    assert layers_in(city.tile(shared, token))["shared"]["features"]
    b_table = table(city.b_shared)
    with psycopg.connect(city.a["databaseUrl"], autocommit=True) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(b_table)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("DELETE FROM {}").format(b_table))  # shared means read
        city.ensure(request(B, "shared", visibility="Department"))
        try:
            answer = city.tile(shared, token)
            assert DENIED_LAYER in layers_in(answer) and SECRET_LABEL.encode() not in answer.body
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the connection opened before
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(b_table))
        finally:
            city.ensure(request(B, "shared", visibility="Shared", shareWith=[{"department": A}]))
    b_still_works(city)


def test_martins_catalog_lists_no_departments_layer(city: City) -> None:
    for path in (
        "/catalog",
        "/health",
        "/layers",
        "/layers/",
        "/_/metrics",
        "/metrics",
        "/sprite/x",
        "/font/x/0-255",
        "/style/x",
        "/secret",
        f"/{B}.secret/0/0/0",
        "/cityhub_maps.layer_tile",
    ):
        answer = raw(city.martin, path)
        for text in (B, "dept_b", "tile_tokens", "postgresql://", "password"):
            if text not in path:  # martin's 404 repeats the path asked for
                assert text.encode() not in answer.body, (path, text, answer.body[:300])
    catalog = json.loads(raw(city.martin, "/catalog").body)
    assert set(catalog["tiles"]) == {"layers"}, catalog
    b_still_works(city)


# -- A's database credentials ------------------------------------------------------------------------

REFUSED_SQL = [
    *("SELECT * FROM {b}", "INSERT INTO {b} (geom) VALUES (ST_SetSRID(ST_MakePoint(1, 1), 4490))"),
    *("UPDATE {b} SET label = 'owned'", "DELETE FROM {b}", "TRUNCATE {b}", "COPY {b} TO STDOUT"),
    *("ALTER TABLE {b} ADD COLUMN x int", "DROP TABLE {b}"),
    "CREATE TRIGGER t BEFORE INSERT ON {a} FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger()",
    *("ALTER TABLE {a} OWNER TO dept_dept_a", "SELECT * FROM cityhub_maps.tile_tokens"),
    *("SELECT * FROM cityhub_maps.layers", "SELECT * FROM cityhub_maps.readers"),
    *("UPDATE cityhub_maps.readers SET department = 'dept-a'",),
    *("INSERT INTO cityhub_maps.readers VALUES ('dept-b.secret', 'dept-a')",),
    *('SELECT cityhub_maps.layer_tile(0, 0, 0, \'{{"layer": "dept-b.secret", "token": "x"}}\')',),
    *("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",),
    *("CREATE FUNCTION dept_dept_a.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",),
    *("CREATE TABLE dept_dept_a.extra (id int)", "CREATE TABLE public.extra (id int)"),
    *("CREATE TEMP TABLE t (id int)", "CREATE SCHEMA mine", "CREATE EXTENSION IF NOT EXISTS dblink"),
    *("CREATE ROLE sneaky", "ALTER ROLE dept_dept_a SUPERUSER", "ALTER ROLE dept_dept_a CONNECTION LIMIT -1"),
    *("ALTER ROLE dept_dept_b PASSWORD 'x'", "GRANT cityhub_departments TO dept_dept_b", "SET ROLE postgres"),
    *("SET ROLE cityhub_tiles", "SET ROLE dept_dept_b", "SET SESSION AUTHORIZATION postgres"),
    *("SELECT pg_read_file('/etc/passwd')", "SELECT pg_read_binary_file('postgresql.conf')"),
    *("SELECT pg_ls_dir('.')", "SELECT lo_import('/etc/passwd')", "COPY (SELECT 1) TO PROGRAM 'id'"),
    *("COPY (SELECT 1) TO '/tmp/cityhub-maps-owned'",),
    *("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename <> current_user",),
    *("SELECT pg_reload_conf()", "ALTER SYSTEM SET log_statement = 'all'", "LOAD 'auto_explain'"),
]


REFUSALS = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedObject,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.FeatureNotSupported,
)


def test_as_database_credentials_cannot_reach_b_or_escalate(city: City) -> None:
    names = {"a": city.a["table"], "b": city.b["table"]}
    quoted = {k: ".".join(f'"{p}"' for p in v.split(".")) for k, v in names.items()}
    allowed = []
    with psycopg.connect(city.a["databaseUrl"], autocommit=True) as conn:
        for statement in REFUSED_SQL:
            try:
                conn.execute(statement.format(**quoted))  # type: ignore[arg-type]
                allowed.append(statement)
            except psycopg.Error as e:
                assert isinstance(e, REFUSALS), (statement, e)
        assert allowed == [], allowed
        # GRANT without the right only warns ("no privileges were granted"): B gains nothing.
        conn.execute(sql.SQL("GRANT SELECT ON {} TO dept_dept_b").format(table(city.a)))
        assert conn.execute(
            "SELECT has_table_privilege('dept_dept_b', %s, 'SELECT')", (quoted["a"],)
        ).fetchone() == (False,)
        # Another session's query text (martin's calls carry tokens) is not A's to read.
        assert city.tile(city.b["layer"], city.b["tileToken"]).status == 200
        texts = [
            q
            for (q,) in conn.execute(
                "SELECT query FROM pg_stat_activity WHERE usename IS DISTINCT FROM current_user"
            ).fetchall()
        ]
        assert not any(city.b["tileToken"] in (q or "") or "layer_tile" in (q or "") for q in texts), texts
    # Only the maps database: A's credentials open no other database of the server.
    for database in ("postgres", "template1"):
        url = city.a["databaseUrl"].rsplit("/", 1)[0] + "/" + quote(database)
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(url, connect_timeout=5).close()
    b_still_works(city)


# -- starvation ------------------------------------------------------------------------------------


def test_as_connections_are_capped_and_b_and_martin_still_connect(city: City) -> None:
    opened: list[psycopg.Connection[Any]] = []
    refusal = ""
    try:
        for _ in range(120):  # more than the server's max_connections (100)
            try:
                opened.append(psycopg.connect(city.a["databaseUrl"], connect_timeout=5))
            except psycopg.OperationalError as e:
                refusal = str(e)
                break
        assert "too many connections for role" in refusal, (len(opened), refusal)
        b_still_works(city)
        # martin opens connections of its own as it needs them: tiles for A's and B's tokens alike.
        answers = [city.tile(city.a["layer"], city.a["tileToken"], 3, i % 8, 3) for i in range(30)]
        assert all(a.status in (200, 204) for a in answers)
    finally:
        for conn in opened:
            conn.close()


def test_a_lock_held_by_a_cannot_stall_the_operator_for_other_departments(city: City) -> None:
    """A holds a lock on its own table in an idle transaction and asks for a new attribute: the operator's
    ALTER TABLE must give up (and retry later) instead of waiting forever under its lock of every layer."""
    holder = psycopg.connect(city.a["databaseUrl"])
    try:
        holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(table(city.a))
        )  # stays in the txn
        grown = request(
            A, "roads", attributes=[{"name": "label", "type": "text"}, {"name": "lanes", "type": "integer"}]
        )
        started = time.monotonic()
        with pytest.raises(TemporaryBackendError, match="lock timeout"):
            asyncio.run(city.driver.ensure(grown))
        assert time.monotonic() - started < city.driver.settings.timeout + 5
        # Meanwhile B's layers change and serve.
        city.ensure(request(B, "secret", attributes=[{"name": "label", "type": "text"}], maxZoom=20))
        b_still_works(city)
    finally:
        holder.close()
    city.ensure(grown)  # once A lets go, the retry goes through
    b_still_works(city)


def test_the_stack_of_attacks_left_b_whole(city: City) -> None:
    b_still_works(city)
    log = city.maps.martin.log.read_text(errors="replace")
    for secret in (city.a, city.b):
        assert secret["tileToken"] not in log and secret["password"] not in log
    assert asyncio.run(city.driver.observe(request(B, "secret", maxZoom=20))).in_sync
    shared = layers_in(city.tile(city.b_shared["layer"], city.b_shared["tileToken"]))
    assert [f["properties"]["label"] for f in shared["shared"]["features"]] == [SECRET_LABEL]
