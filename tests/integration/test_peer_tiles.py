"""Tiles versus raw martin, short (bench/peer_tiles.py --quick runs the same): 20k points and 2k polygons in
one PostGIS, cityhub's martin and a raw martin, z10/z12/z14, cold and warm.

Checks what a user of the numbers relies on, never speed: every side answered every tile, cityhub and raw
martin with the same SQL served tiles of the same size (so the ratio compares the same work), the access
check was in the path (a wrong token got the refusal tile, asserted inside the bench), generalization made
the low-zoom point tiles smaller than martin's table source, and every process was stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cityhub import paths

# The benches are scripts that import their siblings (bench/peer_tiles_setup.py, bench/bench_maps.py).
sys.path.insert(0, str(paths.repo_root() / "bench"))

import peer_tiles

pytestmark = pytest.mark.integration


def bench_processes() -> set[int]:
    """PIDs of processes running from a peer_tiles scratch directory (PostGIS and both martins)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"cityhub-peer-tiles-" in cmdline.read_bytes():
                found.add(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_quick_peer_bench_measures_both_sides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "peer-tiles.json"
    before = bench_processes()
    assert peer_tiles.main(["--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    print(table)
    assert "| cityhub warm p50 / p95 | raw same SQL warm p50 / p95 | ratio p50 / p95 |" in table
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["layer"], r["zoom"]) for r in rows} == {
        (layer, z) for layer in ("incidents", "districts") for z in (10, 12, 14)
    }
    for row in rows:
        for side in peer_tiles.SIDES:
            numbers = row[side]
            assert numbers["cold_ms_p50"] > 0 and 0 < numbers["warm_ms_p50"] <= numbers["warm_ms_p95"], row
            assert numbers["kib_max"] > 0 and numbers["features_median"] > 0, (side, row)
        assert row["same_tiles"], f"cityhub and raw martin (same SQL) served different tiles: {row}"
        assert all(ratio > 0 for ratio in row["ratio"].values()), row
    z10 = next(r for r in rows if r["layer"] == "incidents" and r["zoom"] == 10)
    assert z10["cityhub"]["features_median"] < z10["raw_table"]["features_median"], "points aggregated at z10"
    z14 = next(r for r in rows if r["layer"] == "incidents" and r["zoom"] == 14)
    assert z14["cityhub"]["features_median"] == z14["raw_table"]["features_median"], "full detail at z14"
    assert set(result["goals"]) == {"ratio_warm_p50_worst", "z10_points_warm_p95_ms", "largest_tile_kib"}
    assert len(result["samples_ms"]) == len(peer_tiles.SIDES) * len(rows) * 2
    assert not bench_processes() - before, "the bench left a process running"
