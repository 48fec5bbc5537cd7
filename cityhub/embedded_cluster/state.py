"""What `up` started, kept in <cluster>/state.json: the apiserver's URL, the admin kubeconfig and one
`cityhub.supervisor.Record` per process in start order (so `down` stops them in reverse, `up` restarts the
dead ones with their recorded command lines and ports, and `status` shows them in order), plus the lock
that serialises up/down of one state directory.

One file rather than a `supervisor.Supervisor` directory: it is replaced atomically as a whole, so a half-
finished `up` (some processes recorded, some not) is recognisable and a reader never sees a mix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from cityhub.embedded_cluster.errors import ClusterError
from cityhub.embedded_cluster.layout import Layout
from cityhub.supervisor import Record

STATE_VERSION = 2
"""2: processes are `supervisor.Record`s (`argv`); 1 had the module's own records (`cmd`), still read."""


@dataclass
class ClusterState:
    apiserver: str
    kubeconfig: str
    processes: list[Record] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    version: int = STATE_VERSION

    def find(self, name: str) -> Record | None:
        return next((p for p in self.processes if p.name == name), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        version = data.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unsupported cluster state version {version!r}")
        procs = [Record(**_record_fields(p, version)) for p in data.pop("processes", [])]
        return cls(**{**data, "version": STATE_VERSION}, processes=procs)


def _record_fields(data: dict[str, Any], version: int) -> dict[str, Any]:
    # A cluster started before the move to cityhub.supervisor keeps running: its records called argv `cmd`.
    if version == 1:
        return {k: v for k, v in data.items() if k != "cmd"} | {"argv": data.get("cmd")}
    return data


def save_state(lay: Layout, state: ClusterState) -> None:
    # Write-then-rename so a crash never leaves a half-written file that hides running processes.
    tmp = lay.state_file.with_suffix(".json.tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, lay.state_file)


def load_state(lay: Layout) -> ClusterState | None:
    try:
        return ClusterState.from_json(lay.state_file.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as e:
        raise ClusterError("read state", f"{lay.state_file} is unreadable ({e}); remove {lay.root}") from e


@contextlib.contextmanager
def state_lock(lay: Layout) -> Iterator[None]:
    """Serialise up/down of one cluster (two shells, or a test and a developer); clusters apart do not wait
    for each other."""
    lock = lay.root.parent / f"{lay.root.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
