"""The Foundation component under Pulumi's mocks: what it would create, without a cluster."""

from __future__ import annotations

from typing import Any

import pulumi


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


pulumi.runtime.set_mocks(Mocks(), preview=False)

from components.foundation import Foundation, FoundationArgs  # noqa: E402


@pulumi.runtime.test
def test_system_namespace_is_labelled_with_the_city() -> pulumi.Output[None]:
    hub = Foundation("hub", FoundationArgs(city="示例市", division_code="330100"))

    def check(name: str) -> None:
        assert name == "cityhub-system"

    return hub.namespace_name.apply(check)
