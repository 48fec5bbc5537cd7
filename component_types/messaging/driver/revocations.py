"""Revoking a channel's user in its department's account JWT, and keeping the JWT from growing forever.

A deleted (or orphaned) channel's user key is revoked at the time of deletion: the server disconnects it and
refuses every token issued until then. Tokens expire (CITYHUB_NATS_CREDENTIALS_LIFETIME), so once that much
time has passed the entry refuses nothing that would still work and is pruned (cityhub_nats.renewal); the
same holds for a withdrawn reader's revocation on an export (activations expire too), and an import whose
activation has expired delivers nothing and is dropped. Every change the driver makes to an account tidies
it this way, so the JWT holds at most what the last lifetime revoked.

Credentials issued before they expired (by an earlier operator) carry no `exp`: a revocation of such a key
must stay. The first change to an account records since when its channels' credentials expire (the account's
description, `cityhub: channel credentials expire since <t>`); the user of a request created before that may
hold a token without expiry and is revoked for good (PERMANENT: every token of the key, never pruned). There
are only as many such entries as requests existed before, so they do not grow.
"""

from __future__ import annotations

from typing import Any

from cityhub_nats.client.accounts import Change
from cityhub_nats.renewal import Lifetime
from component_types.messaging.driver import shares

SINCE = "cityhub: channel credentials expire since "
PERMANENT = 4_102_444_800
"""2100-01-01: a revocation at this time refuses every token of the key and outlives any pruning."""


def expiring_since(claims: dict[str, Any]) -> int | None:
    """Since when the account's channels get expiring credentials (None: not recorded yet)."""
    text = str(claims.get("description") or "")
    if text.startswith(SINCE) and text.removeprefix(SINCE).isdigit():
        return int(text.removeprefix(SINCE))
    return None


def tidy(claims: dict[str, Any], now: int, lifetime: Lifetime) -> None:
    """Record since when credentials expire (once); prune the account's and its exports' revocations older
    than a lifetime; drop expired imports."""
    if expiring_since(claims) is None:
        claims["description"] = f"{SINCE}{now}"
    claims["revocations"] = lifetime.prune(claims.get("revocations") or {}, now)
    for export in claims.get("exports") or []:
        kept = lifetime.prune(export.get("revocations") or {}, now)
        if kept:
            export["revocations"] = kept
        else:
            export.pop("revocations", None)
    claims["imports"] = shares.live(claims.get("imports"), now)


def revoke(user: str, created_at: int, now: int, lifetime: Lifetime) -> Change:
    """Revoke the user key of a request created at `created_at`: every token issued until `now`, or every
    token for good when the request is older than the account's expiring credentials."""

    def change(claims: dict[str, Any]) -> None:
        tidy(claims, now, lifetime)
        since = expiring_since(claims) or now
        at = now if created_at and created_at >= since else PERMANENT
        claims["revocations"] = {**claims["revocations"], user: at}

    return change


def without_export(name: str) -> Change:
    def change(claims: dict[str, Any]) -> None:
        claims["exports"] = [e for e in claims.get("exports") or [] if e.get("name") != name]

    return change


def chain(*changes: Change) -> Change:
    def change(claims: dict[str, Any]) -> None:
        for one in changes:
            one(claims)

    return change
