"""The NACK peer bench, short: bench/peer_nack.py --quick runs cityhub's messaging operator and NACK's
jetstream-controller on the same nats-server (each on a fresh embedded cluster) and reports both sides.

Needs hack/peers/nack.sh (the peer is built only for benchmarks). Runs the bench as a subprocess: it starts
and stops its own clusters, which must not touch the session's. Asserts what the table and the JSON hold,
never how fast either side is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cityhub import paths

pytestmark = pytest.mark.integration

REQUESTS = 20
NAMESPACES = 5


def test_quick_bench_reports_both_controllers_doing_the_same_streams(tmp_path: Path) -> None:
    if not (paths.bin_dir() / "jetstream-controller").exists():
        pytest.fail("NACK's jetstream-controller is not built: run hack/peers/nack.sh", pytrace=False)
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(paths.repo_root() / "bench" / "peer_nack.py"),
            "--quick",
            "--requests",
            str(REQUESTS),
            "--namespaces",
            str(NAMESPACES),
            "--timeout",
            "300",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    results = json.loads(out.read_text())
    runs = {r["side"]: r for r in results["runs"]}
    assert set(runs) == {"cityhub", "nack"}, results["runs"]
    for side, r in runs.items():
        assert r["requests"] == REQUESTS
        assert 0 < r["latency_p50_s"] <= r["latency_p99_s"] <= r["wall_s"], (side, r)
        assert r["cpu_s"] > 0 and r["peak_rss_mib"] > 0, (side, r)
        # Each side made its streams on the one nats-server (the warm-up request's too). (Both look a stream
        # up before creating it: nats-server counts each "not found" as an API error.)
        assert r["streams_on_server"] == REQUESTS + 1, (side, r)
        assert r["jetstream_api_per_request"] >= 1, (side, r)
        assert r["api_writes_per_request"] >= 1, (side, r)
    # cityhub writes a Secret per request (the credentials); NACK has none to write.
    assert runs["cityhub"]["api_writes"].get("POST secrets", 0) >= REQUESTS, runs["cityhub"]["api_writes"]
    assert runs["cityhub"]["reconciles"] >= REQUESTS
    table = results["table"]
    assert "| time to all Ready, s |" in table and "ratio cityhub / NACK" in table
    assert "goal cityhub wall time <= NACK's:" in table
    assert "goal cityhub wall time <= NACK's:" in proc.stdout
