"""`cityhub drill [--stack dev] [--timeout 300]`: 平急演练, emergency mode and back, timed and recorded.

1. checks the stack is up and in normal mode (平时), every department quota in force;
2. `pulumi up` with cityhub:mode=emergency from a scratch copy of the stack config (<state>/drills/), so no
   stack config file changes: an interrupted drill leaves the config in normal mode and `cityhub up` restores
   it; then polls every cluster until every department's quotas are in force, and checks that emergency
   responders, and only they, may run pods at the emergency priority;
3. `pulumi up` with the stack's own config (normal mode, always, even when step 2 failed), polls again and
   checks every quota and priority label is back as it was;
4. writes the record (cityhub.drill.record) and prints the times. Exit code 0 when the drill passed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cityhub import stack_config
from cityhub.config import ConfigError, load_config
from cityhub.config_model import HubConfig
from cityhub.drill import cluster, record
from cityhub.drill.cluster import Snapshot, Target
from cityhub.drill.record import ClusterPhase, Drill, Phase

PREFIX = "cityhub:"
MODE_KEY = "cityhub:mode"
SECRET_KEYS = ("backendsMasterKey",)
"""Encrypted in the working copy; the drill needs departments and clusters, never the secrets."""
POLL_SECONDS = 0.2


class DrillError(RuntimeError):
    """The drill cannot start; the message says what to do."""


def stack_document(stack: str) -> dict[str, Any]:
    """The stack's working copy of its config (cityhub.stack_config), as Pulumi reads it."""
    path = stack_config.sync(stack)
    if not path.exists():
        raise DrillError(f"no stack config for {stack}: expected stacks/Pulumi.{stack}.yaml")
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def hub_config(document: Mapping[str, Any]) -> HubConfig:
    raw = {
        k.removeprefix(PREFIX): v
        for k, v in (document.get("config") or {}).items()
        if k.startswith(PREFIX) and k.removeprefix(PREFIX) not in SECRET_KEYS
    }
    try:
        return load_config(raw)
    except ConfigError as e:
        raise DrillError(f"the stack config is not valid, fix it before a drill:\n{e}") from e


def emergency_config(stack: str, document: Mapping[str, Any]) -> Path:
    """A scratch copy of the working copy with cityhub:mode=emergency (salt and secrets kept)."""
    doc = dict(document)
    doc["config"] = {**(document.get("config") or {}), MODE_KEY: "emergency"}
    path = record.directory() / f"Pulumi.{stack}.emergency.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def baseline(targets: tuple[Target, ...]) -> dict[str, Snapshot]:
    try:
        snaps = {t.cluster: cluster.snapshot(t) for t in targets}
    except RuntimeError as e:  # kubectl: no cluster, no kubeconfig, no access
        raise DrillError(f"cannot read the cluster ({e}): is the stack up? run `cityhub up` first") from e
    for t in targets:
        gone = cluster.missing(t, snaps[t.cluster])
        if gone:
            raise DrillError(
                f"cluster {t.cluster} lacks the quotas of {', '.join(gone)}: run `cityhub up` first"
            )
        waiting = snaps[t.cluster].waiting
        if waiting:
            raise DrillError(f"cluster {t.cluster}: quotas not in force yet ({', '.join(waiting)}); retry")
    return snaps


def switch(
    mode: str,
    stack: str,
    config_file: Path | None,
    targets: tuple[Target, ...],
    before: Mapping[str, Snapshot],
    check: Callable[[Target, Snapshot], list[str]],
    timeout: float,
) -> tuple[Phase, dict[str, Snapshot]]:
    """`pulumi up` into `mode`, then poll every cluster until its quotas are in force (or `timeout`)."""
    from cityhub.cli import run_pulumi  # the CLI's own pulumi runner (offline env, working-copy config)

    start = time.monotonic()
    args = ["up", "--yes", "--skip-preview", "--stack", stack]
    code = run_pulumi([*args, "--config-file", str(config_file)] if config_file else args, check=False)
    applied = time.monotonic() - start
    snaps: dict[str, Snapshot] = {}
    in_force: dict[str, float] = {}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        for t in targets:
            if t.cluster in in_force:
                continue
            try:
                snaps[t.cluster] = cluster.snapshot(t)
            except RuntimeError as e:  # an API server restarting is not in force yet; retried to the deadline
                errors[t.cluster] = str(e)
                continue
            if not snaps[t.cluster].waiting:
                in_force[t.cluster] = time.monotonic() - start
        if len(in_force) == len(targets) or time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    problems = [] if code == 0 else [f"pulumi up into {mode} mode failed with exit code {code}"]
    phases = []
    for t in targets:
        snap = snaps.get(t.cluster)
        if snap is None:
            problems.append(f"{t.cluster}: could not be read: {errors.get(t.cluster)}")
            snap = Snapshot(quotas={}, priority={})
        elif t.cluster not in in_force:
            problems.append(f"{t.cluster}: not in force after {timeout:g} s: {', '.join(snap.waiting)}")
        problems += check(t, snap)
        phases.append(
            ClusterPhase(
                cluster=t.cluster,
                role=t.role,
                in_force_seconds=in_force.get(t.cluster),
                namespaces=len(t.namespaces),
                quotas=len(snap.quotas),
                moved=tuple(cluster.moved(before[t.cluster], snap)),
            )
        )
    return Phase(mode, applied, code, tuple(phases), tuple(problems)), snaps


def run(stack: str, timeout: float) -> Drill:
    document = stack_document(stack)
    mode = (document.get("config") or {}).get(MODE_KEY, "normal")
    if mode != "normal":
        raise DrillError(
            f"stack {stack} is in {mode} mode (急时): a drill goes from normal mode (平时) to emergency and "
            "back; run it when cityhub:mode is normal"
        )
    config = hub_config(document)
    targets = cluster.targets(config)
    if not targets:
        raise DrillError(f"stack {stack} has no departments: nothing to drill")
    start = baseline(targets)
    started = datetime.now(UTC).replace(microsecond=0)
    phases: list[Phase] = []
    during: Mapping[str, Snapshot] = start
    scratch = emergency_config(stack, document)
    try:
        emergency, during = switch(
            "emergency",
            stack,
            scratch,
            targets,
            start,
            lambda t, s: cluster.emergency_problems(t, start[t.cluster], s),
            timeout,
        )
        phases.append(emergency)
    finally:
        scratch.unlink(missing_ok=True)
        # Back to normal whatever happened, from the stack's own config.
        normal, _ = switch(
            "normal",
            stack,
            None,
            targets,
            during,
            lambda t, s: cluster.restored_problems(t, start[t.cluster], s),
            timeout,
        )
        phases.append(normal)
    return Drill(
        id=started.strftime("%Y%m%dT%H%M%SZ"),
        stack=stack,
        city=config.city,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        phases=tuple(phases),
    )


def _seconds(value: float | None) -> str:
    return "未生效 / not in force" if value is None else f"{value:.1f} s"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cityhub drill",
        description="平急演练 / emergency drill: switch to emergency mode and back, time it, record it",
    )
    p.add_argument("--stack", default="dev", help="stack to drill (default dev)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds each mode may take to be in force (300)"
    )
    return p


def main(argv: list[str]) -> int:
    ns = parser().parse_args(argv)
    try:
        drill = run(ns.stack, ns.timeout)
    except DrillError as e:
        print(f"cityhub drill: {e}", file=sys.stderr)
        return 1
    doc = record.to_dict(drill)
    path = record.save_local(doc)
    config = hub_config(stack_document(ns.stack))
    targets = cluster.targets(config)
    hub = next((t for t in targets if t.role == "hub"), targets[0])
    where = f"ConfigMap {record.CONFIGMAP} in cluster {hub.cluster}"
    try:
        record.save_cluster(hub, doc)
    except RuntimeError as e:
        where = f"not the ConfigMap ({e})"
    emergency, normal = drill.phases[0], drill.phases[-1]
    print(
        f"平急演练 / drill {drill.id} ({ns.stack}): "
        f"急时 emergency in force after {_seconds(emergency.in_force_seconds)} "
        f"(pulumi up {emergency.applied_seconds:.1f} s); "
        f"平时 normal in force after {_seconds(normal.in_force_seconds)} "
        f"(pulumi up {normal.applied_seconds:.1f} s): {doc['result']}"
    )
    for problem in doc["problems"]:
        print(f"  - {problem}", file=sys.stderr)
    print(f"wrote {path} and {where}")
    return 0 if drill.passed else 1
