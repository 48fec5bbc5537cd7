"""What NATS errors mean to the messaging driver: retry later (temporary) or change the request."""

from __future__ import annotations

from cityhub_nats.client.errors import TEMPORARY, error_text

__all__ = ["REFUSALS", "TEMPORARY", "error_text"]

REFUSALS = {
    10047: "the NATS server has no room for limits.maxBytes: lower spec.limits.maxBytes",
    10058: "a stream of this name exists with settings that cannot change (storage): delete and recreate",
    10065: "the stream's subjects overlap another stream in the department",
    10052: "the stream's settings are invalid",
    10027: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
    10028: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
}
"""JetStream refusals that no retry can fix (err_code → what to change): PermanentBackendError."""

