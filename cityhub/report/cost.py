"""成本分摊 / cost showback: component-hours per department x component type, priced by the city's sheet.

The allocation OpenCost makes for pods, made for shared components: each department is charged for what it
holds, for as long as it holds it. What a department holds is its component requests (a channel, a realm, a
layer, an endpoint, a fleet); the operator exports how many it has in each state (cityhub_components), and
the report integrates that over the period (query.py) into component-hours:

    cost(department, type) = Σ over offerings  component-hours x price per component-hour (the sheet's)
    share(department)      = cost(department) / the city's cost

Billed states are ready and down: both hold backend resources (a down component's stream, database or
realm is still there, and comes back when the incident is resolved). Pending is not billed: the request is
not served yet, or was refused as written and holds nothing; its waiting time is the city's responsiveness
(服务响应度), measured on its own, not the department's consumption.

Sums only, like the report's figures: a department's figures are the sum of its rows, the city's the sum of
the departments'; a share is derived from the sums. A component type the sheet does not price keeps its
hours and has no cost (None), never 0, and is named in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cityhub.report.model import ratio
from cityhub.report.prices import PriceSheet

BILLED_STATES = ("ready", "down")
"""cityhub_components states that hold backend resources (see the module's docstring for pending)."""

Usage = Mapping[tuple[str, str, str], float]
"""(department, component_type, offering) → component-hours in the period."""


@dataclass(frozen=True)
class OfferingCost:
    offering: str
    component_hours: float
    price: float | None
    """Per component-hour, in the sheet's currency; None when the sheet leaves the type out."""

    @property
    def cost(self) -> float | None:
        return None if self.price is None else self.component_hours * self.price


@dataclass(frozen=True)
class TypeCost:
    """One department's components of one type over the period."""

    component_type: str
    offerings: tuple[OfferingCost, ...]

    @property
    def component_hours(self) -> float:
        return sum(o.component_hours for o in self.offerings)

    @property
    def priced(self) -> bool:
        return all(o.price is not None for o in self.offerings)

    @property
    def price(self) -> float | None:
        """The price per component-hour when every offering has the same one, else None (see offerings)."""
        prices = {o.price for o in self.offerings}
        return prices.pop() if len(prices) == 1 else None

    @property
    def cost(self) -> float | None:
        costs = [o.cost for o in self.offerings]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


@dataclass(frozen=True)
class DepartmentCost:
    label: str
    """The metrics' department label (the namespace, e.g. dept-yingji), as the report's departments."""
    types: tuple[TypeCost, ...]

    @property
    def component_hours(self) -> float:
        return sum(t.component_hours for t in self.types)

    @property
    def cost(self) -> float:
        """Of the priced types (unpriced ones are named apart): 0 for a department that held nothing."""
        return sum(t.cost or 0.0 for t in self.types)


@dataclass(frozen=True)
class Showback:
    currency: str
    sheet_name: str | None
    sheet_source: str
    """The price sheet's path."""
    resolution_seconds: float | None
    """The integration step (query.py); None when nothing was held in the period, so nothing integrated."""
    measured_from: datetime | None
    """Where the integration began: the period's start, or the hour its first billed component appeared."""
    departments: tuple[DepartmentCost, ...]

    @property
    def total(self) -> float:
        """The city's cost of the priced types."""
        return sum(d.cost for d in self.departments)

    @property
    def component_hours(self) -> float:
        return sum(d.component_hours for d in self.departments)

    def share(self, department: DepartmentCost) -> float | None:
        """The department's part of the city's cost; None when the city's cost is 0 (nothing to share)."""
        return ratio(department.cost, self.total)

    @property
    def unpriced(self) -> dict[str, float]:
        """Component type the sheet leaves out → its component-hours in the period (they have no cost)."""
        out: dict[str, float] = {}
        for d in self.departments:
            for t in d.types:
                if not t.priced:
                    out[t.component_type] = out.get(t.component_type, 0.0) + t.component_hours
        return dict(sorted(out.items()))


def component_hours(point_sum: float, step_seconds: float) -> float:
    """The integral of a component count sampled every `step_seconds`, in hours: each point stands for the
    `step_seconds` before it (sum_over_time of the subquery adds the points up)."""
    return point_sum * step_seconds / 3600


def allocate(
    usage: Usage,
    sheet: PriceSheet,
    departments: Sequence[str],
    *,
    resolution_seconds: float | None,
    measured_from: datetime | None,
) -> Showback:
    """Price each department's component-hours; `departments` (labels, in the report's order) are all listed,
    those that held nothing with no rows (0 component-hours, cost 0), then any other label the usage names."""
    by_department: dict[str, dict[str, list[OfferingCost]]] = {}
    for (department, ctype, offering), hours in sorted(usage.items()):
        priced = OfferingCost(offering, hours, sheet.price(ctype, offering))
        by_department.setdefault(department, {}).setdefault(ctype, []).append(priced)
    labels = list(departments) + sorted(set(by_department) - set(departments))
    return Showback(
        currency=sheet.currency,
        sheet_name=sheet.name,
        sheet_source=sheet.source,
        resolution_seconds=resolution_seconds,
        measured_from=measured_from,
        departments=tuple(
            DepartmentCost(
                label,
                tuple(TypeCost(t, tuple(o)) for t, o in sorted(by_department.get(label, {}).items())),
            )
            for label in labels
        ),
    )
