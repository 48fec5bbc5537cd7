"""The black-box probe of a MapLayer: a tile fetched from martin with the department's own token."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from urllib.parse import urlencode

from cityhub_operator.driver import PermanentBackendError, TemporaryBackendError

from component_types.maps.naming import DENIED_LAYER, TILE_SOURCE


async def probe_tile(base_url: str, layer: str, token: str, timeout: float) -> None:
    """Fetch tile 0/0/0 of `layer` with `token`, as a map client would; raise BackendError when martin fails
    or refuses (a refusal is a tile holding only the layer DENIED_LAYER)."""
    url = f"{base_url}/{TILE_SOURCE}/0/0/0?{urlencode({'layer': layer, 'token': token})}"
    what = f"tile 0/0/0 of layer {layer}"
    body = await asyncio.to_thread(_fetch, url, timeout, what)
    if DENIED_LAYER.encode() in body:
        raise PermanentBackendError(
            "TileRefused", f"martin refused {what} to the department's tileToken ({DENIED_LAYER})"
        )


def _fetch(url: str, timeout: float, what: str) -> bytes:
    # Errors name the tile, never the URL: its query string holds the token.
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:
        if e.code in (502, 503, 504):
            raise TemporaryBackendError(f"martin answered {e.code} for {what}") from e
        raise PermanentBackendError("TileRefused", f"martin answered {e.code} for {what}") from e
    except (urllib.error.URLError, OSError) as e:
        raise TemporaryBackendError(f"martin unreachable for {what}: {e}") from e
