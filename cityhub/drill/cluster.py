"""What is in force in one cluster: the departments' ResourceQuotas and their priority-class labels.

A ResourceQuota binds through its status: the API server's quota admission checks `status.hard`, which the
quota controller (kube-controller-manager) copies from `spec.hard` after a change. So a quota written by
`pulumi up` is in force once `status.hard == spec.hard`; until then the old limits still apply. A quota with
a PriorityClass scope selector is a PriorityClass quota (the one gating the emergency priority).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityhub import testkit
from cityhub.config_model import Cluster, HubConfig
from cityhub.pulumi_env import kubeconfig as ambient_kubeconfig
from cityhub_api import labels


@dataclass(frozen=True)
class Target:
    """One cluster of the stack and its departments."""

    cluster: str
    role: str
    kubeconfig: Path
    context: str | None
    namespaces: tuple[str, ...]
    responders: frozenset[str]
    """Namespaces of emergency responders (emergencyResponder: true): they get the emergency priority."""

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        context = ("--context", self.context) if self.context else ()
        return testkit.kubectl(self.kubeconfig, *context, *args, stdin=stdin, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json").stdout))


def targets(config: HubConfig) -> tuple[Target, ...]:
    """Every cluster that holds departments, hub first (the stack's order)."""

    def path(cluster: Cluster) -> Path:
        return Path(cluster.kubeconfig or ambient_kubeconfig()).expanduser()

    out = []
    for cluster in config.clusters:
        depts = config.departments_on(cluster.name)
        if depts:
            out.append(
                Target(
                    cluster=cluster.name,
                    role=cluster.role,
                    kubeconfig=path(cluster),
                    context=cluster.context,
                    namespaces=tuple(d.namespace for d in depts),
                    responders=frozenset(d.namespace for d in depts if d.emergency_responder),
                )
            )
    return tuple(out)


@dataclass(frozen=True)
class Quota:
    namespace: str
    name: str
    spec: Mapping[str, str]
    status: Mapping[str, str]
    priority_scoped: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def in_force(self) -> bool:
        return bool(self.spec) and dict(self.status) == dict(self.spec)

    @property
    def emergency_pods(self) -> bool:
        """A PriorityClass quota in force that lets pods run at its priority."""
        return self.priority_scoped and self.status.get("pods", "0") != "0"


@dataclass(frozen=True)
class Snapshot:
    """The departments' quotas and priority-class labels in one cluster, at one moment."""

    quotas: Mapping[str, Quota]
    """namespace/name → quota."""
    priority: Mapping[str, str]
    """namespace → its cityhub.io/priority-class label."""

    @property
    def waiting(self) -> tuple[str, ...]:
        """Quotas whose status does not yet hold their spec."""
        return tuple(k for k, q in sorted(self.quotas.items()) if not q.in_force)

    def specs(self) -> dict[str, dict[str, str]]:
        return {k: dict(q.spec) for k, q in sorted(self.quotas.items())}


def _scoped(spec: Mapping[str, Any]) -> bool:
    selector = spec.get("scopeSelector") or {}
    return any(e.get("scopeName") == "PriorityClass" for e in selector.get("matchExpressions") or [])


def snapshot(target: Target) -> Snapshot:
    wanted = set(target.namespaces)
    quotas = {}
    for item in target.get("resourcequotas", "--all-namespaces", "-l", f"{labels.PART_OF}=cityhub")["items"]:
        meta, spec = item["metadata"], item.get("spec") or {}
        if meta["namespace"] not in wanted:
            continue
        quota = Quota(
            namespace=meta["namespace"],
            name=meta["name"],
            spec=dict(spec.get("hard") or {}),
            status=dict((item.get("status") or {}).get("hard") or {}),
            priority_scoped=_scoped(spec),
        )
        quotas[quota.key] = quota
    priority = {}
    for item in target.get("namespaces", "-l", f"{labels.TENANT}=department")["items"]:
        name = item["metadata"]["name"]
        if name in wanted:
            priority[name] = (item["metadata"].get("labels") or {}).get(labels.PRIORITY_CLASS, "")
    return Snapshot(quotas=quotas, priority=priority)


def missing(target: Target, snap: Snapshot) -> list[str]:
    """Departments of the stack without a namespace or quotas in the cluster (the stack is not up)."""
    have = {q.namespace for q in snap.quotas.values()}
    return [ns for ns in target.namespaces if ns not in have or ns not in snap.priority]


def emergency_problems(target: Target, baseline: Snapshot, now: Snapshot) -> list[str]:
    """What is not as emergency mode wants it: responders may run pods at the emergency priority under a new
    priority-class label, nobody else may; at least something moved."""
    problems = []
    for ns in target.namespaces:
        scoped = [q for q in now.quotas.values() if q.namespace == ns and q.priority_scoped]
        responder = ns in target.responders
        if responder and not any(q.emergency_pods for q in scoped):
            problems.append(
                f"{target.cluster}: {ns} is an emergency responder but its PriorityClass quota "
                "allows no pods at the emergency priority"
            )
        if not responder and any(q.emergency_pods for q in scoped):
            problems.append(f"{target.cluster}: {ns} is no emergency responder but may run emergency pods")
        if responder and now.priority.get(ns) == baseline.priority.get(ns):
            problems.append(
                f"{target.cluster}: {ns}'s {labels.PRIORITY_CLASS} label did not move "
                f"(still {now.priority.get(ns)!r})"
            )
    if not moved(baseline, now):
        problems.append(f"{target.cluster}: no quota moved: no department has an emergencyQuota")
    return problems


def restored_problems(target: Target, baseline: Snapshot, now: Snapshot) -> list[str]:
    """What normal mode did not put back as it was before the drill."""
    problems = [f"{target.cluster}: {k} is not back to {baseline.specs()[k]}" for k in moved(baseline, now)]
    problems += [
        f"{target.cluster}: {ns}'s {labels.PRIORITY_CLASS} is {now.priority.get(ns)!r}, was {label!r}"
        for ns, label in sorted(baseline.priority.items())
        if now.priority.get(ns) != label
    ]
    return problems


def moved(before: Snapshot, after: Snapshot) -> list[str]:
    """Quotas whose spec.hard differs between the two snapshots."""
    a, b = before.specs(), after.specs()
    return sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
