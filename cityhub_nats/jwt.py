"""nkeys and the JWTs of NATS decentralized auth, encoded the way github.com/nats-io/jwt/v2 encodes them.

Header {"typ":"JWT","alg":"ed25519-nkey"}; claims with jti = base32(sha512/256(claims without jti)); signed by
the issuer's nkey (the operator signs accounts, an account signs its users and activations).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT = -1


@dataclass(frozen=True)
class Key:
    """An nkey: its seed (secret) and public key (names the operator, account or user)."""

    seed: str
    public: str

    def sign(self, data: bytes) -> bytes:
        return nkeys.from_seed(self.seed.encode()).sign(data)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], issuer: Key, *, issued_at: int | None = None) -> str:
    """Sign `claims` (sub, name, nats, …) as a JWT issued by `issuer`."""
    body = dict(claims)
    body["iss"] = issuer.public
    body["iat"] = int(time.time()) if issued_at is None else issued_at
    body.pop("jti", None)
    digest = hashlib.new("sha512_256", json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


def decode(token: str) -> dict[str, Any]:
    """The claims of a JWT (not verified: the server verifies; we only read what we wrote)."""
    try:
        return json.loads(_unb64(token.split(".")[1]))
    except (IndexError, ValueError) as e:
        raise ValueError("not a JWT") from e


def operator_jwt(
    operator: Key, system_account: str, name: str = "cityhub", *, issued_at: int | None = None
) -> str:
    return encode(
        {
            "sub": operator.public,
            "name": name,
            "nats": {"system_account": system_account, "type": "operator", "version": 2},
        },
        operator,
        issued_at=issued_at,
    )


def unlimited_account_limits(jetstream: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "imports": NO_LIMIT,
        "exports": NO_LIMIT,
        "wildcards": True,
        "conn": NO_LIMIT,
        "leaf": NO_LIMIT,
    }
    if jetstream:
        limits.update(
            {"mem_storage": NO_LIMIT, "disk_storage": NO_LIMIT, "streams": NO_LIMIT, "consumer": NO_LIMIT}
        )
    return limits


def account_jwt(
    account: Key, operator: Key, name: str, nats: dict[str, Any], *, issued_at: int | None = None
) -> str:
    """An account JWT; `nats` holds imports, exports, limits, revocations (type/version are added)."""
    return encode(
        {"sub": account.public, "name": name, "nats": {**nats, "type": "account", "version": 2}},
        operator,
        issued_at=issued_at,
    )


def user_jwt(
    user: Key,
    account: Key,
    name: str,
    pub: dict[str, list[str]],
    sub: dict[str, list[str]],
    *,
    issued_at: int | None = None,
    expires_at: int | None = None,
    payload: int = NO_LIMIT,
    subs: int = NO_LIMIT,
    bearer_token: bool = False,
) -> str:
    """A user JWT. `expires_at`: Unix seconds after which the server refuses it and disconnects it (None:
    never); `payload`: the largest message it may publish (bytes); `subs`: its subscriptions at most;
    `bearer_token`: the JWT alone authenticates (no nonce signed with the seed) — what MQTT clients need,
    since they send the JWT as their password."""
    nats: dict[str, Any] = {
        "pub": pub,
        "sub": sub,
        "subs": subs,
        "data": NO_LIMIT,
        "payload": payload,
        "type": "user",
        "version": 2,
    }
    if bearer_token:
        nats["bearer_token"] = True
    claims = {"sub": user.public, "name": name, "nats": nats, **_expiry(expires_at)}
    return encode(claims, account, issued_at=issued_at)


def activation_jwt(
    exporter: Key,
    importer_public: str,
    subject: str,
    name: str,
    *,
    issued_at: int | None = None,
    expires_at: int | None = None,
) -> str:
    """Grants the importing account the exporter's private stream export `subject` (until `expires_at`)."""
    return encode(
        {
            "sub": importer_public,
            "name": name,
            "nats": {"subject": subject, "kind": "stream", "type": "activation", "version": 2},
            **_expiry(expires_at),
        },
        exporter,
        issued_at=issued_at,
    )


def _expiry(expires_at: int | None) -> dict[str, int]:
    return {} if expires_at is None else {"exp": expires_at}


def expiry(token: str) -> int | None:
    """A JWT's `exp` (None: it never expires, or it is not a JWT)."""
    try:
        exp = decode(token).get("exp")
    except ValueError:
        return None
    return int(exp) if isinstance(exp, int | float) else None


def creds(user_token: str, user: Key) -> str:
    """A .creds file: what a NATS client needs to connect as the user."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_token}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
