"""The hub program: validate the stack's whole configuration, then build the hub on each cluster.

Validation runs before any resource is declared, so a bad configuration fails `pulumi preview` and
`pulumi up` with the list of problems and leaves the cluster untouched.
"""

import pulumi

from cityhub.config import ConfigError, load_config, raw_stack_config
from cityhub_api.catalog import CatalogError, load_offerings
from components.hub import ClusterHub, ClusterHubArgs

try:
    config = load_config(raw_stack_config())
    offerings = tuple(load_offerings(config.operator.catalog, config.operator.components))
except (ConfigError, CatalogError) as error:
    # RunError ends the program with the message alone, without a Python traceback.
    raise pulumi.RunError(str(error)) from None

hubs = {
    c.name: ClusterHub(c.name, ClusterHubArgs(config=config, cluster=c, offerings=offerings))
    for c in config.clusters
}

pulumi.export("mode", config.mode)
pulumi.export("systemNamespace", "cityhub-system")
pulumi.export("departments", {slug: info for hub in hubs.values() for slug, info in hub.departments.items()})
pulumi.export("sharedServices", {name: hub.endpoints for name, hub in hubs.items()})
pulumi.export("catalog", [o.name for o in offerings])
pulumi.export("gpuPool", {name: hub.gpu_pool for name, hub in hubs.items() if hub.gpu_pool})
