"""Admin-call slots handed out oldest operation first.

A plain semaphore serves calls in arrival order. When a hundred clients arrive together, each ensure's next
call queues behind everyone else's current one, so all hundred become Ready together at the very end. Here a
free slot goes to the waiting call whose operation (ensure, observe, delete) started first: the first
clients finish first, while the queue stays full, so Keycloak is as busy as before.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

operation_started: ContextVar[float | None] = ContextVar("operation_started", default=None)
"""When the current driver operation started (time.monotonic); set by `operation()`, read by the calls made
within it (tasks it starts inherit it). Unset: the call itself is the operation."""


@contextmanager
def operation() -> Iterator[None]:
    """Within this block the admin calls queue by when it was entered."""
    token = operation_started.set(time.monotonic())
    try:
        yield
    finally:
        operation_started.reset(token)


class OldestFirst:
    """At most `limit` holders at once; waiters are admitted by the start of their operation."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties keep arrival order

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        started = operation_started.get()
        rank = time.monotonic() if started is None else started
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._order), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # the slot arrived together with the cancellation: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # a cancelled waiter left its entry behind
                granted.set_result(None)
                return
        self._free += 1
