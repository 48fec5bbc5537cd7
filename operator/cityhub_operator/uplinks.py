"""Edge uplinks (多级贯通): every driver that watches an edge's connection to the hub (driver.UplinkReporter)
is asked on the probe timer's interval, and cityhub_edge_uplink_up{edge} follows its answer.

Why a loop of its own and not a kopf timer: an uplink belongs to an edge cluster, not to any one request, and
must be reported even while none of the edge's requests changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from cityhub_operator import metrics
from cityhub_operator.driver import Driver, UplinkReporter
from cityhub_operator.probes import ProbeSettings

log = logging.getLogger(__name__)


async def report(reporters: list[UplinkReporter], last: dict[str, bool]) -> None:
    """Ask every reporter once and set the gauge; an edge is up only when every driver serving it says so.
    Logs each change of state (the alert names the edge; the log says when it changed)."""
    now: dict[str, bool] = {}
    for reporter in reporters:
        try:
            answers = await reporter.uplinks()
        except Exception:  # one failing driver must not stop the others' reports
            log.exception("uplink report of %s failed", type(reporter).__name__)
            continue
        for edge, up in answers.items():
            now[edge] = now.get(edge, True) and up
    for edge, up in now.items():
        metrics.EDGE_UPLINK.labels(edge=edge).set(1 if up else 0)
        if last.get(edge) != up:
            level = logging.INFO if up else logging.WARNING
            log.log(level, "edge %s uplink %s", edge, "up" if up else "DOWN")
        last[edge] = up


def register(registry: kopf.OperatorRegistry, drivers: Mapping[str, Driver]) -> None:
    """Start the report loop with the operator when a driver reports uplinks and probes are on."""
    reporters = [d for d in drivers.values() if isinstance(d, UplinkReporter)]
    interval = ProbeSettings.from_env().interval
    if not reporters or interval <= 0:
        return
    running: list[asyncio.Task[None]] = []

    async def loop() -> None:
        last: dict[str, bool] = {}
        while True:
            await report(reporters, last)
            await asyncio.sleep(interval)

    @kopf.on.startup(registry=registry)
    async def start_uplinks(**_: Any) -> None:
        running.append(asyncio.create_task(loop(), name="cityhub-uplinks"))

    @kopf.on.cleanup(registry=registry)
    async def stop_uplinks(**_: Any) -> None:
        for task in running:
            task.cancel()
