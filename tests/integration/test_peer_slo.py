"""SLO rules vs Sloth, short (bench/peer_slo.py --quick): cityhub's probe-availability rules and Sloth's for
the same SLO, evaluated by one real Prometheus (and promtool's rule engine) on the same series: an 8-hour
scenario with a zero-traffic period and a fast burn, and 10 pairs over a day of backfilled history.

Asserts what the table says, never how fast: both sides have rules, were evaluated, wrote series, and both
page on the fast burn; cityhub's rules never record NaN while there is no traffic (their documented
promise: a ratio over zero traffic is absent, so nothing fires and nothing reads NaN).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cityhub import paths

pytestmark = pytest.mark.integration


def test_quick_bench_compares_both_rule_sets(tmp_path: Path) -> None:
    missing = [t for t in ("prometheus", "promtool", "sloth") if not (paths.bin_dir() / t).exists()]
    if missing:
        fix = "run hack/prometheus.sh and hack/peers/sloth.sh"
        pytest.fail(f"missing {', '.join(missing)} in {paths.bin_dir()}: {fix}", pytrace=False)
    out = tmp_path / "peer-slo.json"
    run = subprocess.run(
        [sys.executable, str(paths.repo_root() / "bench" / "peer_slo.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| | cityhub | Sloth v0.16.0 | cityhub / Sloth |" in run.stdout
    result = json.loads(out.read_text())
    assert result["sloth_version"] == "v0.16.0"
    for side in ("cityhub", "sloth"):
        counts, cost = result["rules"][side], result["cost"][side]
        assert counts["recording"] > 0 and counts["alerting"] > 0, counts
        assert all(len(c) >= 1 for c in cost["cycles"].values()), cost["cycles"]
        assert cost["median_cycle_s"] > 0 and cost["tsdb"]["series"] > 0, cost
        page = result["correctness"][side]["alerts"]["page"]["burns"][0]
        assert page["first"] is not None, f"{side} did not page on the 40x burn: {page}"
    zero = result["correctness"]["cityhub"]["zero_traffic"]
    assert zero["nan"] == 0 and zero["absent"] > 0, zero
    assert result["cost"]["cityhub"]["tsdb"]["nan_series"] == 0
