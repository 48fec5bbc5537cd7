"""The operator's layering: the core never imports a driver, drivers never import each other or kopf."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "cityhub_operator"
DRIVERS = PACKAGE / "drivers"


def imported_modules(path: Path) -> set[str]:
    """Modules a file imports, including `importlib.import_module("literal")` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def driver_of(path: Path) -> str | None:
    """The driver (first component under drivers/) a file belongs to, or None for the core."""
    rel = path.relative_to(PACKAGE).parts
    if rel[0] != "drivers" or (len(rel) == 2 and rel[1] == "__init__.py"):
        return None
    return rel[1].removesuffix(".py")


def test_core_never_imports_a_driver() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if driver_of(path) is None and not path.is_relative_to(DRIVERS):
            bad = {m for m in imported_modules(path) if m.startswith("cityhub_operator.drivers")}
            offenders += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(bad)]
    assert not offenders, "the core must load drivers by name only:\n" + "\n".join(offenders)


def test_drivers_import_only_the_interface_and_their_backend() -> None:
    offenders = []
    for path in DRIVERS.rglob("*.py"):
        mine = driver_of(path)
        if mine is None:
            continue
        for m in sorted(imported_modules(path)):
            parts = m.split(".")
            # A driver whose backend is Kubernetes itself keeps that in its cluster.py module.
            if parts[0] == "kopf" or (parts[0] == "kubernetes" and path.name != "cluster.py"):
                offenders.append(f"{path.relative_to(REPO)} imports {m}")
            elif parts[0] == "cityhub_operator":
                other = parts[2] if parts[1:2] == ["drivers"] and len(parts) > 2 else None
                if parts[1:2] == ["drivers"] and other not in (None, mine):
                    offenders.append(f"{path.relative_to(REPO)} imports another driver: {m}")
                elif parts[1] not in ("driver", "driver_env", "drivers", "units"):
                    offenders.append(f"{path.relative_to(REPO)} imports the core module {m}")
    assert not offenders, "\n".join(offenders)


def test_every_declared_driver_is_a_module_under_drivers() -> None:
    from cityhub_operator import schemas

    for ctype in schemas.component_types().values():
        assert ctype.driver.startswith("cityhub_operator.drivers."), ctype
        rel = Path(*ctype.driver.split(".")[1:])
        assert (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists(), ctype


def test_import_linter_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports not found: import-linter is a dev dependency (pip install -e .[dev])")
    proc = subprocess.run(
        [lint, "--config", str(REPO / ".importlinter"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout
