"""What each backend holds, asked of the backend itself (never the operator's status), and whether every
Secret's credentials work, asked through each driver's own `probe(request, secret)` (bench/chaos.py).

Each reader returns the backend objects of the run's departments, each with the request it belongs to
(namespace, name) and, where the backend records it, the request uid it was made for:

    messaging   nats-server: streams of each department account (metadata cityhub.io/uid), its exports
                `channel/<name>`, and imports `<department>/<name>` in the readers' accounts (driver.accounts,
                driver.connections: the driver's own Accounts/Connections API)
    sensing     the MQTT gateway: streams `<fleet>` and `<fleet>_ingest` of each department account, and the
                relay's rules, key `<department>.<fleet>` of the control account's `fleets` bucket (its uid)
    maps        PostGIS: rows of cityhub_maps.layers (uid) and tables of the departments' schemas
    identity    Keycloak: clients `<department>.<name>` of the city realm (attribute cityhub.uid)
    inference   the gateway's route files (uid), the MLServer repository's model folders (owner, uid in
                model-settings.json) and the models the server reports READY in its repository index

Read-only: accounts and buckets are looked up, never created.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.js.errors

from cityhub_api import registry

Key = tuple[str, str]


@dataclass(frozen=True)
class BackendObject:
    type_name: str
    key: Key
    """(namespace, name) of the request it belongs to; ("?", …) when nothing tells."""
    what: str
    """Its kind, e.g. "stream", "import in chaos-d03"; one Ready request has at most one of each."""
    ident: str
    """Its name in the backend."""
    uid: str = ""
    """The request uid it was made for, where the backend records it."""


def driver_for(type_name: str, env: Mapping[str, str]) -> Any:
    return registry.component_type(type_name).load(registry.DRIVER).create_driver(env)


async def _nats(driver: Any, type_name: str, namespaces: Iterable[str], out: list[BackendObject]) -> None:
    for ns in namespaces:
        claims = await driver.accounts.lookup(ns)
        if claims is None:
            continue
        nats_claims = claims.get("nats") or {}
        for export in nats_claims.get("exports") or []:
            name = str(export.get("name", ""))
            if name.startswith("channel/"):
                out.append(BackendObject(type_name, (ns, name.removeprefix("channel/")), "export", name))
        for imported in nats_claims.get("imports") or []:
            owner, _, name = str(imported.get("name", "")).partition("/")
            out.append(BackendObject(type_name, (owner, name), f"import in {ns}", f"{ns}:{owner}/{name}"))
        js = (await driver.connections.admin(ns)).jetstream(timeout=20)
        for info in await js.streams_info():
            stream = info.config.name or ""
            if stream.startswith("$"):
                continue  # the server's own (the MQTT gateway's $MQTT_* session and retained streams)
            uid = (info.config.metadata or {}).get("cityhub.io/uid", "")
            if type_name == "sensing" and stream.endswith("_ingest"):
                out.append(
                    BackendObject(type_name, (ns, stream.removesuffix("_ingest")), "ingest", stream, uid)
                )
            else:
                out.append(BackendObject(type_name, (ns, stream), "stream", stream, uid))


async def messaging(env: Mapping[str, str], namespaces: list[str]) -> list[BackendObject]:
    out: list[BackendObject] = []
    driver = driver_for("messaging", env)
    try:
        await _nats(driver, "messaging", namespaces, out)
    finally:
        await driver.close()
    return out


async def sensing(env: Mapping[str, str], namespaces: list[str]) -> list[BackendObject]:
    from component_types.sensing import naming

    out: list[BackendObject] = []
    driver = driver_for("sensing", env)
    try:
        await _nats(driver, "sensing", namespaces, out)
        if await driver.accounts.lookup(naming.CONTROL_ACCOUNT) is not None:
            js = (await driver.connections.admin(naming.CONTROL_ACCOUNT)).jetstream(timeout=20)
            try:
                kv = await js.key_value(naming.FLEETS_BUCKET)
                keys = await kv.keys()
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
                keys = []
            for key in keys:
                ns, _, fleet = key.partition(".")
                entry = await kv.get(key)
                uid = str(json.loads(entry.value or b"{}").get("uid", ""))
                out.append(BackendObject("sensing", (ns, fleet), "rules", key, uid))
    finally:
        await driver.close()
    return out


async def identity(env: Mapping[str, str], namespaces: list[str]) -> list[BackendObject]:
    from component_types.identity.driver import model

    out: list[BackendObject] = []
    driver = driver_for("identity", env)
    try:
        realm, first = f"/realms/{driver.settings.realm}", 0
        while True:
            page = (
                await driver.admin.get(f"{realm}/clients", params={"first": str(first), "max": "500"}) or []
            )
            for c in page:
                ns, _, name = str(c.get("clientId", "")).partition(".")
                if ns in namespaces:
                    uid = ((c.get("attributes") or {}).get(model.ATTR_UID)) or ""
                    out.append(BackendObject("identity", (ns, name), "client", c["clientId"], uid))
            if len(page) < 500:
                break
            first += 500
    finally:
        await driver.close()
    return out


def maps(env: Mapping[str, str], namespaces: list[str], candidates: Iterable[Key]) -> list[BackendObject]:
    import psycopg

    from component_types.maps import naming

    out: list[BackendObject] = []
    dsn = Path(env["CITYHUB_MAPS_DSN_FILE"]).read_text(encoding="utf-8").strip()
    by_table = {(naming.schema_name(ns), naming.table_name(n)): (ns, n) for ns, n in candidates}
    schemas = {naming.schema_name(ns) for ns in namespaces}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=20) as conn:
        for dept, name, uid in conn.execute("SELECT department, name, uid FROM cityhub_maps.layers"):
            out.append(
                BackendObject("maps", (str(dept), str(name)), "catalog row", f"{dept}.{name}", str(uid))
            )
        for schema, table in conn.execute("SELECT schemaname, tablename FROM pg_tables"):
            if schema in schemas:
                key = by_table.get((schema, table), ("?", f"{schema}.{table}"))
                out.append(BackendObject("maps", key, "table", f"{schema}.{table}"))
    return out


def inference(env: Mapping[str, str], candidates: Iterable[Key]) -> list[BackendObject]:
    from component_types.inference import naming
    from component_types.inference.driver.embedded import recorded
    from component_types.inference.routes import RouteFiles

    out: list[BackendObject] = []
    by_model = {naming.object_name(ns, n): (ns, n) for ns, n in candidates}
    for file, route in RouteFiles(Path(env["CITYHUB_INFERENCE_ROUTES_DIR"])).all().items():
        out.append(BackendObject("inference", (route.department, route.name), "route", file, route.uid))
    repository = Path(env["CITYHUB_INFERENCE_REPOSITORY_DIR"])
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else []:
        mine = recorded(folder) or {}
        ns, _, name = str(mine.get("owner", "")).partition("/")
        key = (ns, name) if name else by_model.get(folder.name, ("?", folder.name))
        out.append(BackendObject("inference", key, "model folder", folder.name, str(mine.get("uid", ""))))
    index = urllib.request.Request(
        env["CITYHUB_INFERENCE_SERVER_URL"].rstrip("/") + "/v2/repository/index", data=b"{}", method="POST"
    )
    index.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(index, timeout=60) as resp:
        models = json.loads(resp.read())
    for m in models:
        if m.get("state") == "READY":
            key = by_model.get(m["name"], ("?", m["name"]))
            out.append(BackendObject("inference", key, "loaded model", m["name"]))
    return out


def inventory(
    env: Mapping[str, str], namespaces: list[str], candidates: Mapping[str, list[Key]]
) -> dict[str, list[BackendObject]]:
    """Component type → the objects its backend holds for the run's departments; `candidates`: every
    (namespace, name) the run ever requested, per type (maps and inference derive names from them)."""
    out = {
        "messaging": asyncio.run(messaging(env, namespaces)),
        "sensing": asyncio.run(sensing(env, namespaces)),
        "identity": asyncio.run(identity(env, namespaces)),
    }
    out["maps"] = maps(env, namespaces, candidates.get("maps", []))
    out["inference"] = inference(env, candidates.get("inference", []))
    return out


def expected(type_name: str, spec: Mapping[str, Any]) -> dict[str, int]:
    """The objects one Ready request of `type_name` must have (kind → how many), `spec` being its spec."""
    if type_name == "messaging":
        shares = {str(s["department"]) for s in spec.get("shareWith") or []}
        return {"stream": 1, **({"export": 1} if shares else {}), **{f"import in {d}": 1 for d in shares}}
    return {
        "sensing": {"stream": 1, "ingest": 1, "rules": 1},
        "maps": {"catalog row": 1, "table": 1},
        "identity": {"client": 1},
        "inference": {"route": 1, "model folder": 1, "loaded model": 1},
    }[type_name]


# -- probes: every Secret's credentials, used the way the department uses them --------------------------


@dataclass(frozen=True)
class ProbeResult:
    type_name: str
    key: Key
    ok: bool
    detail: str = ""


async def _probe_type(
    type_name: str,
    env: Mapping[str, str],
    items: list[tuple[Any, Mapping[str, str]]],
    concurrency: int,
) -> list[ProbeResult]:
    from cityhub_operator.driver import Prober

    driver = driver_for(type_name, env)
    gate = asyncio.Semaphore(concurrency)
    try:
        if not isinstance(driver, Prober):
            return [
                ProbeResult(type_name, (r.namespace, r.name), False, "driver has no probe") for r, _ in items
            ]

        async def one(request: Any, secret: Mapping[str, str]) -> ProbeResult:
            key = (request.namespace, request.name)
            async with gate:
                for attempt in range(3):  # a probe that meets a transient hiccup gets two more tries
                    try:
                        await asyncio.wait_for(driver.probe(request, secret), 60)
                        return ProbeResult(type_name, key, True)
                    except Exception as e:  # every failure is reported, whatever its type
                        detail = f"{type(e).__name__}: {e}"[:300]
                        if attempt < 2:
                            await asyncio.sleep(2)
                return ProbeResult(type_name, key, False, detail)

        return list(await asyncio.gather(*(one(r, s) for r, s in items)))
    finally:
        await driver.close()


def probe_all(
    env: Mapping[str, str], work: Mapping[str, list[tuple[Any, Mapping[str, str]]]], concurrency: int = 8
) -> list[ProbeResult]:
    """Probe every (Request, Secret data) of each type with its driver (built from the operator's env)."""
    out: list[ProbeResult] = []
    for type_name, items in work.items():
        if items:
            out += asyncio.run(_probe_type(type_name, env, items, concurrency))
    return out
