"""Where one embedded cluster keeps its files: <state>/cluster (CITYHUB_STATE overrides <repo>/.state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cityhub import paths


@dataclass(frozen=True)
class Layout:
    """Where one embedded cluster keeps its files."""

    root: Path

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


def layout() -> Layout:
    return Layout(paths.state_dir() / "cluster")


def kubeconfig_path() -> Path:
    """The admin kubeconfig of the embedded cluster (it may not exist yet)."""
    return layout().kubeconfig
