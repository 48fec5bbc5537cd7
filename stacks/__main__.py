"""The hub program: validate the stack's whole configuration, then build the hub on each cluster.

Validation runs before any resource is declared, so a bad configuration fails `pulumi preview` and
`pulumi up` with the list of problems and leaves the cluster untouched.
"""

from pathlib import Path

import pulumi

from cityhub.config import ConfigError, load_config, raw_stack_config
from cityhub.config_edges import api_server
from cityhub_api.catalog import CatalogError, load_offerings
from components.hub import city_hubs, kubeconfig_path

try:
    config = load_config(raw_stack_config())
    offerings = tuple(load_offerings(config.operator.catalog, config.operator.components))
except (ConfigError, CatalogError) as error:
    # RunError ends the program with the message alone, without a Python traceback.
    raise pulumi.RunError(str(error)) from None

# Each edge's API server as the hub's pods reach it, where the stack runs the edge's operator on the hub.
api_servers: dict[str, str] = {}
for i, c in enumerate(config.clusters):
    if c.role == "edge" and config.operator.deploy:
        path = kubeconfig_path(c)
        try:
            api_servers[c.name] = api_server(Path(path) if path else None, c.context, c.api_server)
        except (OSError, ValueError) as error:
            raise pulumi.RunError(f"cityhub:clusters[{i}].apiServer ({c.name}): {error}") from None

hubs = city_hubs(config, offerings, api_servers)

pulumi.export("mode", config.mode)
pulumi.export("systemNamespace", "cityhub-system")
pulumi.export("departments", {slug: info for hub in hubs.values() for slug, info in hub.departments.items()})
pulumi.export("sharedServices", {name: hub.endpoints for name, hub in hubs.items()})
pulumi.export("catalog", [o.name for o in offerings])
pulumi.export("gpuPool", {name: hub.gpu_pool for name, hub in hubs.items() if hub.gpu_pool})
