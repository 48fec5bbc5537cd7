"""Chaos, short (bench/chaos.py --short runs the same): ~60 requests of every type over 6 departments, created
in waves on a private embedded cluster with every real backend, while the operator is SIGKILLed once, the
messaging backend is down for 20 s and the operator↔API-server connection silently drops packets for 30 s.

Fails when a request does not end Ready or unmet with a reason, has no conditions, a backend holds an object
that no Ready request owns (orphan) or one twice (duplicate), a Ready request lacks its objects or its single
Secret, a Secret's credentials do not work (each driver's probe), or the operator had to be restarted after an
exit nobody asked for. The table goes to the test's output either way.
"""

from __future__ import annotations

import sys

import pytest

from cityhub import paths

# The benches are scripts that import their siblings (bench/chaos_*.py): so does the test.
sys.path.insert(0, str(paths.repo_root() / "bench"))

import chaos

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_short_chaos_keeps_every_invariant(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("chaos")
    work.chmod(0o711)  # PostgreSQL runs as the postgres user (when we are root) and keeps its data below
    report = chaos.run(chaos.Config.short(), work)
    print("\n" + report.table())
    failures = report.failures() + [f"unplanned operator exit: {u}" for u in report.unplanned_restarts]
    assert not failures, "\n".join(failures) + "\n\n" + report.table()
    counts = report.counts()
    assert counts.get("ready", 0) > 0 and counts.get("unmet", 0) > 0 and counts.get("deleted", 0) > 0, counts
    assert report.operator_restarts == 1 and all(f.ended is not None for f in report.faults)
