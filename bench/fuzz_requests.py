"""Fuzzing the component API: thousands of invalid or hostile requests of every kind against the real API
server, with the operator running on every real backend (issue 15).

    .venv/bin/python bench/fuzz_requests.py --count 10000 --seed 1
    .venv/bin/python bench/fuzz_requests.py --count 300 --seed 7 --kubeconfig ~/.kube/config --json out.json

Each request must end one of three ways: refused at admission with a message naming the field, admitted and
reported unmet (Ready=False with a reason and a message), or provisioned (Ready=True); then it is deleted and
must go away. At the end the operator must be the same process, alive, with no Traceback in its log; the
backends' processes alive; and no backend hold an object of a request that was refused, unmet or deleted
(asked of each backend's own inventory: NATS accounts and streams, PostGIS, Keycloak, the inference
gateway's routes and MLServer). The cases (bench/fuzzing/cases.py) are mutations of the docs' examples and
specs hypothesis-jsonschema generates from the CRDs, deterministic for a seed.

Starts an embedded cluster in a temporary directory unless --kubeconfig is given; stops what it started.
Prints a table; exits 1 when an invariant failed (the failures are listed under it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fuzzing import inventory
from fuzzing.cases import generate
from fuzzing.environment import FuzzCity, OperatorUnderTest
from fuzzing.runner import Outcome, Runner
from readiness import cluster_for

from cityhub import testkit as testing
from cityhub_api import registry

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Report:
    count: int
    seed: int
    batches: int
    outcomes: list[Outcome] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    secret_problems: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)
    stuck: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def states(self) -> Counter[str]:
        return Counter(o.state for o in self.outcomes)

    def failures(self) -> list[str]:
        """Every broken invariant, one line each (empty: the API and the operator held)."""
        out = [f"crash: {c}" for c in self.crashes]
        out += [f"orphan: {o}" for o in self.orphans]
        out += [f"Secret: {s}" for s in self.secret_problems]
        out += [f"victim Secret: {v}" for v in self.victims]
        for o in self.outcomes:
            c = o.case
            where = f"#{c.number} {c.kind} {c.namespace}/{c.name} [{c.family}: {c.detail[:120]!r}]"
            for r, what in ((o.refusal, "create"), (o.update_refusal, f"update ({c.update_detail})")):
                if r is not None and not r.names_field:
                    out.append(f"refusal naming no field: {where} {what} → {r.status} {r.message[:300]}")
                if r is not None and r.status >= 500:
                    out.append(f"server error: {where} {what} → {r.status} {r.message[:300]}")
            if o.client_error:
                out.append(f"client error: {where} → {o.client_error}")
            if o.state == "no-conditions":
                out.append(f"no conditions: {where} uid {o.uid}")
        out += [
            f"stuck on delete: #{o.case.number} {o.case.namespace}/{o.case.name} ({o.reason})"
            for o in self.stuck
        ]
        for members in self.groups("colliding-names").values():
            if any(o.state != "ready" for o in members):
                shown = ", ".join(
                    f"{o.case.namespace}/{o.case.name} {o.state} {o.reason}".strip() for o in members
                )
                out.append(f"colliding names not both Ready: {shown}")
        return out

    def groups(self, family: str) -> dict[int, list[Outcome]]:
        out: dict[int, list[Outcome]] = {}
        for o in self.outcomes:
            if o.case.family == family and o.case.group >= 0:
                out.setdefault(o.case.group, []).append(o)
        return out

    def table(self) -> str:
        states = self.states()
        refused = [o.refusal for o in self.outcomes if o.refusal is not None]
        admitted = [o for o in self.outcomes if o.admitted]
        unmet = Counter(o.reason for o in admitted if o.state in ("unmet", "retrying"))
        updates = [o for o in admitted if o.case.update is not None]
        controls = [o for o in self.outcomes if o.case.family == "control"]
        pairs = self.groups("colliding-names").values()
        both = sum(1 for members in pairs if all(o.state == "ready" for o in members))
        floods = [o for members in self.groups("share-flood").values() for o in members]
        failures = self.failures()
        rows: list[tuple[str, object]] = [
            ("generated", len(self.outcomes)),
            ("refused at admission", len(refused)),
            *((f"  {family}", n) for family, n in Counter(r.family for r in refused).most_common()),
            ("admitted", len(admitted)),
            ("  → Ready", states["ready"]),
            *((f"  → unmet: {reason}", n) for reason, n in unmet.most_common()),
            ("  → gone before settling (garbage-collected)", states["vanished"]),
            ("  → without conditions", states["no-conditions"]),
            ("updates of admitted requests", len(updates)),
            ("  refused", sum(1 for o in updates if o.update_refusal is not None)),
            ("  admitted", sum(1 for o in updates if o.update_admitted)),
            ("controls Ready / made", f"{sum(o.state == 'ready' for o in controls)} / {len(controls)}"),
            ("colliding pairs both Ready / made", f"{both} / {len(pairs)}"),
            (
                "share floods: channels Ready / unmet TooManyShares / made",
                f"{sum(o.state == 'ready' for o in floods)} / "
                f"{sum(o.reason == 'TooManyShares' for o in floods)} / {len(floods)}",
            ),
            ("refusals naming no field", sum(1 for f in failures if f.startswith("refusal naming"))),
            ("server errors (HTTP 5xx)", sum(1 for f in failures if f.startswith("server error"))),
            ("client errors", sum(1 for o in self.outcomes if o.client_error)),
            ("operator crashes, restarts, tracebacks; backends down", len(self.crashes)),
            ("orphans (backend objects of refused, unmet or deleted requests)", len(self.orphans)),
            (
                "Secrets of requests not Ready; victim Secrets touched",
                len(self.secret_problems) + len(self.victims),
            ),
            ("requests stuck on delete", len(self.stuck)),
            ("seconds", round(self.seconds)),
        ]
        width = max(len(r[0]) for r in rows) + 2
        head = f"request fuzz: {self.count} requests, seed {self.seed}, {self.batches} batches\n"
        return head + "\n".join(f"{label:<{width}}{value:>8}" for label, value in rows)

    def families(self) -> str:
        """Per family: made, refused at admission, Ready, unmet (or retrying), other."""
        rows = [("family", "made", "refused", "Ready", "unmet", "other")]
        for family in sorted({o.case.family for o in self.outcomes}):
            of = [o for o in self.outcomes if o.case.family == family]
            n = Counter(o.state for o in of)
            other = len(of) - n["refused"] - n["ready"] - n["unmet"] - n["retrying"]
            rows.append((family, len(of), n["refused"], n["ready"], n["unmet"] + n["retrying"], other))
        return "\n".join(f"{r[0]:<20}" + "".join(f"{v!s:>9}" for v in r[1:]) for r in rows)

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "seed": self.seed,
            "states": dict(self.states()),
            "refusals": dict(Counter(o.refusal.family for o in self.outcomes if o.refusal)),
            "unmet": dict(Counter(o.reason for o in self.outcomes if o.state in ("unmet", "retrying"))),
            "failures": self.failures(),
            "seconds": round(self.seconds, 1),
        }


def chunks(cases: list, size: int) -> list[list]:  # type: ignore[type-arg]
    """Batches of about `size`; a group (a colliding pair, a share flood) is never split."""
    out, current = [], []
    for case, following in zip(cases, [*cases[1:], None], strict=True):
        current.append(case)
        if len(current) >= size and (case.group < 0 or following is None or following.group != case.group):
            out.append(current)
            current = []
    return out + ([current] if current else [])


def run(
    kubeconfig: Path,
    work: Path,
    *,
    count: int,
    seed: int,
    batch: int = 250,
    workers: int = 8,
    wait: float = 600,
    quiet: float = 90,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> Report:
    """Install the city on `kubeconfig`, start the backends and the operator in `work`, fuzz, check and
    clean up."""
    started = time.monotonic()
    city = FuzzCity(kubeconfig)
    operator = OperatorUnderTest(kubeconfig, work)
    run_id = f"s{seed}-{int(time.time())}"
    cases = generate(count, seed, run_id, city.config)
    batches = chunks(cases, batch)
    report = Report(count=len(cases), seed=seed, batches=len(batches))
    try:
        city.install()
        log(f"city installed ({len(city.namespaces)} departments); starting the backends and the operator")
        operator.start()
        log(f"operator pid {operator.started[0]}; {len(cases)} cases in {len(batches)} batches")
        api = testing.api(kubeconfig)
        runner = Runner(api, run_id, workers=workers, wait=wait, quiet=quiet, log=log)
        for i, part in enumerate(batches, 1):
            t0 = time.monotonic()
            done = Counter(o.state for o in runner.batch(part))
            log(
                f"batch {i}/{len(batches)}: {len(part)} cases, {done['refused']} refused, "
                f"{done['ready']} Ready, {done['unmet'] + done['retrying']} unmet, "
                f"{len(part) - done['refused'] - done['ready'] - done['unmet'] - done['retrying']} other "
                f"in {time.monotonic() - t0:.0f}s"
            )
        write_outcomes(work / "outcomes.jsonl", runner.outcomes)
        report.outcomes, report.stuck, report.secret_problems = (
            runner.outcomes,
            runner.stuck,
            runner.secret_problems,
        )
        report.crashes = operator.crashes()
        report.victims = city.victims_intact(api)
        report.orphans = orphans(report.outcomes, operator.env, city.namespaces)
    finally:
        report.seconds = time.monotonic() - started
        operator.close()
        city.close()
    return report


def write_outcomes(path: Path, outcomes: list[Outcome]) -> None:
    """One JSON line per case: what was sent, and how it ended (for reading a run afterwards)."""
    with path.open("w", encoding="utf-8") as out:
        for o in outcomes:
            c = o.case
            row = {
                "number": c.number,
                "family": c.family,
                "detail": c.detail,
                "kind": c.kind,
                "namespace": c.namespace,
                "name": c.name,
                "state": o.state,
                "refusal": None if o.refusal is None else vars(o.refusal),
                "update": c.update_detail,
                "update_refusal": None if o.update_refusal is None else vars(o.update_refusal),
                "ready": o.ready,
                "client_error": o.client_error,
                "spec": c.body.get("spec") if len(json.dumps(c.body.get("spec"))) < 4000 else "(large)",
            }
            out.write(json.dumps(row) + "\n")  # ASCII: lone surrogates cannot be written as UTF-8


def orphans(outcomes: list[Outcome], env: dict[str, str], namespaces: list[str]) -> list[str]:
    """Backend objects of requests that were refused, unmet or deleted (only a Ready request with
    deletionPolicy Orphan may leave its objects behind, and one whose deletion is stuck)."""
    by_key = {(o.case.kind, *o.case.key): o for o in outcomes}
    candidates: dict[str, list[tuple[str, str]]] = {}
    for o in outcomes:
        if DNS_LABEL.match(o.case.name) and len(o.case.name) <= 63:  # no other name reaches a backend
            candidates.setdefault(registry.component_type_by_kind(o.case.kind).name, []).append(o.case.key)
    found = inventory.inventory(env, namespaces, candidates)
    out = []
    for type_name, objects in sorted(found.items()):
        kind = registry.component_type(type_name).kind
        for key, what in sorted(objects.items()):
            o = by_key.get((kind, *key))
            if o is None:
                continue  # not the fuzz's (another run's, or a test's)
            kept = o.case.spec.get("deletionPolicy") == "Orphan" and o.state in ("ready", "vanished")
            if kept or (o.admitted and not o.gone):
                continue  # kept by design, or counted as stuck
            out.append(
                f"{type_name}: {', '.join(what)} of #{o.case.number} {key[0]}/{key[1]} "
                f"({o.state}{': ' + o.reason if o.reason else ''}; {o.case.family}: {o.case.detail[:100]!r})"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="requests to generate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=250, help="requests in flight at once")
    parser.add_argument("--workers", type=int, default=8, help="parallel API calls")
    parser.add_argument("--wait", type=float, default=600, help="seconds a batch may take to settle at most")
    parser.add_argument("--quiet", type=float, default=90, help="…or without any request answering")
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write counts and failures here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cityhub-fuzz-"))
    started = cluster_for(work, args.kubeconfig)
    if started is None:
        return 1
    kubeconfig, stop_cluster = started
    try:
        report = run(
            kubeconfig,
            work / "run",
            count=args.count,
            seed=args.seed,
            batch=args.batch,
            workers=args.workers,
            wait=args.wait,
            quiet=args.quiet,
        )
    finally:
        stop_cluster()
    print()
    print(report.table())
    print()
    print(report.families())
    failures = report.failures()
    if failures:
        print(f"\n{len(failures)} failures:")
        print("\n".join(f"  {f}" for f in failures))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    print(f"\nlogs: {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
