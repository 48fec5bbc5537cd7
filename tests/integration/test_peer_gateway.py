"""Gateway vs MLServer direct vs the nginx prototype, short (bench/peer_gateway.py --quick runs the same):
one repeat of 2 s per side at concurrency 1 and 32 under wrk, on a real MLServer, gateway and nginx.

Asserts what a reader of the bench's table relies on: every side answered every call (wrk counted no error,
else the bench raises), each has calls and latencies, the ratios are those of the medians, and every process
the bench started is gone. Never asserts speed: the host is shared.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cityhub import paths, supervisor

# The benches are scripts that import their siblings (bench/peer_gateway_*.py): so does the test.
sys.path.insert(0, str(paths.repo_root() / "bench"))

import peer_gateway
from peer_gateway_nginx import JS_MODULE

from component_types.inference import fixtures

pytestmark = pytest.mark.integration


def running_children() -> dict[int, str]:
    """Children of this process with a thread still running (the bench's servers, wrk): pid → command.

    A child whose threads have all exited is only waiting to be reaped; MLServer's main thread exits first
    and its last thread a moment later, so the leader reads as a zombie while that thread still runs."""
    out: dict[int, str] = {}
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                states = [(t / "stat").read_text() for t in Path(f"/proc/{pid}/task").iterdir()]
            except OSError:
                continue
            if any(st[st.rfind(")") + 2] not in "ZX" for st in states):
                out[int(pid)] = states[0][states[0].find("(") : states[0].rfind(")") + 1]
    return out


def test_quick_bench_measures_all_three_sides_and_stops_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixtures.installed_backend()
    if shutil.which("wrk") is None or shutil.which("nginx") is None or not JS_MODULE.is_file():
        pytest.fail("wrk or nginx with njs is missing: run hack/peers/wrk.sh and hack/peers/nginx.sh")
    before = running_children()
    out = tmp_path / "results.json"

    assert peer_gateway.main(["--quick", "--quiet", "--json", str(out)]) == 0

    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["quick"] is True
    runs = result["runs"]
    assert {(r["side"], r["concurrency"]) for r in runs} == {
        (side, c) for side in ("direct", "gateway", "nginx") for c in (1, 32)
    }
    for r in runs:
        assert r["errors"] == 0 and r["requests"] > 0, r
        assert 0 < r["p50_ms"] <= r["p99_ms"], r
        assert r["mlserver_cpu_us_per_call"] > 0, r
        if r["side"] != "direct":
            assert r["proxy_cpu_us_per_call"] > 0, r
    for c, per in result["summary"].items():
        direct = per["direct"]
        for side in ("gateway", "nginx"):
            assert per[side]["p50_ratio"] == pytest.approx(per[side]["p50_ms"] / direct["p50_ms"], 0.01)
            assert per[side]["rps_ratio"] == pytest.approx(per[side]["rps"] / direct["rps"], 0.01)
            assert f"| {c} | {side} |" in printed
    assert "| 1 | direct |" in printed and "goal <= 1.2x" in printed

    def left() -> dict[int, str]:
        return {pid: what for pid, what in running_children().items() if pid not in before}

    supervisor.wait_until(lambda: not left(), 20.0)
    assert not left(), f"the bench left processes running: {left()}"
