"""What NATS errors mean to the operator: retry later (temporary) or change the request (permanent)."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

TEMPORARY = (
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    OSError,
)
"""Errors of an unreachable, slow or restarting server: TemporaryBackendError, retried with backoff."""

REFUSALS = {
    10047: "the NATS server has no room for limits.maxBytes: lower spec.limits.maxBytes",
    10058: "a stream of this name exists with settings that cannot change (storage): delete and recreate",
    10065: "the stream's subjects overlap another stream in the department",
    10052: "the stream's settings are invalid",
    10027: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
    10028: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
}
"""JetStream refusals that no retry can fix (err_code → what to change): PermanentBackendError."""


def error_text(e: BaseException) -> str:
    """A NATS error for a condition message (never a credential: errors carry no creds)."""
    if isinstance(e, nats.js.errors.APIError):
        return f"{e.description or type(e).__name__} (code {e.code}, err_code {e.err_code})"
    return str(e) or type(e).__name__
