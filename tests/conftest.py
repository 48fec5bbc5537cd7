"""Fixtures for every test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def current_event_loop() -> Iterator[None]:
    """Pulumi's mocks and SDK call asyncio.get_event_loop(); after any earlier asyncio.run() (driver and
    operator tests) Python 3.11 has no current loop and that raises, so each test gets one if it lacks it."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    yield
