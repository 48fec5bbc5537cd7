"""The edge uplink gauge (多级贯通): what CityhubEdgeUplinkDown reads, from drivers that report uplinks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest
from cityhub_operator import metrics, uplinks
from cityhub_operator.driver import UplinkReporter


class Reporter:
    def __init__(self, *answers: Mapping[str, bool] | Exception) -> None:
        self.answers = list(answers)

    async def uplinks(self) -> Mapping[str, bool]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def gauge(edge: str) -> float:
    return metrics.EDGE_UPLINK.labels(edge=edge)._value.get()


def test_the_gauge_follows_the_reports_and_logs_each_change(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(Reporter(), UplinkReporter)
    messaging = Reporter(
        {"xihu-edge": True}, {"xihu-edge": False}, RuntimeError("hub gone"), {"xihu-edge": True}
    )
    other = Reporter({"xihu-edge": True, "gongshu-edge": True}, {}, {}, {"xihu-edge": False})
    last: dict[str, bool] = {}
    caplog.set_level(logging.INFO, logger="cityhub_operator.uplinks")
    asyncio.run(uplinks.report([messaging, other], last))
    assert (gauge("xihu-edge"), gauge("gongshu-edge")) == (1, 1)
    asyncio.run(uplinks.report([messaging, other], last))
    assert gauge("xihu-edge") == 0 and "edge xihu-edge uplink DOWN" in caplog.text
    # A failing driver and drivers with nothing to judge by change nothing: the last state stands.
    asyncio.run(uplinks.report([messaging, other], last))
    assert (gauge("xihu-edge"), gauge("gongshu-edge")) == (0, 1)
    assert "uplink report of Reporter failed" in caplog.text
    # An edge is up only when every driver serving it says so.
    asyncio.run(uplinks.report([messaging, other], last))
    assert gauge("xihu-edge") == 0
    assert caplog.text.count("uplink DOWN") == 1  # logged once per change, not per report
