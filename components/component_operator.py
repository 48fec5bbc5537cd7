"""Slot for the component operator (CRDs, least-privilege RBAC, Deployment); the operator issue fills it.

The module is not called `operator` so it can never shadow the standard library's `operator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.labels import SYSTEM_NAMESPACE


@dataclass(frozen=True)
class ComponentOperatorArgs:
    settings: dict[str, object] = field(default_factory=dict)
    """The stack's `cityhub:operator` object, passed through unvalidated until the operator defines it."""
    namespace: pulumi.Input[str] = SYSTEM_NAMESPACE
    """Where the operator runs."""


class ComponentOperator(pulumi.ComponentResource):
    """The operator that turns departments' component requests into shared components. Creates nothing
    yet: its CRDs, RBAC and Deployment are added here by the operator issue, as children of this
    component, so they appear under it in `pulumi preview` and are removed with it."""

    def __init__(
        self, name: str, args: ComponentOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:operator:ComponentOperator", name, {}, opts)
        self.register_outputs({})
