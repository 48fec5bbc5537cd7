"""The maturity model's values (成熟度): the evidence gathered from the live hub, and the assessment.

cityhub's own model, derived from the areas of the action plan; not a national standard (docs/maturity.md).
The overall level is the lowest dimension's: a weakest-link reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cityhub.report.model import Figures

MODEL = "cityhub.io/maturity/v1"
LEVELS = {
    1: ("初始级", "initial"),
    2: ("起步级", "developing"),
    3: ("规范级", "defined"),
    4: ("量化级", "measured"),
    5: ("优化级", "optimizing"),
}
DRILL_FRESH_DAYS = 90
"""A drill counts as current for a quarter."""
DRILL_IN_FORCE_SECONDS = 300.0
DRILL_IN_FORCE_FAST_SECONDS = 120.0
MTTR_GOOD_SECONDS = 3600.0
MTTR_FAST_SECONDS = 900.0


@dataclass(frozen=True)
class DrillSummary:
    id: str
    passed: bool
    started_at: datetime
    emergency_in_force_seconds: float | None
    clusters: tuple[str, ...]


@dataclass(frozen=True)
class Evidence:
    """Facts about the live hub; counts of what exists and of how much of it meets a practice."""

    assessed_at: datetime
    departments: int = 0
    """Department namespaces in the hub cluster (label cityhub.io/tenant=department)."""
    departments_using: int = 0
    """Department namespaces holding at least one component request."""
    catalog_types: tuple[str, ...] = ()
    """Component types of the ComponentOfferings published (统一目录)."""
    types_in_use: tuple[str, ...] = ()
    offerings: int = 0
    offerings_with_apdex: int = 0
    """Offerings with spec.apdex.thresholdSeconds (the satisfaction objective of 用户满意度)."""
    graded: int = 0
    """Department namespaces with a cityhub.io/data-grade label."""
    default_deny: int = 0
    """Department namespaces with a default-deny NetworkPolicy (all pods, ingress and egress, no rule)."""
    restricted: int = 0
    """Department namespaces enforcing Pod Security `restricted`."""
    requests: int = 0
    requests_graded: int = 0
    """Component requests carrying their own cityhub.io/data-grade label (an explicit classification)."""
    alerts: int | None = None
    """Alerting rules the stack delivered (None: no rule file in the cluster)."""
    alerts_with_runbook: int = 0
    """Alerts whose runbook_url names a runbook page that exists in docs/runbooks/."""
    responders: int = 0
    """Department namespaces labelled cityhub.io/emergency-responder=true."""
    drills: tuple[DrillSummary, ...] = ()
    levels: Mapping[str, int] = field(default_factory=dict)
    """cityhub.io/level label value (city, district, street) → department namespaces."""
    edge_clusters: int = 0
    """Clusters with role edge in the stack config (cityhub:clusters)."""
    edge_clusters_serving: tuple[str, ...] = ()
    """Edge clusters with departments on them (names)."""
    districts: int = 0
    districts_with_edge: int = 0
    figures: Figures | None = None
    """The operator's figures over the window (Prometheus); None when no Prometheus was asked."""
    window_days: int = 30


@dataclass(frozen=True)
class Text:
    zh: str
    en: str


@dataclass(frozen=True)
class Dimension:
    key: str
    name: Text
    level: int
    evidence: Text
    next_step: Text | None
    """What moves the city to the next level; None at level 5."""
    facts: Mapping[str, float | int | str | None]

    @property
    def level_name(self) -> Text:
        return Text(*LEVELS[self.level])


@dataclass(frozen=True)
class Assessment:
    assessed_at: datetime
    dimensions: tuple[Dimension, ...]

    @property
    def overall(self) -> int:
        return min(d.level for d in self.dimensions)

    @property
    def mean(self) -> float:
        return sum(d.level for d in self.dimensions) / len(self.dimensions)

    def dimension(self, key: str) -> Dimension:
        return next(d for d in self.dimensions if d.key == key)
