"""Maps (地图图层): departments publish spatial layers in PostGIS and read them as vector tiles from martin.

How a MapLayer `<name>` in department (namespace) `<d>` maps onto the backend — every name follows from the
request (component_types/maps/naming.py), so retries and restarts find the same objects:

    table      dept_<d>.<name>: id, the declared attributes, geom in the layer's coordinate system (EPSG:4490
               or 4326, typmod-checked) and geom_3857, a stored generated Web Mercator copy; GiST on both
    role       dept_<d>: LOGIN with a password derived from the master secret; SELECT/INSERT/UPDATE/DELETE on
               the department's own layers, no CREATE anywhere, SELECT on layers shared with <d>
    catalog    a row in cityhub_maps.layers (what the tile function serves, with zoom range and
               visibility), rows in cityhub_maps.readers (Shared), <d>'s tile token hash in
               cityhub_maps.tile_tokens
    tiles      martin serves cityhub_maps.layer_tile as /layers/{z}/{x}/{y}?layer=<d>.<name>&token=<token>;
               the function decides per request who may read what (catalog_sql.py explains why); a
               refused caller gets a tile holding only the layer cityhub_denied
    deletion   refused while the table holds features unless spec.dataDeletion is Drop; then the table and
               catalog rows go, and when <d> has no layer left its role loses LOGIN (sessions are ended)
               and its tile token is removed

The package, by concern: settings.py (CITYHUB_MAPS_*), maps_driver.py (MapsDriver), postgis.py
(connections, bootstrap, errors), layer.py (the spec and its table's SQL), probe.py (the tile probe).
"""

from __future__ import annotations

from collections.abc import Mapping

from cityhub_api.settings import Env
from component_types.maps.driver.maps_driver import MapsDriver
from component_types.maps.driver.settings import MapsSettings

__all__ = ["MapsDriver", "MapsSettings", "create_driver"]


def create_driver(env: Mapping[str, str]) -> MapsDriver:
    """The driver factory the operator core calls (through the registry); raises SettingError naming a bad
    CITYHUB_MAPS_* variable."""
    return MapsDriver(MapsSettings.from_env(Env(env)))
