"""Credentials that expire and are renewed before they do, and revocations that can then be forgotten.

A revocation in an account JWT (or on an export) says "tokens of this key issued at or before t are
refused". If tokens never expire, the entry must stay forever and the account JWT grows with every deleted
request until its updates no longer fit in a NATS message. With a lifetime L:

    issuing   a subject created at c gets tokens issued at c + k·P (P = L/3, k the number of whole periods
              since c) and expiring L later: every reconcile within a period issues the same token (Secrets
              stay byte-identical), and the token in force has at least 2L/3 left when it is written
    renewal   the owner of the subject re-issues once a period starts (its drift check sees the period
              change), long before the token in force expires
    pruning   every token revoked at t was issued at or before t, so it expires by t + L: after that the
              entry refuses nothing that would still work, and is dropped

Neutral (standard library only): the messaging driver uses it for users and activations; any type whose
credentials carry `exp` can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WILDCARD = "*"
"""The revocation of every key of an account (NATS's `*`): kept, never pruned (it may cover tokens issued
without an expiry)."""


@dataclass(frozen=True)
class Lifetime:
    """How long an issued token lives (seconds), and the renewal period derived from it."""

    seconds: int

    @property
    def period(self) -> int:
        """Seconds between renewals: a third of the lifetime."""
        return max(1, self.seconds // 3)

    def window(self, created_at: int, now: int) -> tuple[int, int]:
        """(issued_at, expires_at) of the token in force at `now` for a subject created at `created_at`."""
        start = max(created_at, 1)
        issued = start + max(0, (now - start) // self.period) * self.period
        return issued, issued + self.seconds

    def prune(self, revocations: Mapping[str, int], now: int) -> dict[str, int]:
        """The entries that still refuse a token that has not expired (the wildcard always stays)."""
        return {k: t for k, t in revocations.items() if k == WILDCARD or int(t) + self.seconds >= now}
