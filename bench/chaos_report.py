"""The invariants a chaos run checks at its end, and the table it prints (bench/chaos.py).

every request Ready, or unmet with a reason (Ready=False, a reason other than BackendUnavailable or
    DeleteFailed, observedGeneration current); every deleted request gone
no request without conditions
backend objects = Ready requests: each Ready request has exactly the objects its type makes
    (chaos_inventory.expected), made for its uid; no object of an unmet, deleted or unknown request
    (orphans), none twice (duplicates)
every Ready request has exactly one Secret, and its credentials work (the driver's probe)
a request meant to be met is not unmet (a fault must not turn into a permanent refusal), and one meant to
    be unmet ends with the reason the workload expects
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos_faults import Fault
from chaos_inventory import BackendObject, ProbeResult, expected
from chaos_workload import Planned

TRANSIENT = ("BackendUnavailable", "DeleteFailed")


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def state_of(obj: Mapping[str, Any]) -> str:
    """ready, unmet, none (no conditions) or pending (still being retried, or not for this generation)."""
    status = obj.get("status") or {}
    if not status.get("conditions"):
        return "none"
    generation = int(obj["metadata"].get("generation") or 0)
    ready, synced = condition(obj, "Ready"), condition(obj, "Synced")
    if ready.get("observedGeneration") != generation:
        return "pending"
    if ready.get("status") == "True":
        return "ready" if synced.get("status") == "True" else "pending"
    return "pending" if ready.get("reason") in TRANSIENT else "unmet"


@dataclass
class Report:
    planned: list[Planned]
    faults: list[Fault]
    settings: dict[str, str]
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(type, namespace, name) → the request as the API server has it at the end."""
    secrets: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(namespace, request name) → how many Secrets the operator made for it."""
    inventory: dict[str, list[BackendObject]] = field(default_factory=dict)
    probes: list[ProbeResult] = field(default_factory=list)
    converged_after: float | None = None
    """Seconds from the end of the last fault until every request was settled; None: never."""
    last_fault_end: float = 0.0
    operator_restarts: int = 0
    unplanned_restarts: list[str] = field(default_factory=list)
    max_rss: int = 0
    health: list[tuple[float, int]] = field(default_factory=list)
    wall: float = 0.0
    log: str = ""
    """What the operator's log holds: lines per severity, tracebacks."""
    problems: list[str] = field(default_factory=list)
    """What the run itself could not do (a fault that failed, an inventory that could not be read)."""

    # -- invariants --------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for p in self.planned:
            obj = self.objects.get((p.type_name, *p.key))
            if p.delete_wave is not None:
                c["deleted"] += 1
                c["deleted, still present"] += obj is not None
                continue
            state = state_of(obj) if obj else "missing"
            c[state] += 1
            if state == "unmet":
                reason = str(condition(obj or {}, "Ready").get("reason", ""))
                c["unmet, wrongly (meant to be met)"] += p.expect == "ready"
                c["unmet, other reason than expected"] += p.expect not in ("ready", reason)
            elif state == "ready":
                c["ready, meant to be unmet"] += p.expect != "ready"
        ready = self.ready_keys()
        c["secrets of ready requests, exactly one"] = sum(self.secrets[(t[1], t[2])] == 1 for t in ready)
        c["secrets missing or twice"] = sum(self.secrets[(t[1], t[2])] != 1 for t in ready)
        ready_names = {(t[1], t[2]) for t in ready}
        c["secrets of requests not ready"] = sum(n for k, n in self.secrets.items() if k not in ready_names)
        orphans, duplicates, missing, stale = self.backend_checks()
        c["backend objects"] = sum(len(v) for v in self.inventory.values())
        c["orphans"], c["duplicates"] = len(orphans), len(duplicates)
        c["missing objects"], c["wrong uid"] = len(missing), len(stale)
        c["probes ok"] = sum(p.ok for p in self.probes)
        c["probes failed"] = sum(not p.ok for p in self.probes)
        return dict(c)

    def ready_keys(self) -> set[tuple[str, str, str]]:
        return {
            (p.type_name, *p.key)
            for p in self.planned
            if p.delete_wave is None and state_of(self.objects.get((p.type_name, *p.key)) or {}) == "ready"
        }

    def backend_checks(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """(orphans, duplicates, missing, wrong uid): one line each, naming the object and its request."""
        ready = self.ready_keys()
        orphans, duplicates, missing, stale = [], [], [], []
        by_request: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
        for type_name, objects in self.inventory.items():
            for o in objects:
                full = (type_name, *o.key)
                if full not in ready:
                    obj = self.objects.get(full)
                    why = f"request {state_of(obj)}" if obj else "no such request (deleted or never made)"
                    orphans.append(f"{type_name} {o.what} {o.ident} of {o.key[0]}/{o.key[1]}: {why}")
                    continue
                by_request[full][o.what] += 1
                uid = self.objects[full]["metadata"]["uid"]
                if o.uid and o.uid != uid:
                    stale.append(f"{type_name} {o.what} {o.ident}: made for uid {o.uid}, request has {uid}")
        for full in sorted(ready):
            if full[0] not in self.inventory:
                continue  # its backend could not be read: reported in problems
            spec = self.objects[full].get("spec") or {}
            have = by_request.get(full, Counter())
            for what, n in expected(full[0], spec).items():
                if have[what] < n:
                    missing.append(f"{full[0]} {full[1]}/{full[2]}: no {what}")
            for what, n in have.items():
                if n > expected(full[0], spec).get(what, 0):
                    duplicates.append(f"{full[0]} {full[1]}/{full[2]}: {n} x {what}")
        return orphans, duplicates, missing, stale

    def failures(self) -> list[str]:
        """Every broken invariant, one line each (empty: the run passed)."""
        c = self.counts()
        out = list(self.problems)
        if self.converged_after is None:
            out.append("not every request settled (Ready, or unmet with a reason) before the deadline")
        for name in (
            "none",
            "pending",
            "missing",
            "deleted, still present",
            "unmet, wrongly (meant to be met)",
            "unmet, other reason than expected",
            "ready, meant to be unmet",
            "secrets missing or twice",
            "secrets of requests not ready",
            "orphans",
            "duplicates",
            "missing objects",
            "wrong uid",
            "probes failed",
        ):
            if c.get(name):
                out.append(f"{name}: {c[name]}")
        orphans, duplicates, missing, stale = self.backend_checks()
        out += [f"  orphan: {x}" for x in orphans[:20]]
        out += [f"  duplicate: {x}" for x in duplicates[:20]]
        out += [f"  missing: {x}" for x in missing[:20]]
        out += [f"  wrong uid: {x}" for x in stale[:20]]
        out += [f"  probe {p.type_name} {p.key[0]}/{p.key[1]}: {p.detail}" for p in self.probes if not p.ok][
            :20
        ]
        for p in self.planned:
            obj = self.objects.get((p.type_name, *p.key))
            if p.delete_wave is None and obj is not None and state_of(obj) in ("none", "pending"):
                ready = condition(obj, "Ready")
                out.append(
                    f"  {state_of(obj)}: {p.kind} {p.namespace}/{p.name}: Ready={ready.get('status')} "
                    f"{ready.get('reason', '')} {str(ready.get('message', ''))[:160]}"
                )
            if p.delete_wave is None and obj is not None and state_of(obj) == "unmet" and p.expect == "ready":
                ready = condition(obj, "Ready")
                out.append(
                    f"  wrongly unmet: {p.kind} {p.namespace}/{p.name}: {ready.get('reason')} "
                    f"{str(ready.get('message', ''))[:200]}"
                )
        return out

    # -- the table -----------------------------------------------------------------------------------------

    def table(self) -> str:
        lines = ["faults injected (seconds from the start of the workload)"]
        lines.append(f"  {'fault':<16} {'target':<10} {'began':>7} {'ended':>7} {'hold':>6}  detail")
        for f in self.faults:
            began = f"{f.began:.0f}" if f.began is not None else "-"
            ended = f"{f.ended:.0f}" if f.ended is not None else "-"
            note = (f.detail + (f" ERROR {f.error}" if f.error else ""))[:110]
            lines.append(f"  {f.what:<16} {f.target:<10} {began:>7} {ended:>7} {f.hold:>6.0f}  {note}")
        conv = f"{self.converged_after:.0f} s" if self.converged_after is not None else "NOT CONVERGED"
        types = Counter(p.type_name for p in self.planned)
        lines += [
            "",
            f"requests: {len(self.planned)} ({', '.join(f'{t} {n}' for t, n in types.items())}) over "
            f"{len({p.namespace for p in self.planned})} departments",
            f"last fault ended at {self.last_fault_end:.0f} s; convergence after it: {conv}",
            f"operator restarts: {self.operator_restarts} planned (SIGKILL), "
            f"{len(self.unplanned_restarts)} unplanned; max RSS {self.max_rss / 2**20:.0f} MiB",
            "operator /healthz: " + ", ".join(f"{t:.0f}s→{s or 'no answer'}" for t, s in self.health[:30]),
            f"operator log: {self.log}",
            f"wall time {self.wall / 60:.1f} min; settings: "
            + ", ".join(f"{k}={v}" for k, v in self.settings.items()),
            "",
            "invariants at the end",
        ]
        for name, n in self.counts().items():
            lines.append(f"  {name:<40} {n:>6}")
        failures = self.failures()
        lines += ["", "PASSED: every invariant holds" if not failures else f"FAILED ({len(failures)} lines):"]
        lines += [f"  {x}" for x in failures[:80]]
        lines += [f"  unplanned exit: {u}" for u in self.unplanned_restarts]
        return "\n".join(lines)
