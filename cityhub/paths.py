"""Where cityhub keeps things: the built toolchain (cache) and per-checkout state.

    CITYHUB_CACHE  overrides ~/.cache/cityhub   (binaries built by hack/toolchain.sh live in <cache>/bin)
    CITYHUB_STATE  overrides <repo>/.state      (cluster state, kubeconfig, logs, Pulumi backend)

Every directory is read from the environment on each call, so a test can point CITYHUB_STATE at a
temporary directory without reloading modules.
"""

from __future__ import annotations

import os
from pathlib import Path

from cityhub_api.settings import Env, cache_dir

__all__ = ["ToolMissingError", "bin_dir", "cache_dir", "missing_tools", "repo_root", "state_dir", "tool"]


class ToolMissingError(FileNotFoundError):
    """A toolchain binary is not built yet."""


def repo_root() -> Path:
    """The checkout: the parent of the `cityhub` package directory."""
    return Path(__file__).resolve().parent.parent


def bin_dir() -> Path:
    return cache_dir() / "bin"


def state_dir() -> Path:
    return Env().path("CITYHUB_STATE", repo_root() / ".state")


def tool(name: str) -> Path:
    """The path of a toolchain binary; raises ToolMissingError naming the script that builds it."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissingError(f"{name} is not built (expected {path}): run hack/toolchain.sh to build it")
    return path


def missing_tools(names: tuple[str, ...] | list[str]) -> list[str]:
    """The subset of `names` that hack/toolchain.sh has not built (yet)."""
    return [n for n in names if not (bin_dir() / n).is_file()]
