"""Tile latency of a MapLayer with 100k features (real PostGIS + real martin, both local).

    .venv/bin/python bench/bench_maps.py                       # 100k points, zooms 10/12/14/16
    .venv/bin/python bench/bench_maps.py --features 20000 --warm 5 --json out.json

Creates one layer through the maps driver (as the operator would), loads N random points in CGCS2000
(EPSG:4490) over central Beijing with the department's own credentials, ANALYZEs, then for each zoom picks
tiles that hold features and measures over HTTP, with the department's token:

    cold   the first fetch of each tile right after PostGIS and martin were restarted (empty shared
           buffers, fresh connection pool, no plan cached; the OS page cache is left alone: it is shared)
    warm   the same tiles fetched again, `--warm` times each

and prints the medians, plus features and bytes per tile. martin's own cache is off by design (see
component_types/maps/README.md), so "warm" is PostGIS with hot buffers, not a tile cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import shutil
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import mapbox_vector_tile
import psycopg
from cityhub_operator.driver import Request
from psycopg import sql

from component_types.maps.driver import create_driver
from component_types.maps.local import LocalMaps, scratch_directory

SECRET = b"maps-benchmark-secret-0123456789-abcdefghijklmnopq"
# Central Beijing, roughly the 5th ring road (lon, lat in CGCS2000).
BBOX = (116.20, 39.75, 116.55, 40.03)
CENTER = (116.3975, 39.9087)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    rad = math.radians(lat)
    return int((lon + 180.0) / 360.0 * n), int(
        (1.0 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n
    )


def tiles_for(z: int, count: int) -> list[tuple[int, int, int]]:
    """`count` distinct tiles at zoom z around the centre (a spiral of neighbours)."""
    cx, cy = tile_of(*CENTER, z)
    out: list[tuple[int, int, int]] = []
    radius = 0
    while len(out) < count:
        for dx in range(-radius, radius + 1):
            for dy in range(-radius, radius + 1):
                if max(abs(dx), abs(dy)) == radius and len(out) < count:
                    out.append((z, cx + dx, cy + dy))
        radius += 1
    return out


def fetch(template: str, token: str, z: int, x: int, y: int) -> tuple[float, bytes]:
    url = template.format(z=z, x=x, y=y) + "&" + urlencode({"token": token})
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return time.perf_counter() - started, body


def load(database_url: str, table: str, features: int) -> float:
    schema, name = table.split(".")
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (label, geom) SELECT 'p' || i, ST_SetSRID(ST_MakePoint("
                "%s + random() * %s, %s + random() * %s), 4490) FROM generate_series(1, %s) AS i"
            ).format(sql.Identifier(schema, name)),
            (BBOX[0], BBOX[2] - BBOX[0], BBOX[1], BBOX[3] - BBOX[1], features),
        )
    return time.perf_counter() - started


def restart(local: LocalMaps) -> None:
    """Stop both and start them again on the same ports, with the same data."""
    local.stop()
    local.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_maps.py")
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--zooms", default="10,12,14,16")
    parser.add_argument("--tiles", type=int, default=5, help="distinct tiles per zoom")
    parser.add_argument("--warm", type=int, default=10, help="warm fetches per tile")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    zooms = [int(z) for z in args.zooms.split(",")]

    tmp = scratch_directory("cityhub-bench-maps-")  # the postgres user (PostgreSQL refuses root) can enter it
    secret_file = tmp / "secret"
    secret_file.touch(mode=0o600)
    secret_file.write_bytes(SECRET)
    local = LocalMaps(tmp, secret_file, secrets.token_urlsafe(24))
    try:
        local.start()
        driver = create_driver(local.operator_env())
        request = Request(
            namespace="yingji",
            name="incidents",
            uid="bench",
            department="yingji",
            spec={"geometryType": "Point", "attributes": [{"name": "label", "type": "text"}]},
            limits={},
        )
        started = time.perf_counter()
        result = asyncio.run(driver.ensure(request))
        ensure_s = time.perf_counter() - started
        secret = {**result.endpoints, **result.credentials}
        load_s = load(secret["databaseUrl"], secret["table"], args.features)
        with psycopg.connect(local.postgis.dsn()) as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*secret["table"].split("."))))
        plan = {z: tiles_for(z, args.tiles) for z in zooms}
        restart(local)
        rows: list[dict[str, Any]] = []
        cold: dict[int, list[float]] = {z: [] for z in zooms}
        info: dict[int, list[tuple[int, int]]] = {z: [] for z in zooms}
        for z in zooms:  # cold: first touch of each tile after the restart
            for _, x, y in plan[z]:
                seconds, body = fetch(secret["tileUrl"], secret["tileToken"], z, x, y)
                cold[z].append(seconds)
                decoded = mapbox_vector_tile.decode(body) if body else {}
                info[z].append((len(decoded.get("incidents", {}).get("features", [])), len(body)))
        for z in zooms:
            warm = [
                fetch(secret["tileUrl"], secret["tileToken"], z, x, y)[0]
                for _, x, y in plan[z]
                for _ in range(args.warm)
            ]
            rows.append(
                {
                    "zoom": z,
                    "tiles": len(plan[z]),
                    "features_per_tile_median": statistics.median(f for f, _ in info[z]),
                    "bytes_per_tile_median": statistics.median(b for _, b in info[z]),
                    "cold_ms_median": round(statistics.median(cold[z]) * 1000, 1),
                    "warm_ms_median": round(statistics.median(warm) * 1000, 1),
                    "warm_ms_p95": round(sorted(warm)[int(len(warm) * 0.95) - 1] * 1000, 1),
                }
            )
    finally:
        local.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"layer of {args.features} points (EPSG:4490) over central Beijing; ensure {ensure_s * 1000:.0f} ms, "
        f"load {load_s:.1f} s; tiles via martin with the department's token"
    )
    header = ("zoom", "tiles", "features/tile", "KiB/tile", "cold ms", "warm ms", "warm p95")
    widths = (4, 5, 13, 8, 8, 8, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in rows:
        cells = (
            r["zoom"],
            r["tiles"],
            f"{r['features_per_tile_median']:.0f}",
            f"{r['bytes_per_tile_median'] / 1024:.1f}",
            r["cold_ms_median"],
            r["warm_ms_median"],
            r["warm_ms_p95"],
        )
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    if args.json:
        args.json.write_text(json.dumps({"features": args.features, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
