"""The operator's connections to PostGIS: one locked transaction per operation, the catalog bootstrapped once
per driver, and backend failures sorted into temporary (retried) and permanent (reported) ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from cityhub_operator.driver import PermanentBackendError, TemporaryBackendError
from psycopg import sql

from component_types.maps.catalog_sql import bootstrap_statements
from component_types.maps.driver.settings import MapsSettings

# One advisory lock serializes the driver's changes: roles are cluster-wide, and two layers of one
# department (or a reader's role created by two sharing layers) must not race on CREATE.
LOCK_KEY = 0x63697479_6D617073 & 0x7FFFFFFFFFFFFFFF
TEMPORARY = (psycopg.OperationalError, asyncio.TimeoutError, OSError)
# Conflicts with a concurrent transaction: the same statements succeed when retried.
CONFLICTS = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.UniqueViolation,
)

Connection = psycopg.AsyncConnection[Any]


class Postgis:
    """Connections as the operator's superuser (settings.dsn); each operation opens and closes its own."""

    def __init__(self, settings: MapsSettings, tiles_password: str) -> None:
        self.settings = settings
        self._tiles_password = tiles_password
        self._bootstrapped = False
        self._bootstrap_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Connection]:
        """A locked transaction as the operator; backend outages become TemporaryBackendError."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.settings.dsn, connect_timeout=max(1, int(self.settings.timeout))
            )
        except TEMPORARY as e:
            raise TemporaryBackendError(f"PostGIS unreachable for {what}: {error_text(e)}") from e
        try:
            async with conn:
                await self._bootstrap(conn)
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                    # A department can hold a lock on its own table (an open transaction): the operator
                    # gives up after the timeout and retries later, instead of waiting forever under the
                    # lock every other department's changes wait for.
                    await conn.execute(
                        sql.SQL("SET LOCAL lock_timeout = {}").format(
                            sql.Literal(f"{int(self.settings.timeout * 1000)}ms")
                        )
                    )
                    yield conn
        except PermanentBackendError:
            raise
        except (*TEMPORARY, *CONFLICTS) as e:
            raise TemporaryBackendError(f"PostGIS {what}: {error_text(e)}") from e
        except psycopg.Error as e:
            raise PermanentBackendError("BackendRefused", f"PostGIS refused {what}: {error_text(e)}") from e

    async def _bootstrap(self, conn: Connection) -> None:
        """Create the catalog once per driver; a session lock keeps concurrent bootstraps (this driver's
        parallel reconciles, another operator replica) from updating the same catalog rows at once."""
        if self._bootstrapped:
            return
        async with self._bootstrap_lock:
            if self._bootstrapped:
                return
            await conn.set_autocommit(True)
            await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                # Plain text without parameters: psycopg sends it as is (its % signs are PL/pgSQL's).
                for statement in bootstrap_statements(self._tiles_password):
                    await conn.execute(statement)  # type: ignore[arg-type]
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
                await conn.set_autocommit(False)
            self._bootstrapped = True


def error_text(e: BaseException) -> str:
    """PostgreSQL's primary message (never the statement, which may hold a password)."""
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    return primary or str(e).strip() or type(e).__name__
