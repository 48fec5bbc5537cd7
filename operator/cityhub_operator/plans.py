"""The catalog (ComponentOffering) seen from a request: which plan applies and which limits follow.

Generic over component types: a type declares its limit names and kinds in its schema (x-cityhub.limits);
a plan bounds them (`limits`) and fills the missing ones (`defaults`, else the bound itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityhub_api import units
from cityhub_api.registry import ComponentType


class Unmet(Exception):
    """The request passed admission but cannot be met as written; `reason` is CamelCase, the message says
    what to change."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Resolved:
    plan: str
    limits: dict[str, int]
    """Effective limits as numbers (seconds, bytes, counts), for the driver."""
    shown: dict[str, Any]
    """The same limits as written (7d, 10Gi, …), for status.limits."""


def resolve(
    ctype: ComponentType,
    spec: Mapping[str, Any],
    offering_name: str,
    offering: Mapping[str, Any] | None,
    known: list[str],
) -> Resolved:
    """The plan and effective limits of a request, or Unmet saying what to change."""
    if offering is None:
        choices = ", ".join(sorted(known)) or "none is published yet"
        raise Unmet(
            "OfferingNotFound",
            f"spec.offering: ComponentOffering {offering_name!r} does not exist; offerings of type "
            f"{ctype.name}: {choices} (kubectl get componentofferings)",
        )
    if offering.get("componentType") != ctype.name:
        raise Unmet(
            "OfferingTypeMismatch",
            f"spec.offering: {offering_name!r} offers {offering.get('componentType')!r}, not {ctype.name}; "
            f"choose an offering of type {ctype.name}: {', '.join(sorted(known)) or 'none is published yet'}",
        )
    plans = {p.get("name"): p for p in offering.get("plans") or []}
    plan_name = spec.get("plan") or offering.get("defaultPlan", "")
    plan = plans.get(plan_name)
    if plan is None:
        raise Unmet(
            "PlanNotFound",
            f"spec.plan: offering {offering_name!r} has no plan {plan_name!r}; choose one of "
            f"{', '.join(sorted(str(p) for p in plans))}",
        )
    asked = spec.get("limits") or {}
    limits: dict[str, int] = {}
    shown: dict[str, Any] = {}
    for name, kind in ctype.limits.items():
        bound_raw = (plan.get("limits") or {}).get(name)
        default_raw = (plan.get("defaults") or {}).get(name, bound_raw)
        try:
            bound = None if bound_raw is None else units.parse(kind, bound_raw)
            default = None if default_raw is None else units.parse(kind, default_raw)
        except ValueError as e:
            raise Unmet(
                "InvalidOffering",
                f"offering {offering_name!r} plan {plan_name!r} limit {name}: {e}; "
                "ask the platform team to fix the catalog",
            ) from e
        raw = asked.get(name, default_raw)
        if raw is None:
            continue
        try:
            value = units.parse(kind, raw) if name in asked else default
        except ValueError as e:
            raise Unmet("InvalidLimits", f"spec.limits.{name}: {e}") from e
        if value is None:
            continue
        if bound is not None and value > bound:
            fits = [str(n) for n, p in plans.items() if _fits(kind, value, (p.get("limits") or {}).get(name))]
            allowing = ", ".join(fits) or "no plan of this offering does"
            raise Unmet(
                "OverPlanLimits",
                f"spec.limits.{name}={raw} exceeds plan {plan_name!r}, which allows at most {bound_raw}: "
                f"lower it, or choose a plan that allows it ({allowing})",
            )
        limits[name] = value
        shown[name] = raw
    return Resolved(plan=str(plan_name), limits=limits, shown=shown)


def _fits(kind: str, value: int, bound: object) -> bool:
    try:
        return bound is None or value <= units.parse(kind, bound)
    except ValueError:
        return False
