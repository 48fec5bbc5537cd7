"""How much JetStream room a server has left, so a refusal can say what would fit: its whole store and what
streams reserve of it (each its max_bytes), asked through the system account ($SYS.REQ.SERVER.PING.JSZ)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.js.api import StorageType

from cityhub_nats.client.errors import TEMPORARY


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


def size(n: int) -> str:
    """Bytes the way the limits are written (1Gi, 512Mi, 300Ki, 12345)."""
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(n)
