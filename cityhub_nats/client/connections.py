"""The operator's NATS connections to one nats-server: one in the system account (account JWTs) and one per
department's account, opened on first use and reopened when the server closed them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import nats.errors
from cityhub_operator.driver import TemporaryBackendError
from nats.aio.client import Client, RawCredentials

from cityhub_nats.client.errors import error_text
from cityhub_nats.keys import Keys

log = logging.getLogger("cityhub_nats.client")


class Connections:
    def __init__(
        self, servers: list[str], keys: Keys, timeout: float, name: str = "cityhub-operator"
    ) -> None:
        """`servers`: nats:// URLs of one server or cluster; `name` prefixes the connections' names."""
        self.servers, self.keys, self.timeout, self.name = servers, keys, timeout, name
        self._system: Client | None = None
        self._admins: dict[str, Client] = {}
        self._connecting = asyncio.Lock()

    async def _connect(self, creds: str, name: str) -> Client:
        async def quiet(e: Exception) -> None:
            log.debug("nats connection %s: %s", name, type(e).__name__)

        try:
            return await nats.connect(
                servers=self.servers,
                user_credentials=RawCredentials(creds),
                name=name,
                connect_timeout=self.timeout,
                allow_reconnect=True,
                max_reconnect_attempts=3,  # then closed; the next use reconnects
                reconnect_time_wait=0.5,
                error_cb=quiet,
            )
        except (TimeoutError, nats.errors.Error, OSError) as e:
            raise TemporaryBackendError(
                f"cannot connect to NATS at {','.join(self.servers)}: {error_text(e)}"
            ) from e

    async def system(self) -> Client:
        """The operator's connection in the system account."""
        async with self._connecting:
            if self._system is None or self._system.is_closed:
                self._system = await self._connect(self.keys.system_creds(), f"{self.name}-system")
            return self._system

    async def admin(self, department: str) -> Client:
        """The operator's connection in a department's account (the account must exist)."""
        conn = self._admins.get(department)
        if conn is not None and not conn.is_closed:
            return conn
        async with self._connecting:
            conn = self._admins.get(department)
            if conn is None or conn.is_closed:
                conn = await self._connect(self.keys.admin_creds(department), f"{self.name}-{department}")
                self._admins[department] = conn
            return conn

    async def close(self) -> None:
        conns = [*self._admins.values(), *([self._system] if self._system else [])]
        self._admins.clear()
        self._system = None
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
