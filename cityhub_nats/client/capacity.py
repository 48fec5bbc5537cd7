"""How much JetStream room a server has left, so a refusal can say what would fit: its whole store and what
streams reserve of it (each its max_bytes), asked through the system account ($SYS.REQ.SERVER.PING.JSZ)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from cityhub_operator.driver import TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import StorageType

from cityhub_nats.client.errors import TEMPORARY, error_text


@dataclass(frozen=True)
class Room:
    """One store (file or memory): its size and what streams reserve of it, in bytes."""

    size: int
    reserved: int

    @property
    def free(self) -> int:
        return max(0, self.size - self.reserved)


async def server_rooms(system: Client, timeout: float) -> dict[StorageType, Room] | None:
    """The server's JetStream file and memory stores (None when it does not answer: only for messages)."""
    try:
        msg = await system.request("$SYS.REQ.SERVER.PING.JSZ", b"{}", timeout=timeout)
        data = json.loads(msg.data or b"{}").get("data") or {}
    except (*TEMPORARY, nats.errors.Error, ValueError):
        return None
    config = data.get("config") or {}
    return {
        StorageType.FILE: Room(int(config.get("max_storage", 0)), int(data.get("reserved_storage", 0))),
        StorageType.MEMORY: Room(int(config.get("max_memory", 0)), int(data.get("reserved_memory", 0))),
    }


async def jetstream_accounts(system: Client, timeout: float) -> set[str] | None:
    """The accounts (public keys) JetStream is on for, while the server's JetStream answers (None: it does
    not, e.g. still recovering its streams after a restart)."""
    try:
        msg = await system.request("$SYS.REQ.SERVER.PING.JSZ", b'{"accounts": true}', timeout=timeout)
        data = json.loads(msg.data or b"{}").get("data") or {}
    except (*TEMPORARY, nats.errors.Error, ValueError):
        return None
    if data.get("disabled") or "config" not in data:
        return None
    return {str(a.get("id") or a.get("name")) for a in data.get("account_details") or []}


def size(n: int) -> str:
    """Bytes the way the limits are written (1Gi, 512Mi, 300Ki, 12345)."""
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)


async def applied(admin: Client, timeout: float) -> tuple[int, int]:
    """The (disk, memory) limits the server enforces for the account ((0, 0) while JetStream is off)."""
    try:
        info = await admin.jetstream(timeout=timeout).account_info()
    except nats.js.errors.ServiceUnavailableError:
        return 0, 0
    except (*TEMPORARY, nats.errors.Error, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS account info of the department: {error_text(e)}") from e
    return info.limits.max_storage or 0, info.limits.max_memory or 0
