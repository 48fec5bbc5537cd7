"""Fixtures for every test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cityhub_api import registry

# Each component type's folder may hold pytest fixtures (component_types/<type>/fixtures.py): every test can
# use them, e.g. a test of the isolation matrix starting several types' backends.
pytest_plugins = [
    t.module_name(registry.FIXTURES) for t in registry.component_types().values() if t.has(registry.FIXTURES)
]


def _ensure_event_loop() -> None:
    """Pulumi's mocks and SDK call asyncio.get_event_loop(); after any earlier asyncio.run() (driver and
    operator tests) Python 3.11 has no current loop and that raises, so one is set when it is missing."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(autouse=True, scope="module")
def module_event_loop() -> Iterator[None]:
    """Before module-scoped fixtures (e.g. a whole stack run under mocks once per module)."""
    _ensure_event_loop()
    yield


@pytest.fixture(autouse=True)
def current_event_loop() -> Iterator[None]:
    _ensure_event_loop()
    yield
