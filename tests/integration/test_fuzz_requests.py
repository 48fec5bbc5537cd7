"""The request fuzz, short: 300 invalid or hostile requests of every kind against the session's API server
with the operator running on every real backend (bench/fuzz_requests.py runs the 10,000 of issue 15).

Fails when the operator crashed, restarted or logged a Traceback, a backend process died, a backend holds an
object of a request that was refused, unmet or deleted, a refusal names no field, a request has no
conditions after the bounded wait, a deleted request does not go away, or two requests whose names collide
when joined with '-' do not both work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cityhub import paths

# The benches are scripts that import their siblings (bench/readiness.py, bench/fuzzing/): so does the test.
sys.path.insert(0, str(paths.repo_root() / "bench"))

import fuzz_requests

pytestmark = pytest.mark.integration

COUNT = 300
SEED = 15


def test_every_fuzzed_request_is_refused_unmet_or_ready_and_leaves_nothing(
    kubeconfig: Path, tmp_path: Path
) -> None:
    report = fuzz_requests.run(kubeconfig, tmp_path, count=COUNT, seed=SEED, batch=150, wait=300, quiet=60)
    summary = f"{report.table()}\n\n{report.families()}"
    failures = report.failures()
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures) + f"\n\n{summary}"
    states = report.states()
    assert len(report.outcomes) >= COUNT
    assert states["refused"] > 0 and states["ready"] > 0 and states["unmet"] > 0, (
        f"the fuzz reached too little: {dict(states)}\n{summary}"
    )
