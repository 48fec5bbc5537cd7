"""Every nkey of one nats-server's trust chain, derived from a master secret: nothing is stored.

HMAC-SHA256(master secret, "cityhub-nats/<role>/<label>") is the ed25519 seed of each nkey, so the same
secret gives the same keys after a restart, in the driver, in the rendered server configuration and in the
local launcher alike, and the names of backend objects follow from a request alone:

    operator                      the trust root the server's configuration names
    account $SYS                  the system account: the operator pushes account JWTs through it
    user $SYS/cityhub-operator    the operator's user in the system account
    account <department>          one per department (its streams, exports and imports)
    user <department>/cityhub-operator   the operator's own user in a department's account
    user <label>                  a department's credentials, e.g. <namespace>/<name>/<uid> of a request

Two types that run nats-server with different master secrets get unrelated keys.
"""

from __future__ import annotations

import hashlib
import hmac

import nkeys

from cityhub_nats import jwt
from cityhub_nats.jwt import Key

SYSTEM_ACCOUNT = "$SYS"
OPERATOR_USER = "cityhub-operator"
OPERATOR_NAME = "cityhub"
CONFIG_ISSUED_AT = 1
"""`iat` of the JWTs in the server's configuration (operator, system account) and of the operator's own
users: fixed, so the rendered configuration and the credentials are byte-identical on every render (a
second `pulumi up` changes nothing)."""

_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


def derive_key(master: bytes, role: str, label: str) -> Key:
    """The nkey of `role` (operator, account or user) named `label`, derived from the master secret."""
    raw = hmac.new(master, f"cityhub-nats/{role}/{label}".encode(), hashlib.sha256).digest()
    seed = nkeys.encode_seed(raw, _PREFIX[role])
    public = nkeys.from_seed(seed).public_key.decode()
    return Key(seed=seed.decode(), public=public)


class Keys:
    """The keys of one master secret; accounts and users are derived on first use and remembered."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.operator = derive_key(secret, "operator", OPERATOR_NAME)
        self.system_account = derive_key(secret, "account", SYSTEM_ACCOUNT)
        self.system_user = derive_key(secret, "user", f"{SYSTEM_ACCOUNT}/{OPERATOR_USER}")
        self._cache: dict[tuple[str, str], Key] = {}

    def _derive(self, role: str, label: str) -> Key:
        key = self._cache.get((role, label))
        if key is None:
            key = self._cache[(role, label)] = derive_key(self._secret, role, label)
        return key

    def account(self, department: str) -> Key:
        return self._derive("account", department)

    def admin(self, department: str) -> Key:
        """The operator's own user in a department's account: it manages the streams."""
        return self._derive("user", f"{department}/{OPERATOR_USER}")

    def user(self, label: str) -> Key:
        """A department's credentials named `label` (messaging: <namespace>/<name>/<uid> of the request)."""
        # Not cached: one per request, used once per reconcile.
        return derive_key(self._secret, "user", label)

    def operator_jwt(self) -> str:
        return jwt.operator_jwt(
            self.operator, self.system_account.public, OPERATOR_NAME, issued_at=CONFIG_ISSUED_AT
        )

    def system_account_jwt(self) -> str:
        return jwt.account_jwt(
            self.system_account,
            self.operator,
            SYSTEM_ACCOUNT,
            {"limits": jwt.unlimited_account_limits(jetstream=False)},
            issued_at=CONFIG_ISSUED_AT,
        )

    def system_creds(self) -> str:
        """The operator's credentials in the system account (account lookups and updates)."""
        token = jwt.user_jwt(
            self.system_user,
            self.system_account,
            OPERATOR_USER,
            {"allow": [">"]},
            {"allow": [">"]},
            issued_at=CONFIG_ISSUED_AT,
        )
        return jwt.creds(token, self.system_user)

    def admin_creds(self, department: str) -> str:
        """The operator's credentials in a department's account (its streams)."""
        user, account = self.admin(department), self.account(department)
        token = jwt.user_jwt(
            user, account, OPERATOR_USER, {"allow": [">"]}, {"allow": [">"]}, issued_at=CONFIG_ISSUED_AT
        )
        return jwt.creds(token, user)
