"""The evaluation report's values: raw period counts per department x component type, and what follows.

Figures hold only sums that add up exactly (event counts, histogram buckets, seconds), so a department's or
the city's figures are the sum of its rows and every ratio is derived from sums, never averaged. A ratio whose
denominator is zero is None (无数据 / no data), never NaN and never 0: a department that did not use a
component type in the period has no availability, not a bad one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cityhub_api import api

if TYPE_CHECKING:  # cityhub.maturity reads the report's figures: a runtime import would be circular
    from cityhub.maturity.model import Assessment
    from cityhub.report.cost import Showback  # cost.py uses ratio() from here

Buckets = Mapping[float, float]
"""A cumulative histogram over the period: upper bound (le, math.inf last) → observations at or below it."""

DEFAULT_PROBE_OBJECTIVE = api.PROBE_OBJECTIVE
DEFAULT_PROVISIONING_OBJECTIVE = api.PROVISIONING_OBJECTIVE
DEFAULT_PROVISIONING_THRESHOLD_SECONDS = api.PROVISIONING_THRESHOLD_SECONDS
"""The SLO defaults (one place: cityhub_api.api); a stack's cityhub:monitoring overrides them."""

APDEX_BANDS = ((0.94, "优", "excellent"), (0.85, "良", "good"), (0.70, "中", "fair"), (0.50, "差", "poor"))
"""Apdex's standard rating bands; below the last one is 不可接受 / unacceptable."""


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator > 0 else None


def quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket the way Prometheus'
    histogram_quantile does (the +Inf bucket answers with the highest finite bound); None when empty."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == math.inf:
                return bounds[-2] if len(bounds) > 1 else None
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return bounds[-2] if len(bounds) > 1 else None


def _merge(a: Mapping[float, float], b: Mapping[float, float]) -> dict[float, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in sorted({*a, *b})}


@dataclass(frozen=True)
class Objectives:
    probe_objective: float = DEFAULT_PROBE_OBJECTIVE
    """Share of probes that must succeed (availability), cityhub:monitoring.probeObjective."""
    provisioning_objective: float = DEFAULT_PROVISIONING_OBJECTIVE
    """Share of requests Ready within the threshold, cityhub:monitoring.provisioningObjective."""
    provisioning_threshold_seconds: float = DEFAULT_PROVISIONING_THRESHOLD_SECONDS
    """cityhub:monitoring.provisioningThresholdSeconds (a bucket bound of cityhub_provisioning_seconds)."""


@dataclass(frozen=True)
class Period:
    label: str
    """As asked for, e.g. 2026-11."""
    start: datetime
    end: datetime
    """Exclusive: the first instant after the period."""
    evaluated_at: datetime
    """end, or now for a period still running (the report then covers start … now)."""

    @property
    def complete(self) -> bool:
        return self.evaluated_at >= self.end

    @property
    def seconds(self) -> int:
        return int((self.evaluated_at - self.start).total_seconds())


@dataclass(frozen=True)
class Apdex:
    satisfied: float = 0.0
    tolerating: float = 0.0
    frustrated: float = 0.0

    def __add__(self, other: Apdex) -> Apdex:
        return Apdex(
            self.satisfied + other.satisfied,
            self.tolerating + other.tolerating,
            self.frustrated + other.frustrated,
        )

    @property
    def samples(self) -> float:
        return self.satisfied + self.tolerating + self.frustrated

    @property
    def score(self) -> float | None:
        return ratio(self.satisfied + self.tolerating / 2, self.samples)


def apdex_band(score: float | None) -> tuple[str, str] | None:
    """(中文, English) rating of an Apdex score."""
    if score is None:
        return None
    for bound, zh, en in APDEX_BANDS:
        if score >= bound:
            return zh, en
    return "不可接受", "unacceptable"


@dataclass(frozen=True)
class Figures:
    """What happened to one department's components of one type (or a sum of such) in the period."""

    components: Mapping[str, int] = field(default_factory=dict)
    """State (ready, down, pending) → components at the period's end."""
    probes: int = 0
    probe_failures: int = 0
    probe_latency: Buckets = field(default_factory=dict)
    """Successful probes' durations (cityhub_probe_duration_seconds)."""
    provisioning: Buckets = field(default_factory=dict)
    """Request → Ready seconds of requests that became Ready in the period (cityhub_provisioning_seconds)."""
    apdex: Mapping[str, Apdex] = field(default_factory=dict)
    """Offering → probes by Apdex zone."""
    apdex_threshold_seconds: float | None = None
    """The offerings' Apdex threshold T (the largest, if they differ): the probe latency target."""
    incidents_opened: int = 0
    incidents_resolved: int = 0
    resolution_seconds: float = 0.0
    """Sum of the times to resolve of incidents resolved in the period."""
    resolutions: int = 0
    feedback_count: int = 0
    """ComponentFeedback objects at the period's end."""
    feedback_sum: float = 0.0

    def __add__(self, other: Figures) -> Figures:
        apdex = {
            k: self.apdex.get(k, Apdex()) + other.apdex.get(k, Apdex()) for k in {*self.apdex, *other.apdex}
        }
        thresholds = [
            t for t in (self.apdex_threshold_seconds, other.apdex_threshold_seconds) if t is not None
        ]
        return Figures(
            components={
                k: self.components.get(k, 0) + other.components.get(k, 0)
                for k in {*self.components, *other.components}
            },
            probes=self.probes + other.probes,
            probe_failures=self.probe_failures + other.probe_failures,
            probe_latency=_merge(self.probe_latency, other.probe_latency),
            provisioning=_merge(self.provisioning, other.provisioning),
            apdex=dict(sorted(apdex.items())),
            apdex_threshold_seconds=max(thresholds) if thresholds else None,
            incidents_opened=self.incidents_opened + other.incidents_opened,
            incidents_resolved=self.incidents_resolved + other.incidents_resolved,
            resolution_seconds=self.resolution_seconds + other.resolution_seconds,
            resolutions=self.resolutions + other.resolutions,
            feedback_count=self.feedback_count + other.feedback_count,
            feedback_sum=self.feedback_sum + other.feedback_sum,
        )

    # -- 服务响应度 -------------------------------------------------------------------------------------
    @property
    def provisioned(self) -> int:
        return round(self.provisioning.get(math.inf, 0))

    def provisioned_within(self, threshold: float) -> float | None:
        return ratio(self.provisioning.get(threshold, 0), self.provisioning.get(math.inf, 0))

    @property
    def provisioning_p95_seconds(self) -> float | None:
        return quantile(0.95, self.provisioning)

    @property
    def probe_p95_seconds(self) -> float | None:
        return quantile(0.95, self.probe_latency)

    # -- availability and 问题解决度 ---------------------------------------------------------------------
    @property
    def availability(self) -> float | None:
        failed = ratio(self.probe_failures, self.probes)
        return None if failed is None else 1 - failed

    def probe_budget_spent(self, objective: float) -> float | None:
        """Share of the period's error budget used: 1.0 is all of it."""
        failed = ratio(self.probe_failures, self.probes)
        return None if failed is None else failed / (1 - objective)

    def provisioning_budget_spent(self, objectives: Objectives) -> float | None:
        within = self.provisioned_within(objectives.provisioning_threshold_seconds)
        return None if within is None else (1 - within) / (1 - objectives.provisioning_objective)

    @property
    def mttr_seconds(self) -> float | None:
        return ratio(self.resolution_seconds, self.resolutions)

    # -- 用户满意度 -------------------------------------------------------------------------------------
    @property
    def apdex_total(self) -> Apdex:
        total = Apdex()
        for counts in self.apdex.values():
            total = total + counts
        return total

    @property
    def feedback_mean(self) -> float | None:
        return ratio(self.feedback_sum, self.feedback_count)

    @property
    def has_data(self) -> bool:
        """Anything at all happened or existed: otherwise the row reads 无数据 / no data."""
        return bool(
            sum(self.components.values())
            or self.probes
            or self.provisioned
            or self.incidents_opened
            or self.feedback_count
        )


@dataclass(frozen=True)
class Row:
    component_type: str
    figures: Figures


@dataclass(frozen=True)
class Department:
    label: str
    """The metrics' department label (the namespace, e.g. dept-yingji)."""
    slug: str | None
    """The stack's department slug, when the label is one of its departments."""
    name: str | None
    """The department's name in the stack config (e.g. 应急管理局)."""
    rows: tuple[Row, ...]

    @property
    def figures(self) -> Figures:
        total = Figures()
        for row in self.rows:
            total = total + row.figures
        return total

    @property
    def title(self) -> str:
        return self.name or self.slug or self.label


@dataclass(frozen=True)
class Finding:
    """One thing that needs attention, ranked by severity (3 worst) and then by how far off it is."""

    severity: int
    code: str
    department: str
    department_name: str | None
    component_type: str
    value: float | None
    zh: str
    en: str


@dataclass(frozen=True)
class Report:
    city: str | None
    period: Period
    objectives: Objectives
    departments: tuple[Department, ...]
    findings: tuple[Finding, ...]
    source: str
    """The Prometheus the figures come from."""
    generated_at: datetime
    maturity: Assessment | None = None
    """成熟度 from the live hub, with the period's figures (None when the cluster could not be read)."""
    cost: Showback | None = None
    """成本分摊 priced by the city's sheet (None when no price sheet was given: the report says so)."""

    @property
    def figures(self) -> Figures:
        total = Figures()
        for department in self.departments:
            total = total + department.figures
        return total

    @property
    def component_types(self) -> tuple[str, ...]:
        return tuple(sorted({r.component_type for d in self.departments for r in d.rows}))
