"""The stack's clusters (多级贯通) on the dashboard: the hub and its edge clusters from `cityhub:clusters`,
the departments placed on each (Department.cluster: the stack's own placement rule, cityhub.config), and
each cluster's API server read with its own kubeconfig and context.

The cluster relying on the ambient kubeconfig (no `kubeconfig`, no `context`: the hub, usually) is the API
server the dashboard already reads (--kubeconfig, $KUBECONFIG or the embedded one). Every other cluster is
read separately, all at once, at the slower cadence of serve.EDGE_SECONDS: an unreachable edge costs one
timeout a minute, not one per refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths, stack_config
from cityhub.config import MASTER_KEY, build, rule_problems
from cityhub.config_schema import NAMESPACE, ConfigError, schema_problems
from cityhub.dashboard.cluster import ClusterState, Namespace, Reader, Requests
from cityhub.embedded_cluster.layout import HUB

PARALLEL_READS = 8
"""Clusters read at once: 160 street-office edges take 20 rounds, each bounded by the read's timeout."""


@dataclass(frozen=True)
class StackCluster:
    """One entry of `cityhub:clusters`, with the departments placed on it."""

    name: str
    role: str = "hub"
    """hub (中枢) or edge (边缘)."""
    division_code: str | None = None
    division_name: str | None = None
    """The district's name (cityhub:districts), or the city's for the city's own code, when known."""
    kubeconfig: str | None = None
    """As configured; a relative path is the project's (paths.repo_root(), as components/hub.py reads it)."""
    context: str | None = None
    departments: tuple[str, ...] = ()
    """Slugs of the departments placed on it, in the stack config's order."""

    def kubeconfig_path(self, ambient: Path) -> Path:
        """The kubeconfig to read it with: `ambient` (the dashboard's own) when the entry names none."""
        if self.kubeconfig is None:
            return ambient
        path = Path(self.kubeconfig).expanduser()
        return path if path.is_absolute() else paths.repo_root() / path

    def read_separately(self, ambient: Path) -> bool:
        """False for the cluster behind the dashboard's own kubeconfig (read on every refresh anyway)."""
        return self.context is not None or self.kubeconfig_path(ambient) != ambient


@dataclass(frozen=True)
class Topology:
    clusters: tuple[StackCluster, ...] = (StackCluster(HUB),)
    """The stack's clusters, hub first (without `cityhub:clusters`: one ambient hub, as the stack builds)."""
    error: str | None = None
    """Why the stack config's clusters could not be read (then only the ambient hub is shown)."""

    def placement(self) -> dict[str, str]:
        """Department namespace (dept-<slug>) → the cluster it is placed on."""
        return {f"dept-{slug}": c.name for c in self.clusters for slug in c.departments}



def place_name(places: dict[str, str], code: str | None) -> str | None:
    """The city's or a district's name; a street's (9-digit code) is shown under its district's."""
    if not code:
        return None
    if code in places:
        return places[code]
    district = places.get(code[:6])
    return f"{district} 街道 {code}" if district else None

def topology(stack: str) -> Topology:
    """The clusters of `stack` and their departments; Topology(error=…) when the config cannot tell."""
    path = stack_config.readable(stack)
    if path is None:
        return Topology(error=f"no stacks/Pulumi.{stack}.yaml: the clusters are unknown")
    try:
        config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
        prefix = f"{NAMESPACE}:"
        raw = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
        raw.pop(MASTER_KEY, None)  # a secret (encrypted in the working copy); no placement depends on it
        # The stack's own validation and placement rule; the master key's check is the deployment's concern.
        problems = schema_problems(raw) or rule_problems(raw)
        if problems:
            raise ConfigError(problems)
        hub = build(raw)
    except (OSError, yaml.YAMLError, ConfigError, AttributeError) as e:
        return Topology(error=f"{path}: {e}")
    places = {**hub.districts, hub.division_code: hub.city}
    return Topology(
        tuple(
            StackCluster(
                name=c.name,
                role=c.role,
                division_code=c.division_code,
                division_name=place_name(places, c.division_code),
                kubeconfig=c.kubeconfig,
                context=c.context,
                departments=tuple(d.slug for d in hub.departments_on(c.name)),
            )
            for c in hub.clusters
        )
    )


def read_separately(top: Topology, ambient: Path, reader: Reader) -> dict[str, ClusterState]:
    """Cluster name → its state, for every cluster not behind the dashboard's own kubeconfig, read in
    parallel."""
    todo = [c for c in top.clusters if c.read_separately(ambient)]
    if not todo:
        return {}
    with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(todo))) as pool:
        states = pool.map(lambda c: reader(c.kubeconfig_path(ambient), c.context), todo)
        return {c.name: s for c, s in zip(todo, states, strict=True)}


@dataclass(frozen=True)
class Read:
    """The API servers as read this refresh: the dashboard's own (`main`) and the others by cluster name."""

    top: Topology
    ambient: Path
    main: ClusterState
    others: Mapping[str, ClusterState]

    def state(self, c: StackCluster) -> ClusterState:
        if not c.read_separately(self.ambient):
            return self.main
        return self.others.get(c.name) or ClusterState(error="not read yet / 尚未读取")

    def namespaces(self) -> list[Namespace]:
        """Department namespaces of every cluster read (the mode in force counts the edges' responders)."""
        return [*self.main.namespaces, *(n for s in self.others.values() for n in s.namespaces)]

    def requests(self) -> dict[tuple[str, str], Requests]:
        """(namespace, type) → requests, each department's from the cluster it is placed on; namespaces the
        stack config does not place, from the dashboard's own API server first."""
        placed = self.top.placement()
        own = {c.name for c in self.top.clusters if not c.read_separately(self.ambient)}
        out = {k: r for k, r in self.main.requests.items() if k[0] not in placed or placed[k[0]] in own}
        for name, st in self.others.items():
            for key, r in st.requests.items():
                if placed.get(key[0]) == name:
                    out[key] = r
                elif key[0] not in placed:
                    out.setdefault(key, r)
        return out

    def unreadable(self) -> dict[str, str]:
        """Department namespace → the error of the cluster it is placed on, when that one was not read."""
        errors = {c.name: self.state(c).error for c in self.top.clusters}
        return {ns: e for ns, where in self.top.placement().items() if (e := errors.get(where))}

    def errors(self) -> list[dict[str, str]]:
        """The separately read clusters that failed, for the page's list of unreadable sources."""
        return [
            {"source": f"kubernetes:{c.name}", "message": err}
            for c in self.top.clusters
            if c.read_separately(self.ambient) and (err := self.state(c).error)
        ]

    def panel(self, names: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """The clusters panel's JSON (docs/dashboard.md): one entry per cluster of the stack."""
        out = []
        for c in self.top.clusters:
            st = self.state(c)
            ok = st.error is None
            total = sum(r.total for r in st.requests.values())
            ready = sum(r.ready for r in st.requests.values())
            out.append(
                {
                    "name": c.name,
                    "role": c.role,
                    "divisionCode": c.division_code,
                    "divisionName": c.division_name,
                    "kubeconfig": str(c.kubeconfig_path(self.ambient)),
                    "context": c.context,
                    "departments": [
                        {"label": f"dept-{slug}", "slug": slug, "name": names.get(f"dept-{slug}")}
                        for slug in c.departments
                    ],
                    "reachable": ok,
                    "error": st.error,
                    "readAt": st.read_at.isoformat() if st.read_at else None,
                    "namespaces": len(st.namespaces) if ok else None,
                    "requests": total if ok else None,
                    "ready": ready if ok else None,
                    "unmet": total - ready if ok else None,
                }
            )
        return out
