"""martin's configuration: the stack's ConfigMap and the local launcher's file are rendered here alike."""

from __future__ import annotations

from component_types.maps.naming import CATALOG_SCHEMA, TILE_FUNCTION, TILE_SOURCE

MAX_ZOOM = 24


def martin_config(database_url: str, *, listen: str, pool_size: int = 20) -> str:
    """martin's config.yaml: only the catalog's tile function is published, and nothing is cached.

    `database_url` is the tiles role's connection, or `${DATABASE_URL}`, which martin substitutes from its
    environment (so a ConfigMap holds no password). Caching is off because martin's cache is shared by
    every caller: authorization is decided per request by the tile function and must not be bypassed by a
    tile cached for another department.
    """
    return "\n".join(
        [
            "# Rendered by component_types.maps.martin_config: martin serves the cityhub tile function.",
            f"listen_addresses: '{listen}'",
            "cache_size_mb: 0",
            "postgres:",
            f"  connection_string: '{database_url}'",
            f"  pool_size: {pool_size}",
            "  auto_publish: false",
            "  functions:",
            f"    {TILE_SOURCE}:",
            f"      schema: {CATALOG_SCHEMA}",
            f"      function: {TILE_FUNCTION}",
            "      minzoom: 0",
            f"      maxzoom: {MAX_ZOOM}",
            "",
        ]
    )
