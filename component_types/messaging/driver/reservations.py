"""A department's JetStream limits follow what its channels reserve.

nats-server reserves every account's JetStream limits on the server: the sum of all accounts' `disk_storage`
(and `mem_storage`) must fit in its store, or JetStream is not turned on for a new account and new limits of
an old one are not applied. Fixed per-department quotas would each have to be the store divided by the number
of departments. So an account's `disk_storage`/`mem_storage` are the sum of its streams' maxBytes (what the
department may have), and that sum may not pass the department's quota (CITYHUB_NATS_ACCOUNT_FILE_STORE,
…_MEMORY_STORE: OverDepartmentLimits): the server holds the whole city to its store, and no department can
take more than its quota of it. (The department's credentials cannot create streams: the operator makes all
of them, one per channel, each with maxBytes, which the account also requires.)

    grow     the limits first — the server applies them or keeps the old ones, which is checked: a channel
             that does not fit is refused naming the server's room left — then the stream
    shrink   the stream first, then the limits
    headroom nats-server checks the account's limit before a full stream discards its oldest message: with
             limits of exactly the sum, a full stream would refuse new messages instead of discarding old
             ones. Each stream adds room for one message (CITYHUB_NATS_ACCOUNT_PAYLOAD plus its subject).
    leaf     the `leaf` limit (leaf node connections) is the serving operator's to set on its own
             department's account: 0 on the hub, 1 on an edge (its edge's leaf node, driver/edges.py). A
             change to another department's account (a share's import) keeps what that account has
             (`leaf=None`), so neither the hub's operator nor an edge's undoes the other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import StorageType

from cityhub_nats.client.accounts import Accounts, Change
from cityhub_nats.client.capacity import applied, server_rooms, size
from cityhub_nats.client.errors import TEMPORARY, error_text
from component_types.messaging.driver.settings import DepartmentLimits
from component_types.messaging.driver.streams import storage_of

FLOOR = 1
"""`disk_storage` of an account without streams: one byte, so JetStream stays on (0 and 0 turn it off)."""
SUBJECT_ROOM = 4 * 2**10
"""What a stored message takes besides its payload (headers count in the payload): its subject (at most
nats-server's 4Ki control line) and the store's own bytes."""
STORES = {
    StorageType.FILE: ("file", "disk_storage", "CITYHUB_NATS_ACCOUNT_FILE_STORE", "maxFileStore"),
    StorageType.MEMORY: ("memory", "mem_storage", "CITYHUB_NATS_ACCOUNT_MEMORY_STORE", "max_memory_store"),
}


@dataclass(frozen=True)
class Reserved:
    """What streams reserve: bytes (their maxBytes) and how many streams, in the file and the memory store."""

    file: int = 0
    memory: int = 0
    file_streams: int = 0
    memory_streams: int = 0

    def plus(self, storage: StorageType, n: int) -> Reserved:
        if storage == StorageType.MEMORY:
            return Reserved(self.file, self.memory + n, self.file_streams, self.memory_streams + 1)
        return Reserved(self.file + n, self.memory, self.file_streams + 1, self.memory_streams)

    def and_(self, other: Reserved) -> Reserved:
        """Both: the sum."""
        return Reserved(
            self.file + other.file,
            self.memory + other.memory,
            self.file_streams + other.file_streams,
            self.memory_streams + other.memory_streams,
        )

    def most(self, other: Reserved) -> Reserved:
        """Room for either: the larger of each."""
        return Reserved(
            max(self.file, other.file),
            max(self.memory, other.memory),
            max(self.file_streams, other.file_streams),
            max(self.memory_streams, other.memory_streams),
        )

    def of(self, storage: StorageType) -> int:
        return self.memory if storage == StorageType.MEMORY else self.file

    def stores(self, limits: DepartmentLimits) -> tuple[int, int]:
        """The account's (disk_storage, mem_storage): the bytes, and room for one message per stream."""
        message = limits.payload + SUBJECT_ROOM
        disk = self.file + self.file_streams * message
        return max(FLOOR, disk), self.memory + self.memory_streams * message

    def limits(self, limits: DepartmentLimits, leaf: int = 0) -> dict[str, Any]:
        return limits.account(*self.stores(limits), leaf)


def _leaf(have: dict[str, Any], leaf: int | None) -> int:
    """`leaf`, or (None) the account's own leaf limit."""
    return int(have.get("leaf", 0)) if leaf is None else leaf


def static(limits: DepartmentLimits, leaf: int | None = None) -> Change:
    """The account's limits from the settings, its JetStream stores kept as they are; its leaf limit
    `leaf`, or (None) kept as it is."""

    def change(claims: dict[str, Any]) -> None:
        have = claims.get("limits") or {}
        file, memory = int(have.get("disk_storage", FLOOR)), int(have.get("mem_storage", 0))
        # -1 (an account from before) stays until reserved
        claims["limits"] = limits.account(file, memory, _leaf(have, leaf))

    return change


def reserving(limits: DepartmentLimits, reserved: Reserved, leaf: int | None = None) -> Change:
    def change(claims: dict[str, Any]) -> None:
        claims["limits"] = reserved.limits(limits, _leaf(claims.get("limits") or {}, leaf))

    return change


async def streams_reserved(admin: Client, timeout: float, exclude: str = "") -> tuple[Reserved, Reserved]:
    """(what the account's other streams reserve, what stream `exclude` reserves now)."""
    others, this = Reserved(), Reserved()
    try:
        for info in await admin.jetstream(timeout=timeout).streams_info():
            storage = info.config.storage or StorageType.FILE
            n = max(0, info.config.max_bytes or 0)
            if info.config.name == exclude:
                this = this.plus(storage, n)
            else:
                others = others.plus(storage, n)
    except (*TEMPORARY, nats.errors.Error, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS streams of the department: {error_text(e)}") from e
    return others, this


def check_quota(request: Request, limits: DepartmentLimits, others: Reserved, current: Reserved) -> None:
    """OverDepartmentLimits when the stream grows (from `current`) and the department's channels with it
    would pass its quota. One that does not grow always passes: a lowered quota never stops the renewal of
    a channel's credentials."""
    storage = storage_of(request)
    kind, _, variable, _ = STORES[storage]
    quota = limits.memory_store if storage == StorageType.MEMORY else limits.file_store
    wanted = int(request.limits["maxBytes"])
    held = others.of(storage)
    if wanted > current.of(storage) and held + wanted > quota:
        raise PermanentBackendError(
            "OverDepartmentLimits",
            f"spec.limits.maxBytes={size(wanted)} does not fit: the department's other channels reserve "
            f"{size(held)} of its JetStream {kind} store {size(quota)} ({variable}), "
            f"{size(max(0, quota - held))} free — lower spec.limits.maxBytes or delete a channel",
        )


async def reserve(
    accounts: Accounts,
    admin: Client,
    system: Client,
    department: str,
    limits: DepartmentLimits,
    wanted: Reserved,
    timeout: float,
    *,
    request: Request | None = None,
    leaf: int | None = None,
) -> None:
    """Make the account's JetStream limits `wanted` (its leaf limit `leaf`, None: kept), applied by the
    server. When they grow past what the server has room for, it keeps the old ones: then (for `request`)
    BackendRefused naming the room left."""
    await accounts.modify(department, reserving(limits, wanted, leaf))
    want = wanted.stores(limits)
    got = await applied(admin, timeout)
    if got == want:
        return
    # The claims may already say so while the server kept older limits (no room then): apply them again.
    await accounts.modify(department, reserving(limits, wanted, leaf), force=True)
    got = await applied(admin, timeout)
    if got[0] >= want[0] and got[1] >= want[1]:
        return
    if request is None:
        raise TemporaryBackendError(f"NATS did not apply the JetStream limits of {department}")
    storage = storage_of(request)
    kind, _, _, setting = STORES[storage]
    rooms = await server_rooms(system, timeout)
    room = f"; it has {size(rooms[storage].free)} of {size(rooms[storage].size)} unreserved" if rooms else ""
    raise PermanentBackendError(
        "BackendRefused",
        f"NATS has no room for spec.limits.maxBytes={size(int(request.limits['maxBytes']))}: the server's "
        f"JetStream {kind} store ({setting}) is reserved by the city's channels{room} — lower "
        "spec.limits.maxBytes",
    )
