"""How a MessagingChannel's names map onto NATS: subjects, exports, imports and what credentials may do.

Neutral (no NATS client): the driver builds its objects from these names, the docs page explains them, and
every name follows from the request's department (its namespace) and name alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

READERS_PREFIX = "cityhub readers: "
"""An export's description records the departments granted last: `cityhub readers: jiaotong,weijian`."""
SHARED_PREFIX = "shared.>"
"""Where a department receives what other departments share with it."""
JS_CONSUMER_API = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.>",
    "$JS.FC.>",
)
"""What a department's credentials may do with JetStream: read streams and manage consumers, nothing else
(streams belong to the operator)."""


def own_prefix(department: str) -> str:
    """Every subject a department's credentials may publish and subscribe on."""
    return f"city.{department}.>"


def channel_subjects(department: str, name: str) -> list[str]:
    """The stream's subjects."""
    return [f"city.{department}.{name}", f"city.{department}.{name}.>"]


def channel_wildcard(department: str, name: str) -> str:
    """The channel's subjects as one wildcard: what is exported, and `subjects` in the Secret."""
    return f"city.{department}.{name}.>"


def export_name(name: str) -> str:
    return f"channel/{name}"


def import_name(department: str, name: str) -> str:
    return f"{department}/{name}"


def shared_subject(department: str, name: str) -> str:
    """Where a reader receives a channel shared with it (read-only: nothing it publishes there arrives)."""
    return f"shared.{department}.{name}.>"


def probe_subject(department: str, name: str) -> str:
    """The operator's probe round trip, as the department: no stream captures it."""
    return f"city.{department}._cityhub.probe.{name}"


def user_label(namespace: str, name: str, uid: str) -> str:
    """What a request's user key derives from: a request made again (new uid) gets a new user."""
    return f"{namespace}/{name}/{uid}"


def user_permissions(department: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of a department's credentials: its own subjects, what is shared with it, consumer API."""
    own = own_prefix(department)
    pub = {"allow": [own, "_INBOX.>", *JS_CONSUMER_API]}
    sub = {"allow": [own, SHARED_PREFIX, "_INBOX.>"]}
    return pub, sub


def readers_of(export: Mapping[str, Any] | None) -> set[str]:
    """The departments an export's description records as readers (what the driver granted last)."""
    text = (export or {}).get("description", "")
    if not text.startswith(READERS_PREFIX):
        return set()
    return {d for d in text.removeprefix(READERS_PREFIX).split(",") if d}


def readers_description(readers: set[str]) -> str:
    return READERS_PREFIX + ",".join(sorted(readers))
