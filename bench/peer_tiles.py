"""Tiles: cityhub's access-checked tile function versus raw martin on the same PostGIS tables (issue 17, 3).

    .venv/bin/python bench/peer_tiles.py                                # 100k points, 10k polygons
    .venv/bin/python bench/peer_tiles.py --json bench/results-peer-tiles.json
    .venv/bin/python bench/peer_tiles.py --quick                        # the short CI version

One PostGIS (component_types/maps/local.py), two martins (both 1.14.0, pool 20, no tile cache):

    cityhub        cityhub's martin: /layers/{z}/{x}/{y}?layer=…&token=…; the tile function checks the
                   token, the layer and its readers, then calls the layer's own function
                   (component_types/maps/catalog_sql.py)
    raw same SQL   a second martin serving a copy of that layer function as its own function source,
                   without the check: the ratio cityhub / raw is what the check costs
    raw table      the second martin serving the table itself (martin's table source: every feature at every
                   zoom, unthinned), for reference

Data (bench/peer_tiles_setup.py): a Point layer of 100k points and a Polygon layer of 10k polygons over
central Beijing, made through the maps driver and loaded with the department's credentials. For z10, z12 and
z14, the `--tiles` tiles around the centre:

    cold   the first fetch of each tile after PostGIS and both martins restarted (fresh pools, empty shared
           buffers, no cached plans; the OS page cache is shared and left alone); each round restarts and
           lets one side fetch everything, the sides taking turns
    warm   the same tiles again, `--warm` times each, the three sides interleaved (the order rotating per tile
           and round) over keep-alive connections, so the machine's noise falls on all of them alike
    database   the z14 centre tile through PostgreSQL alone (psycopg, prepared statements, interleaved):
               the check's own cost, without martin's and HTTP's

and prints Markdown tables (p50, p95, tile sizes, the ratio) and the issue's goals met or missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import mapbox_vector_tile
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings, as the other benches do

from bench_maps import tiles_for
from peer_tiles_setup import RAW_ROLE, RAW_SCHEMA, Layer, RawMartin, create_layers, load, prepare_raw

from component_types.maps.local import LocalMaps, scratch_directory
from component_types.maps.naming import DENIED_LAYER, TILE_SOURCE

SECRET = b"maps-peer-benchmark-secret-0123456789-abcdefghijkl"
SIDES = ("cityhub", "raw_same_sql", "raw_table")
LABELS = {"cityhub": "cityhub", "raw_same_sql": "raw martin, same SQL", "raw_table": "raw martin, table"}
GOAL_RATIO, GOAL_Z10_P95_MS, GOAL_TILE_KIB = 1.2, 50.0, 500.0

Key = tuple[str, str, int]  # side, layer, zoom


class Client:
    """Keep-alive HTTP connections to both martins and the path of every side's tile."""

    def __init__(self, cityhub_url: str, raw_url: str, token: str, layers: list[Layer]) -> None:
        self.urls = {"cityhub": cityhub_url, "raw": raw_url}
        self.token = token
        self.layers = {layer.name: layer for layer in layers}
        self.connections: dict[str, http.client.HTTPConnection] = {}

    def path(self, side: str, layer: str, z: int, x: int, y: int, token: str | None = None) -> str:
        spec = self.layers[layer]
        if side == "cityhub":
            query = urlencode({"layer": spec.layer_id, "token": self.token if token is None else token})
            return f"/{TILE_SOURCE}/{z}/{x}/{y}?{query}"
        source = spec.raw_function_source if side == "raw_same_sql" else spec.raw_table_source
        return f"/{source}/{z}/{x}/{y}"

    def fetch(
        self, side: str, layer: str, z: int, x: int, y: int, token: str | None = None
    ) -> tuple[float, bytes]:
        server = "cityhub" if side == "cityhub" else "raw"
        path = self.path(side, layer, z, x, y, token)
        for attempt in (1, 2):  # a keep-alive connection the server closed is reopened once
            conn = self.connections.get(server)
            if conn is None:
                url = urlsplit(self.urls[server])
                conn = self.connections[server] = http.client.HTTPConnection(
                    url.hostname, url.port, timeout=120
                )
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - started
            if response.status not in (200, 204):
                raise RuntimeError(f"{side} {path.split('?')[0]}: HTTP {response.status}: {body[:300]!r}")
            return seconds, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()


def features(body: bytes, layer: str) -> int:
    return len(mapbox_vector_tile.decode(body).get(layer, {}).get("features", [])) if body else 0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def restart(local: LocalMaps, raw: RawMartin, client: Client) -> None:
    """PostGIS and both martins stopped and started again on the same ports, with the same data."""
    client.close()
    raw.stop()
    local.stop()
    local.start()
    raw.start()


def measure(args: argparse.Namespace, local: LocalMaps, raw: RawMartin, client: Client) -> dict[str, Any]:
    zooms = [int(z) for z in args.zooms.split(",")]
    plan = {z: tiles_for(z, args.tiles) for z in zooms}
    names = list(client.layers)
    cold: dict[Key, list[float]] = {}
    warm: dict[Key, list[float]] = {}
    sizes: dict[Key, list[int]] = {}
    counts: dict[Key, list[int]] = {}
    # The check is really in the path: a wrong token gets the refusal tile, nothing of the layer.
    _, denied = client.fetch("cityhub", names[0], *plan[zooms[0]][0], token="not-a-token")
    assert set(mapbox_vector_tile.decode(denied)) == {DENIED_LAYER}, "cityhub served a tile to a bad token"
    for round_ in range(args.cold_rounds):
        for i in range(len(SIDES)):
            side = SIDES[(round_ + i) % len(SIDES)]
            restart(local, raw, client)
            for name in names:
                for z in zooms:
                    for _, x, y in plan[z]:
                        cold.setdefault((side, name, z), []).append(client.fetch(side, name, z, x, y)[0])
        print(f"  cold round {round_ + 1}/{args.cold_rounds} done", file=sys.stderr)
    for name in names:  # one untimed fetch of everything: sizes and features, and warm buffers
        for z in zooms:
            for _, x, y in plan[z]:
                for side in SIDES:
                    body = client.fetch(side, name, z, x, y)[1]
                    sizes.setdefault((side, name, z), []).append(len(body))
                    counts.setdefault((side, name, z), []).append(features(body, name))
    for rep in range(args.warm):
        for name in names:
            for z in zooms:
                for t, (_, x, y) in enumerate(plan[z]):
                    turn = (rep + t) % len(SIDES)
                    for side in SIDES[turn:] + SIDES[:turn]:
                        warm.setdefault((side, name, z), []).append(client.fetch(side, name, z, x, y)[0])
    rows = []
    for name in names:
        for z in zooms:
            row: dict[str, Any] = {"layer": name, "zoom": z, "tiles": len(plan[z])}
            for side in SIDES:
                key = (side, name, z)
                row[side] = {
                    "cold_ms_p50": round(statistics.median(cold[key]) * 1000, 2),
                    "cold_ms_p95": round(p95(cold[key]) * 1000, 2),
                    "warm_ms_p50": round(statistics.median(warm[key]) * 1000, 2),
                    "warm_ms_p95": round(p95(warm[key]) * 1000, 2),
                    "kib_median": round(statistics.median(sizes[key]) / 1024, 1),
                    "kib_max": round(max(sizes[key]) / 1024, 1),
                    "features_median": statistics.median(counts[key]),
                }
            a, b = row["cityhub"], row["raw_same_sql"]
            row["ratio"] = {m: round(a[m] / b[m], 2) for m in ("cold_ms_p50", "warm_ms_p50", "warm_ms_p95")}
            row["same_tiles"] = sizes[("cityhub", name, z)] == sizes[("raw_same_sql", name, z)]
            rows.append(row)
    samples = {
        f"{side}/{name}/z{z}/{phase}": [round(s * 1000, 3) for s in data[(side, name, z)]]
        for phase, data in (("cold", cold), ("warm", warm))
        for side in SIDES
        for name in names
        for z in zooms
    }
    return {"rows": rows, "samples_ms": samples, "plan": {str(z): plan[z] for z in zooms}}


def measure_database(
    rounds: int, tiles_dsn: str, raw_dsn: str, token: str, layers: list[Layer], tile: tuple[int, int, int]
) -> list[dict[str, Any]]:
    """The same comparison without martin and HTTP, where the check's own cost shows: cityhub's tile function
    (as martin's role calls it) and the raw function, prepared statements over one connection each,
    interleaved (the order alternating), `rounds` calls each after 5 untimed ones."""
    z, x, y = tile
    rows = []
    with psycopg.connect(tiles_dsn, autocommit=True) as a, psycopg.connect(raw_dsn, autocommit=True) as b:
        for layer in layers:
            params = json.dumps({"layer": layer.layer_id, "token": token})
            calls: dict[str, tuple[psycopg.Connection[Any], Any, tuple[Any, ...]]] = {
                "cityhub": (a, "SELECT cityhub_maps.layer_tile(%s, %s, %s, %s::json)", (z, x, y, params)),
                "raw_same_sql": (
                    b,
                    sql.SQL("SELECT {}.{}(%s, %s, %s)").format(
                        sql.Identifier(RAW_SCHEMA), sql.Identifier(layer.raw_function_source)
                    ),
                    (z, x, y),
                ),
            }
            times: dict[str, list[float]] = {side: [] for side in calls}
            for i in range(rounds + 5):
                for side in list(calls) if i % 2 else list(calls)[::-1]:
                    conn, query, args = calls[side]
                    started = time.perf_counter()
                    conn.execute(query, args, prepare=True).fetchone()
                    if i >= 5:
                        times[side].append(time.perf_counter() - started)
            a_ms, b_ms = (statistics.median(times[side]) * 1000 for side in calls)
            rows.append(
                {
                    "layer": layer.name,
                    "tile": [z, x, y],
                    "calls": rounds,
                    "cityhub_ms_p50": round(a_ms, 3),
                    "raw_same_sql_ms_p50": round(b_ms, 3),
                    "ratio": round(a_ms / b_ms, 2),
                    "check_us_p50": round((a_ms - b_ms) * 1000),
                    "cityhub_ms_min": round(min(times["cityhub"]) * 1000, 3),
                    "raw_same_sql_ms_min": round(min(times["raw_same_sql"]) * 1000, 3),
                }
            )
    return rows


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    worst = max(rows, key=lambda r: r["ratio"]["warm_ms_p50"])
    z10 = [r["cityhub"]["warm_ms_p95"] for r in rows if r["zoom"] == 10 and r["layer"] == "incidents"]
    biggest = max(r["cityhub"]["kib_max"] for r in rows)
    return {
        "ratio_warm_p50_worst": {
            "value": worst["ratio"]["warm_ms_p50"],
            "layer": worst["layer"],
            "zoom": worst["zoom"],
            "met": worst["ratio"]["warm_ms_p50"] <= GOAL_RATIO,
        },
        "z10_points_warm_p95_ms": {
            "value": z10[0] if z10 else None,
            "met": bool(z10) and z10[0] <= GOAL_Z10_P95_MS,
        },
        "largest_tile_kib": {"value": biggest, "met": biggest <= GOAL_TILE_KIB},
    }


def markdown(result: dict[str, Any]) -> str:
    rows, p = result["rows"], result["params"]
    out = [
        f"{p['points']:,} points and {p['polygons']:,} polygons; {p['tiles']} tiles per zoom; cold: "
        f"{p['cold_rounds']} round(s) per side after a restart; warm: {p['warm']} interleaved fetches per "
        "tile and side. Milliseconds; ratio = cityhub / raw martin with the same SQL.",
        "",
        "| layer | z | cityhub warm p50 / p95 | raw same SQL warm p50 / p95 | ratio p50 / p95 "
        "| cityhub cold p50 / p95 | raw same SQL cold p50 / p95 | ratio cold p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        a, b, q = r["cityhub"], r["raw_same_sql"], r["ratio"]
        out.append(
            f"| {r['layer']} | {r['zoom']} | {a['warm_ms_p50']:.1f} / {a['warm_ms_p95']:.1f} "
            f"| {b['warm_ms_p50']:.1f} / {b['warm_ms_p95']:.1f} "
            f"| {q['warm_ms_p50']:.2f} / {q['warm_ms_p95']:.2f} "
            f"| {a['cold_ms_p50']:.1f} / {a['cold_ms_p95']:.1f} "
            f"| {b['cold_ms_p50']:.1f} / {b['cold_ms_p95']:.1f} | {q['cold_ms_p50']:.2f} |"
        )
    out += [
        "",
        "| layer | z | features/tile cityhub (= same SQL) | KiB/tile cityhub median / max "
        "| raw table features/tile | raw table KiB median / max | raw table warm p50 / p95 "
        "| raw table cold p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        a, t = r["cityhub"], r["raw_table"]
        same = "" if r["same_tiles"] else " (sizes differ!)"
        out.append(
            f"| {r['layer']} | {r['zoom']} | {a['features_median']:.0f}{same} | {a['kib_median']:.1f} / "
            f"{a['kib_max']:.1f} | {t['features_median']:.0f} | {t['kib_median']:.1f} / {t['kib_max']:.1f} "
            f"| {t['warm_ms_p50']:.1f} / {t['warm_ms_p95']:.1f} | {t['cold_ms_p50']:.1f} |"
        )
    db = result["database"]
    if db:
        out += [
            "",
            f"In PostgreSQL alone (no martin, no HTTP; psycopg, prepared, interleaved, {db[0]['calls']} "
            f"calls each), tile {'/'.join(map(str, db[0]['tile']))}:",
            "",
            "| layer | cityhub p50 (min) | raw same SQL p50 (min) | ratio p50 | cityhub extra, p50 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for d in db:
            out.append(
                f"| {d['layer']} | {d['cityhub_ms_p50']:.3f} ({d['cityhub_ms_min']:.3f}) ms "
                f"| {d['raw_same_sql_ms_p50']:.3f} ({d['raw_same_sql_ms_min']:.3f}) ms | {d['ratio']:.2f} "
                f"| {d['check_us_p50']} µs |"
            )
    g = result["goals"]
    verdict: Callable[[bool], str] = lambda met: "met" if met else "MISSED"  # noqa: E731
    r_, z_, s_ = g["ratio_warm_p50_worst"], g["z10_points_warm_p95_ms"], g["largest_tile_kib"]
    out += [
        "",
        f"- at most {GOAL_RATIO} times raw martin (warm p50, worst layer/zoom): {r_['value']:.2f} at "
        f"{r_['layer']} z{r_['zoom']}: {verdict(r_['met'])}",
        f"- warm z10 p95 ≤ {GOAL_Z10_P95_MS:.0f} ms (points): {z_['value']} ms: {verdict(z_['met'])}",
        f"- every tile ≤ {GOAL_TILE_KIB:.0f} KiB: largest {s_['value']:.1f} KiB: {verdict(s_['met'])}",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/peer_tiles.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k points, 2k polygons, 2 tiles, few repeats")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--polygons", type=int, default=None)
    parser.add_argument("--zooms", default="10,12,14")
    parser.add_argument("--tiles", type=int, default=None, help="distinct tiles per zoom (default 5)")
    parser.add_argument("--warm", type=int, default=None, help="warm fetches per tile and side (default 30)")
    parser.add_argument("--cold-rounds", type=int, default=None, help="restarts per side (default 2)")
    parser.add_argument("--db-calls", type=int, default=None, help="database-only calls per side (300)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = {"points": 20_000, "polygons": 2_000, "tiles": 2, "warm": 3, "cold_rounds": 1, "db_calls": 20}
    full = {"points": 100_000, "polygons": 10_000, "tiles": 5, "warm": 30, "cold_rounds": 2, "db_calls": 300}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    tmp = scratch_directory("cityhub-peer-tiles-")  # the postgres user (PostgreSQL refuses root) can enter it
    secret_file = tmp / "secret"
    secret_file.touch(mode=0o600)
    secret_file.write_bytes(SECRET)
    local = LocalMaps(tmp, secret_file, secrets.token_urlsafe(24))
    raw: RawMartin | None = None
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        local.start()
        secret, layers = create_layers(local)
        load(secret["databaseUrl"], layers, args.points, args.polygons)
        password = prepare_raw(local, layers)
        raw = RawMartin(tmp / "raw-martin", local.postgis.dsn(RAW_ROLE, password), layers)
        raw.start()
        client = Client(local.martin.url, raw.url, secret["tileToken"], layers)
        try:
            result = measure(args, local, raw, client)
            zooms = [int(z) for z in args.zooms.split(",")]
            result["database"] = measure_database(
                args.db_calls,
                local.martin.database_url,
                local.postgis.dsn(RAW_ROLE, password),
                secret["tileToken"],
                layers,
                tiles_for(max(zooms), 1)[0],
            )
        finally:
            client.close()
    finally:
        if raw is not None:
            raw.stop()
        local.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["params"] = {
        k: getattr(args, k)
        for k in ("points", "polygons", "tiles", "warm", "cold_rounds", "db_calls", "zooms", "quick")
    }
    result["goals"] = goals(result["rows"])
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
