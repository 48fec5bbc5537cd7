"""The drill record (schema cityhub.io/drill/v1): one JSON document per drill, kept in two places.

    <state>/drills/<id>.json                          the checkout's history (every drill)
    ConfigMap cityhub-drills in cityhub-system (hub)  the cluster's recent drills (last KEPT), so anything
                                                      with read access to the cluster (the maturity
                                                      assessment, the dashboard) sees them

Times are seconds from the start of the switch: `appliedSeconds` when `pulumi up` returned, `inForceSeconds`
when every department quota's status held its spec (the quota admission enforces status.hard).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityhub import paths
from cityhub.drill.cluster import Target
from cityhub_api import labels

SCHEMA = "cityhub.io/drill/v1"
CONFIGMAP = "cityhub-drills"
KEPT = 12
"""Drills the ConfigMap holds (a few KB each, far below the 1 MiB object limit)."""
MANAGED_BY = "cityhub-drill"


@dataclass(frozen=True)
class ClusterPhase:
    cluster: str
    role: str
    in_force_seconds: float | None
    """None when the quotas were not in force within the timeout."""
    namespaces: int
    quotas: int
    moved: tuple[str, ...]
    """namespace/name of the quotas whose spec.hard changed in this phase."""


@dataclass(frozen=True)
class Phase:
    mode: str
    """emergency (急) or normal (平): the mode switched to."""
    applied_seconds: float
    pulumi_exit_code: int
    clusters: tuple[ClusterPhase, ...]
    problems: tuple[str, ...] = ()

    @property
    def in_force_seconds(self) -> float | None:
        """When the last cluster had every quota in force (None if one never did)."""
        times = [c.in_force_seconds for c in self.clusters]
        return None if not times or None in times else max(t for t in times if t is not None)

    @property
    def ok(self) -> bool:
        return self.pulumi_exit_code == 0 and self.in_force_seconds is not None and not self.problems


@dataclass(frozen=True)
class Drill:
    id: str
    stack: str
    city: str | None
    started_at: str
    finished_at: str
    phases: tuple[Phase, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return len(self.phases) == 2 and all(p.ok for p in self.phases) and not self.problems


def _phase(p: Phase) -> dict[str, Any]:
    return {
        "mode": p.mode,
        "ok": p.ok,
        "appliedSeconds": round(p.applied_seconds, 3),
        "inForceSeconds": None if p.in_force_seconds is None else round(p.in_force_seconds, 3),
        "pulumiExitCode": p.pulumi_exit_code,
        "clusters": [
            {
                "cluster": c.cluster,
                "role": c.role,
                "inForceSeconds": None if c.in_force_seconds is None else round(c.in_force_seconds, 3),
                "namespaces": c.namespaces,
                "quotas": c.quotas,
                "moved": list(c.moved),
            }
            for c in p.clusters
        ],
        "problems": list(p.problems),
    }


def to_dict(drill: Drill) -> dict[str, Any]:
    by_mode = {p.mode: _phase(p) for p in drill.phases}
    return {
        "schema": SCHEMA,
        "id": drill.id,
        "stack": drill.stack,
        "city": drill.city,
        "startedAt": drill.started_at,
        "finishedAt": drill.finished_at,
        "result": "passed" if drill.passed else "failed",
        "emergency": by_mode.get("emergency"),
        "normal": by_mode.get("normal"),
        "problems": [*drill.problems, *(x for p in drill.phases for x in p.problems)],
    }


def directory() -> Path:
    return paths.state_dir() / "drills"


def save_local(doc: dict[str, Any]) -> Path:
    path = directory() / f"{doc['id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def load_local() -> list[dict[str, Any]]:
    """The checkout's drills, oldest first."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory().glob("*.json"))]


def _configmap(target: Target) -> dict[str, Any] | None:
    proc = target.kubectl(
        "get", "configmap", CONFIGMAP, "-n", labels.SYSTEM_NAMESPACE, "-o", "json", check=False
    )
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def load_cluster(target: Target) -> list[dict[str, Any]]:
    """The cluster's recent drills, oldest first (ids are UTC timestamps, so they sort by time)."""
    found = _configmap(target)
    data = (found or {}).get("data") or {}
    return [json.loads(data[k]) for k in sorted(data)]


def save_cluster(target: Target, doc: dict[str, Any]) -> None:
    found = _configmap(target)
    data = dict((found or {}).get("data") or {})
    data[f"{doc['id']}.json"] = json.dumps(doc, ensure_ascii=False)
    kept = dict(sorted(data.items())[-KEPT:])
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP,
            "namespace": labels.SYSTEM_NAMESPACE,
            "labels": {labels.PART_OF: "cityhub", labels.MANAGED_BY: MANAGED_BY},
        },
        "data": kept,
    }
    target.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(manifest))
