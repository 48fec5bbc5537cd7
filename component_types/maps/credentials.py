"""Every maps credential is derived from one master secret, so restarts and retries find the same ones.

HMAC-SHA256(secret, "cityhub-maps/<purpose>/<label>"), URL-safe: a department role's password, a
department's tile token, the tiles role's password. Nothing needs storing, and rendering martin's database
URL in the stack (or the local launcher) gives the same tiles password the operator uses. Neutral: no
database client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from component_types.maps.naming import TILES_ROLE


class Credentials:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _derive(self, purpose: str, label: str) -> str:
        raw = hmac.new(self._secret, f"cityhub-maps/{purpose}/{label}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def department_password(self, department: str) -> str:
        return self._derive("role", department)

    def tile_token(self, department: str) -> str:
        return self._derive("tiles", department)

    def tiles_password(self) -> str:
        return self._derive("role", TILES_ROLE)


def token_hash(token: str) -> bytes:
    """What cityhub_maps.tile_tokens stores: the tile function compares sha256 of the presented token."""
    return hashlib.sha256(token.encode()).digest()
