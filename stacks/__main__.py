"""The hub program: reads and validates the stack's configuration, then wires the components together."""

import pulumi

from components.foundation import Foundation, FoundationArgs

config = pulumi.Config("cityhub")
foundation = Foundation(
    "hub",
    FoundationArgs(city=config.require("city"), division_code=config.require("divisionCode")),
)
pulumi.export("systemNamespace", foundation.namespace_name)
