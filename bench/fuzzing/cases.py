"""The fuzz's cases, deterministic for a seed: `generate(count, seed, run, config)`.

A case is a seed (a valid request) placed in a department (every department in turn, the two colliding ones
included) and changed by one family (mutations.py), or a hypothesis-jsonschema spec (generated.py), or a
valid request that must work (controls; pairs whose names collide when namespace and name are joined), or a
valid request followed by an update that changes an immutable field or raises the data grade. Names are
`z<number>-…`: unique in a run, so each request's backend objects can be told apart.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from cityhub.config_model import GRADE_LABELS, HubConfig
from fuzzing import attacks, generated, mutations
from fuzzing.environment import COLLIDING
from fuzzing.mutations import TRICKS, WEIRD, Target
from fuzzing.seeds import (
    Case,
    Placement,
    SchemaField,
    Seed,
    offering_of,
    place,
    request_kinds,
    seeds,
    strings,
)

WEIGHTS = {
    "hypothesis": 18,
    "unicode": 12,
    "path-trick": 12,
    "wrong-type": 8,
    "out-of-range": 7,
    "huge-string": 4,
    "drop-required": 5,
    "unknown-enum": 5,
    "duplicate-entries": 4,
    "over-plan": 6,
    "offering-plan": 4,
    "share": 4,
    "immutable-update": 4,
    "colliding-names": 2,
    "share-flood": 1,
    "control": 2,
    "namespace": 1,
    "metadata": 2,
}
FLOOD = 30
"""Channels of one share flood: more than one source may share with one reader (sharesPerSource 25)."""
FLOOD_EVERY = 1000
"""At most one flood in so many cases (a flood is FLOOD cases at once)."""
HUGE = (65_536, 1_000_000)
"""Sizes of huge strings besides a field's maxLength + 1: the API server's body limit is 3 MiB and etcd's
object limit 1.5 MiB, so a 1 MB string is as large as a request can carry."""


class Generator:
    def __init__(self, seed: int, run: str, config: HubConfig) -> None:
        self.rng = random.Random(seed)
        self.seed, self.run = seed, run
        self.namespaces = [d.namespace for d in config.departments]
        self.grades = {d.namespace: GRADE_LABELS[d.data_grade] for d in config.departments}
        self.seeds = seeds()
        self.by_kind = {k: [s for s in self.seeds if s.kind == k] for k in request_kinds()}
        self.complete = {s.kind: s for s in self.seeds if s.source == "complete"}
        self.number = 0
        self._last_flood = -FLOOD_EVERY
        # Every (kind, string field) meets every trick in turn: a shuffled cycle per string family.
        self._walks: dict[str, Iterator[tuple[str, SchemaField, Any]]] = {}
        self._specs: dict[str, Iterator[dict[str, Any]]] = {}

    # -- helpers ------------------------------------------------------------------------------------

    def _name(self, seed: Seed) -> str:
        slug = str(seed.body["metadata"].get("name", "req"))[:20].strip("-")
        return f"z{self.number:05d}-{slug}"

    def _target(self, seed: Seed | None = None, namespace: str | None = None) -> tuple[Target, Seed]:
        seed = seed or self.rng.choice(self.seeds)
        ns = namespace or self.rng.choice(self.namespaces)
        others = [n for n in self.namespaces if n != ns]
        where = Placement(ns, self._name(seed), self.rng.choice(others), self.run)
        body = place(seed, where)
        return Target(seed, body, self.rng, self.namespaces, self.grades), seed

    def _case(self, family: str, detail: str, t: Target, **extra: Any) -> Case:
        case = Case(self.number, family, detail, t.body, **extra)
        self.number += 1
        return case

    def _walk(self, family: str, tricks: tuple[Any, ...]) -> tuple[str, SchemaField, Any]:
        if family not in self._walks:
            combos = [(k, f, x) for k in request_kinds() for f in strings(k) for x in tricks]
            self.rng.shuffle(combos)
            self._walks[family] = self._cycle(combos)
        return next(self._walks[family])

    @staticmethod
    def _cycle(items: list[Any]) -> Iterator[Any]:
        while True:
            yield from items

    def _spec(self, kind: str, budget: int) -> dict[str, Any]:
        if kind not in self._specs:
            made = generated.specs(kind, max(10, budget), self.seed)
            self._specs[kind] = self._cycle(made)
        return copy.deepcopy(next(self._specs[kind]))

    # -- the families -------------------------------------------------------------------------------

    def cases(self, count: int) -> Iterator[Case]:
        schedule = [f for f, w in WEIGHTS.items() for _ in range(w)]
        hypothesis_budget = count * WEIGHTS["hypothesis"] // sum(WEIGHTS.values()) // len(request_kinds()) + 1
        made = 0
        for case in self._hazards():  # first, so that a short run meets them too
            made += 1
            yield case
        while made < count:
            self.rng.shuffle(schedule)
            for family in schedule:
                if made >= count:
                    return
                for case in self._family(family, hypothesis_budget):
                    made += 1
                    yield case

    def _family(self, family: str, budget: int) -> list[Case]:
        if family == "hypothesis":
            return [self._hypothesis(budget)]
        if family in ("unicode", "path-trick"):
            kind, f, trick = self._walk(family, WEIRD if family == "unicode" else TRICKS)
            t, _ = self._target(self.rng.choice(self.by_kind[kind]))
            return [self._case(family, mutations.weird_string(t, f, trick), t)]
        if family == "huge-string":
            kind, f, size = self._walk(family, (0, *HUGE))
            t, _ = self._target(self.rng.choice(self.by_kind[kind]))
            size = size or int(f.schema.get("maxLength", 63)) + 1
            return [self._case(family, mutations.huge_string(t, f, size), t)]
        if family == "immutable-update":
            return [self._update()]
        if family == "colliding-names":
            return self._colliding()
        if family == "share-flood" and self.number - self._last_flood >= FLOOD_EVERY:
            return self._share_flood()
        if family == "share-flood":
            family = "share"
        if family == "control":
            return [self._control()]
        seed = self.rng.choice([s for s in self.seeds if attacks.applies(family, s.kind)])
        t, _ = self._target(seed)
        return [self._case(family, attacks.FAMILIES[family](t), t)]

    def _hazards(self) -> list[Case]:
        out = []
        for kind, path, value in attacks.HAZARDS:
            t, _ = self._target(self.complete[kind])
            out.append(self._case("hazard", mutations.set_string(t, path, value), t))
        return out

    def _hypothesis(self, budget: int) -> Case:
        kind = self.rng.choice(request_kinds())
        t, _ = self._target(self.complete[kind])
        spec = self._spec(kind, budget)
        detail = "generated spec"
        if self.rng.random() < 0.5:  # half of them draw on the catalog, so they get past admission
            spec["offering"] = offering_of(kind)
            spec.pop("plan", None)
            spec.pop("secretName", None)
            detail += " on the catalog's offering"
        t.body["spec"] = spec
        return self._case("hypothesis", detail, t)

    def _control(self) -> Case:
        kind = self.rng.choice(request_kinds())
        t, _ = self._target(self.complete[kind])
        return self._case("control", f"a complete valid {kind}", t, expect_ready=True)

    def _update(self) -> Case:
        kind = self.rng.choice(request_kinds())
        t, _ = self._target(self.rng.choice(self.by_kind[kind]))
        detail, patch = attacks.immutable_update(t)
        return self._case(
            "immutable-update", "valid request, then an update", t, update=patch, update_detail=detail
        )

    def _colliding(self) -> list[Case]:
        """dept-fuzz/a-<n> and dept-fuzz-a/<n>: both join to dept-fuzz-a-<n>; both must work side by side."""
        kind = self.rng.choice(request_kinds())
        seed = self.complete[kind]
        first, second = f"dept-{COLLIDING[0]}", f"dept-{COLLIDING[1]}"
        suffix = COLLIDING[1].removeprefix(COLLIDING[0] + "-")
        n = self.number
        t1, _ = self._target(seed, first)
        t2, _ = self._target(seed, second)
        t1.body["metadata"]["name"] = f"{suffix}-c{n:05d}"
        t2.body["metadata"]["name"] = f"c{n:05d}"
        for t in (t1, t2):
            spec = t.spec()
            if "secretName" in spec:
                spec["secretName"] = t.body["metadata"]["name"] + "-s"
            # The pair tests names, not the backends' room: small stores, so that the busiest department's
            # earlier requests cannot leave this one a capacity refusal (BackendRefused "no room").
            limits = spec.get("limits", {})
            if "maxBytes" in limits:
                limits["maxBytes"] = "1Mi"
        a = self._case(
            "colliding-names", f"{first}/{t1.body['metadata']['name']}", t1, expect_ready=True, group=n
        )
        b = self._case(
            "colliding-names", f"{second}/{t2.body['metadata']['name']}", t2, expect_ready=True, group=n
        )
        return [a, b]

    def _share_flood(self) -> list[Case]:
        """FLOOD channels of one department all shared with one reader: past the reader's allowance from one
        source (sharesPerSource, 25 by default) each is unmet (TooManyShares) and must leave nothing behind
        (no stream, no export, no import in the reader's account)."""
        seed = self.complete["MessagingChannel"]
        source = self.rng.choice(self.namespaces)
        reader = self.rng.choice([n for n in self.namespaces if n != source])
        first = self._last_flood = self.number
        out = []
        for i in range(FLOOD):
            t, _ = self._target(seed, source)
            t.spec()["shareWith"] = [{"department": reader, "purpose": f"flood {i}"}]
            out.append(
                self._case(
                    "share-flood", f"{source} shares channel {i + 1} of {FLOOD} with {reader}", t, group=first
                )
            )
        return out


def generate(count: int, seed: int, run: str, config: HubConfig) -> list[Case]:
    return list(Generator(seed, run, config).cases(count))
