"""Names of the maps backend's PostGIS objects, all derived from the request alone (stable across retries).

    database   cityhub_maps                one per hub; the catalog and every layer live in it
    schema     dept_<department>           one per department, owned by the operator's role
    table      <schema>.<layer name>       '-' becomes '_' (Kubernetes names never hold '_', so no clash)
    role       dept_<department>           LOGIN while the department has layers; writes its own layers only
    layer id   <department>.<layer name>   what the tile URL's `layer` parameter names

PostgreSQL truncates identifiers at 63 bytes; longer names keep a prefix and a hash of the full name so two
long names never collide. Neutral (no database client): the driver, the stack's backend and the local
launcher all use these names.
"""

from __future__ import annotations

import hashlib

DATABASE = "cityhub_maps"
"""The maps database: created by the PostGIS image (POSTGRES_DB) in the cluster, by the local launcher
otherwise."""
SUPERUSER = "postgres"
"""The superuser the operator connects as (the bootstrap creates roles and the catalog)."""
MAX_IDENTIFIER = 63
GROUP_ROLE = "cityhub_departments"
"""Every department role is a member: what `visibility: Public` grants SELECT to."""
TILES_ROLE = "cityhub_tiles"
"""The role the tile server connects as: it may only EXECUTE the tile function."""
CATALOG_SCHEMA = "cityhub_maps"
TILE_FUNCTION = "layer_tile"
DENIED_LAYER = "cityhub_denied"
"""The only layer of a tile served to a caller who may not read the requested layer; its feature's
`reason` says why."""
TILE_SOURCE = "layers"
"""The tile server's source id: tiles are served at /layers/{z}/{x}/{y}?layer=…&token=…"""


def identifier(prefix: str, text: str) -> str:
    name = prefix + text.replace("-", "_")
    if len(name.encode()) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - 9]}_{digest}"


def schema_name(department: str) -> str:
    return identifier("dept_", department)


def role_name(department: str) -> str:
    return identifier("dept_", department)


def table_name(name: str) -> str:
    return identifier("", name)


def layer_id(department: str, name: str) -> str:
    return f"{department}.{name}"


def layer_function(layer: str) -> str:
    """The name of a layer's own tile function in CATALOG_SCHEMA (catalog_sql.py, publish_layer): `layer_`
    and the md5 of the layer id, as PostgreSQL's md5() spells it."""
    return "layer_" + hashlib.md5(layer.encode(), usedforsecurity=False).hexdigest()
