"""Slot for the monitoring rules (SLOs, alerts, dashboards); the monitoring issue fills it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.labels import SYSTEM_NAMESPACE


@dataclass(frozen=True)
class MonitoringArgs:
    settings: dict[str, object] = field(default_factory=dict)
    """The stack's `cityhub:monitoring` object, passed through unvalidated until monitoring defines it."""
    departments: tuple[str, ...] = ()
    """Department slugs: per-department SLOs and alerts are generated from these."""
    namespace: pulumi.Input[str] = SYSTEM_NAMESPACE


class Monitoring(pulumi.ComponentResource):
    """Prometheus rules for the hub's components and departments. Creates nothing yet: the monitoring
    issue adds its rule resources here as children of this component."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:monitoring:Monitoring", name, {}, opts)
        self.register_outputs({})
