"""What NATS errors mean to the messaging driver: retry later (temporary), or change the request."""

from __future__ import annotations

from cityhub_nats.client.errors import TEMPORARY, error_text

__all__ = ["REFUSALS", "STORE_FULL", "TEMPORARY", "error_text"]

NO_ROOM = (
    "no room for limits.maxBytes in the department's or the server's JetStream store: "
    "lower spec.limits.maxBytes"
)
REFUSALS = {
    10047: NO_ROOM,
    10028: NO_ROOM,
    10002: NO_ROOM,
    10027: "the department has as many channels as it may (CITYHUB_NATS_ACCOUNT_STREAMS): delete one first",
    10058: "a stream of this name exists with settings that cannot change (storage): delete and recreate",
    10065: "the stream's subjects overlap another stream in the department",
    10052: "the stream's settings are invalid",
    10113: "the department's account requires spec.limits.maxBytes",
}
"""JetStream refusals that no retry can fix (err_code → what to change): PermanentBackendError."""
STORE_FULL = frozenset({10047, 10028, 10002})
"""Refusals for want of room (file or memory store, the account's or the server's): the message says how
much is left where."""
