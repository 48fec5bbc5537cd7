"""The whole tree's import contracts (.importlinter): layers, a neutral API, component types found only by
name, no backend client library in the Pulumi program or the CLI, drivers that never import each other."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports not found: import-linter is a dev dependency (pip install -e .[dev])")
    proc = subprocess.run(
        [lint, "--config", str(REPO / ".importlinter"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'policies'}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout


def test_no_module_is_longer_than_about_500_lines() -> None:
    """Small modules whose names say what they hold (generated and vendored files aside)."""
    roots = ("cityhub", "cityhub_api", "cityhub_nats", "components", "component_types", "operator")
    roots += ("policies",)
    long = []
    for root in roots:
        for path in (REPO / root).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > 550:
                long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not long, "split these by concern:\n" + "\n".join(long)
