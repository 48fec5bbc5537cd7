"""What NATS errors mean to the operator: retry later (temporary), and how to say what happened."""

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


def error_text(e: BaseException) -> str:
    """A NATS error for a condition message (never a credential: errors carry no creds)."""
    if isinstance(e, nats.js.errors.APIError):
        return f"{e.description or type(e).__name__} (code {e.code}, err_code {e.err_code})"
    return str(e) or type(e).__name__
