"""What each backend holds, asked of the backend itself (never of the operator's status): which of the fuzz's
requests (namespace, name) own an object there.

    messaging   NATS: each department account's streams, its exports `channel/<name>` and the imports
                `<department>/<name>` in readers' accounts (the driver's accounts.lookup, connections.admin)
    sensing     the MQTT gateway's NATS: each department account's streams `<fleet>` and `<fleet>_ingest`, and
                the control account's `fleets` bucket keys `<department>.<fleet>`
    maps        PostGIS: rows of cityhub_maps.layers and tables of the department schemas
    identity    Keycloak: the city realm's clients `<department>.<name>`
    inference   the gateway's route files, the MLServer repository's model folders (both
                naming.object_name(namespace, name)) and the models the server has loaded

Read-only: no helper creates anything it looks for (accounts and buckets are looked up, not made).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import nats.js.errors

from cityhub_api import registry

Key = tuple[str, str]
Found = dict[Key, list[str]]
"""(namespace, name) → the objects found for it, e.g. ["stream z00012-feed"]."""


def _driver(type_name: str, env: Mapping[str, str]) -> Any:
    return registry.component_type(type_name).load(registry.DRIVER).create_driver(env)


def _add(found: Found, key: Key, what: str) -> None:
    found.setdefault(key, []).append(what)


async def _nats_streams(driver: Any, namespaces: Iterable[str], found: Found, suffix: str = "") -> None:
    """Streams of each department account that exists (`suffix`: a second stream per request to fold)."""
    for ns in namespaces:
        claims = await driver.accounts.lookup(ns)
        if claims is None:
            continue
        nats_claims = claims.get("nats") or {}
        for export in nats_claims.get("exports") or []:
            name = str(export.get("name", ""))
            if name.startswith("channel/"):
                _add(found, (ns, name.removeprefix("channel/")), f"export {name} in {ns}'s account")
        for imported in nats_claims.get("imports") or []:
            owner, _, name = str(imported.get("name", "")).partition("/")
            if owner and name:
                _add(found, (owner, name), f"import {owner}/{name} in {ns}'s account")
        js = (await driver.connections.admin(ns)).jetstream(timeout=10)
        for info in await js.streams_info():
            stream = info.config.name or ""
            name = stream.removesuffix(suffix) if suffix and stream.endswith(suffix) else stream
            _add(found, (ns, name), f"stream {stream}")


async def messaging(env: Mapping[str, str], namespaces: list[str]) -> Found:
    found: Found = {}
    driver = _driver("messaging", env)
    try:
        await _nats_streams(driver, namespaces, found)
    finally:
        await driver.close()
    return found


async def sensing(env: Mapping[str, str], namespaces: list[str]) -> Found:
    from component_types.sensing import naming

    found: Found = {}
    driver = _driver("sensing", env)
    try:
        await _nats_streams(driver, namespaces, found, suffix="_ingest")
        if await driver.accounts.lookup(naming.CONTROL_ACCOUNT) is not None:
            js = (await driver.connections.admin(naming.CONTROL_ACCOUNT)).jetstream(timeout=10)
            try:
                keys = await (await js.key_value(naming.FLEETS_BUCKET)).keys()
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
                keys = []
            for key in keys:
                ns, _, fleet = key.partition(".")
                _add(found, (ns, fleet), f"fleets KV key {key}")
    finally:
        await driver.close()
    return found


async def identity(env: Mapping[str, str], namespaces: list[str]) -> Found:
    found: Found = {}
    driver = _driver("identity", env)
    try:
        realm = f"/realms/{driver.settings.realm}"
        first = 0
        while True:
            page = (
                await driver.admin.get(f"{realm}/clients", params={"first": str(first), "max": "200"}) or []
            )
            for c in page:
                ns, _, name = str(c.get("clientId", "")).partition(".")
                if ns in namespaces and name:
                    _add(found, (ns, name), f"Keycloak client {c['clientId']}")
            if len(page) < 200:
                break
            first += 200
    finally:
        await driver.close()
    return found


def maps(env: Mapping[str, str], namespaces: list[str], candidates: Iterable[Key]) -> Found:
    import psycopg

    from component_types.maps import naming

    found: Found = {}
    dsn = Path(env["CITYHUB_MAPS_DSN_FILE"]).read_text(encoding="utf-8").strip()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for department, name in conn.execute("SELECT department, name FROM cityhub_maps.layers"):
            _add(found, (str(department), str(name)), f"catalog row {department}.{name}")
        tables = set(
            conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname LIKE 'dept%'")
        )
    for ns, name in candidates:
        if (naming.schema_name(ns), naming.table_name(name)) in tables:
            _add(found, (ns, name), f"table {naming.schema_name(ns)}.{naming.table_name(name)}")
    return found


def inference(env: Mapping[str, str], namespaces: list[str], candidates: Iterable[Key]) -> Found:
    from component_types.inference import naming
    from component_types.inference.routes import RouteFiles

    found: Found = {}
    routes = RouteFiles(Path(env["CITYHUB_INFERENCE_ROUTES_DIR"]))
    for file, route in routes.all().items():
        _add(found, (route.department, route.name), f"route {file}")
    repository = Path(env["CITYHUB_INFERENCE_REPOSITORY_DIR"])
    folders = {p.name for p in repository.iterdir() if p.is_dir()} if repository.is_dir() else set()
    request = urllib.request.Request(
        env["CITYHUB_INFERENCE_SERVER_URL"].rstrip("/") + "/v2/repository/index", data=b"{}", method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as resp:
        loaded = {m["name"] for m in json.loads(resp.read()) if m.get("state") == "READY"}
    for ns, name in candidates:
        model = naming.object_name(ns, name)
        if model in folders:
            _add(found, (ns, name), f"repository folder {model}")
        if model in loaded:
            _add(found, (ns, name), f"model {model} loaded on MLServer")
    return found


def inventory(
    env: Mapping[str, str], namespaces: list[str], candidates: dict[str, list[Key]]
) -> dict[str, Found]:
    """Component type → its backend's objects of the fuzz's requests; `candidates`: (namespace, name) of the
    requests of each type (the names maps and inference derive their objects' names from)."""
    runs: dict[str, Callable[[], Awaitable[Found]]] = {
        "messaging": lambda: messaging(env, namespaces),
        "sensing": lambda: sensing(env, namespaces),
        "identity": lambda: identity(env, namespaces),
    }
    out = {name: asyncio.run(run()) for name, run in runs.items()}
    out["maps"] = maps(env, namespaces, candidates.get("maps", []))
    out["inference"] = inference(env, namespaces, candidates.get("inference", []))
    return out
