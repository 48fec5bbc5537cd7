"""Where one embedded cluster keeps its files: <state>/cluster for the hub, <state>/clusters/<name> for an
edge cluster (CITYHUB_STATE overrides <repo>/.state)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cityhub import paths

HUB = "hub"
"""The default cluster's name (the city hub), as in the stack configuration's default `clusters`."""


@dataclass(frozen=True)
class Layout:
    """Where one embedded cluster keeps its files."""

    root: Path
    name: str = HUB
    """The cluster's name: `hub`, or the edge's (`cityhub cluster up --name <name>`)."""

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def component_kubeconfig(self, name: str) -> Path:
        return self.conf / f"{name}.kubeconfig"


NAME = re.compile(r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$")
"""A cluster name: an RFC 1123 label of at most 20 characters (it names directories, a bridge, a cgroup)."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            f"invalid cluster name {name!r}: use 1-20 lower-case letters, digits and '-', starting with a "
            "letter (e.g. haidong-edge)"
        )
    return name


def layout(name: str = HUB) -> Layout:
    """The hub keeps <state>/cluster (where it always was); every other cluster <state>/clusters/<name>,
    so a hub and its edge clusters run side by side on one machine, each with its own ports and data."""
    if check_name(name) == HUB:
        return Layout(paths.state_dir() / "cluster")
    return Layout(paths.state_dir() / "clusters" / name, name)


def cluster_names() -> list[str]:
    """Every embedded cluster with files on this machine: the hub first, then the others by name."""
    others = paths.state_dir() / "clusters"
    if not others.is_dir():
        return [HUB]
    # A cluster that was brought down keeps only its logs: it is no longer listed.
    found = sorted(p.name for p in others.iterdir() if NAME.match(p.name) and (p / "state.json").exists())
    return [HUB, *(n for n in found if n != HUB)]


def kubeconfig_path(name: str = HUB) -> Path:
    """The admin kubeconfig of an embedded cluster (it may not exist yet)."""
    return layout(name).kubeconfig
