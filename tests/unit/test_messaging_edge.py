"""The messaging driver's edge mode without servers: its settings (CITYHUB_NATS_EDGE*), the `leaf` limit of a
department's account (an edge department admits its edge's leaf node, a hub department none, and neither
cluster's operator undoes the other's), and what the hub's stream tells of the edge's uplink."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from nats.js.api import (
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamInfo,
    StreamSource,
    StreamSourceInfo,
    StreamState,
)

from cityhub_api.settings import SettingError
from cityhub_nats.client.streams import differences
from component_types.messaging.driver import NatsSettings, create_driver
from component_types.messaging.driver import edges as edge_streams
from component_types.messaging.driver.reservations import Reserved, reserving, static
from component_types.messaging.driver.settings import DepartmentLimits, EdgeSettings

SECRET = "edge-settings-secret-0123456789-abcdefghijklmnop"
HUB = {"CITYHUB_NATS_URL": "nats://hub:4222", "CITYHUB_NATS_SECRET": SECRET}
EDGE = {**HUB, "CITYHUB_NATS_EDGE": "xihu-edge", "CITYHUB_NATS_EDGE_URL": "nats://nats.xihu.example:4222"}


def test_without_an_edge_the_operator_serves_the_hub() -> None:
    settings = NatsSettings.from_env(HUB)
    assert settings.edge is None
    assert settings.leaf_nodes == 0
    assert NatsSettings.from_env({**HUB, "CITYHUB_NATS_EDGE": " "}).edge is None  # blank: unset


def test_an_edge_operator_knows_its_edge_and_the_url_for_secrets() -> None:
    settings = NatsSettings.from_env({**EDGE, "CITYHUB_NATS_EDGE_SILENCE": "5"})
    assert settings.edge == EdgeSettings("xihu-edge", "nats://nats.xihu.example:4222", 5.0)
    assert settings.leaf_nodes == 1
    assert settings.servers == ["nats://hub:4222"]  # accounts and the edge's JetStream: through the hub
    assert NatsSettings.from_env(EDGE).edge == EdgeSettings(
        "xihu-edge", "nats://nats.xihu.example:4222", 30.0
    )
    assert (create_driver(EDGE).leaf, create_driver(HUB).leaf) == (1, 0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CITYHUB_NATS_EDGE": "Xihu_Edge"},
            "Invalid CITYHUB_NATS_EDGE=Xihu_Edge: needs to be the edge cluster",
        ),
        ({"CITYHUB_NATS_EDGE": "xihu.edge"}, "Invalid CITYHUB_NATS_EDGE=xihu.edge: needs to be"),
        ({"CITYHUB_NATS_EDGE": "-xihu"}, "Invalid CITYHUB_NATS_EDGE=-xihu: needs to be"),
        (
            {"CITYHUB_NATS_EDGE_URL": ""},
            "CITYHUB_NATS_EDGE_URL is not set: needs to be nats://host:port of edge",
        ),
        (
            {"CITYHUB_NATS_EDGE_URL": "http://x:4222"},
            "Invalid CITYHUB_NATS_EDGE_URL=http://x:4222: needs to be",
        ),
        ({"CITYHUB_NATS_EDGE_SILENCE": "1"}, "Invalid CITYHUB_NATS_EDGE_SILENCE=1: needs to be a number of"),
        ({"CITYHUB_NATS_EDGE_SILENCE": "soon"}, "Invalid CITYHUB_NATS_EDGE_SILENCE=soon"),
        (
            {"CITYHUB_NATS_EDGE": ""},
            "Invalid CITYHUB_NATS_EDGE_URL=nats://nats.xihu.example:4222: needs CITYHUB",
        ),
    ],
)
def test_bad_edge_settings_name_the_variable_and_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError) as e:
        NatsSettings.from_env({**EDGE, **env})
    assert str(e.value).startswith(message), str(e.value)


def test_a_hub_department_admits_no_leaf_node_and_an_edge_department_its_edges() -> None:
    limits = DepartmentLimits()
    reserved = Reserved().plus(StorageType.FILE, 2**20)
    assert limits.account(1, 0)["leaf"] == 0
    assert reserved.limits(limits)["leaf"] == 0
    assert reserved.limits(limits, NatsSettings.from_env(EDGE).leaf_nodes)["leaf"] == 1


def apply(change: Any, claims: dict[str, Any]) -> dict[str, Any]:
    change(claims)
    return claims


def test_reservations_keep_the_leaf_limit_an_operator_set() -> None:
    limits = DepartmentLimits()
    reserved = Reserved().plus(StorageType.FILE, 2**20)
    on_edge = apply(static(limits, 1), {})
    assert on_edge["limits"]["leaf"] == 1
    # The edge's operator re-reserves its own department: still 1.
    assert apply(reserving(limits, reserved, 1), on_edge)["limits"]["leaf"] == 1
    # The hub's operator changes it as a reader of a share (leaf=None): it keeps the edge's 1 …
    assert apply(static(limits), on_edge)["limits"]["leaf"] == 1
    assert apply(reserving(limits, reserved), on_edge)["limits"]["leaf"] == 1
    # … and its own departments get 0, whatever they had.
    assert apply(static(limits, 0), on_edge)["limits"]["leaf"] == 0
    assert apply(static(limits), {})["limits"]["leaf"] == 0  # a new account: none


def hub_stream(active: int | None, created_ago: float = 100.0, source: str = "water-level") -> StreamInfo:
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=created_ago)
    return StreamInfo(
        config=StreamConfig(name="water-level"),
        state=StreamState(messages=0, bytes=0, first_seq=0, last_seq=0, consumer_count=0),
        sources=[StreamSourceInfo(name=source, active=active)],
        created=created,
    )


def test_the_uplinks_silence_is_what_the_hub_last_heard_from_the_edge() -> None:
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert edge_streams.uplink_silence(hub_stream(2_500_000_000), "water-level", now) == 2.5
    # Never heard from: since the hub's stream was made.
    silent = edge_streams.uplink_silence(hub_stream(-1, created_ago=40), "water-level", now)
    assert silent == pytest.approx(40, abs=1)
    assert edge_streams.uplink_silence(hub_stream(0, source="other"), "water-level", now) is None


def test_a_stream_without_subjects_or_with_other_sources_is_compared_as_such() -> None:
    want = StreamConfig(name="s", subjects=None, description="d")
    assert differences(StreamConfig(name="s", subjects=[], description="d"), want) == []

    def sourcing(api: str) -> StreamConfig:
        source = StreamSource(name="s", external=ExternalStream(api=api))
        return StreamConfig(name="s", description="d", sources=[source])

    sourced, other = sourcing("$JS.a.API"), sourcing("$JS.b.API")
    assert differences(sourced, other) == ["sources"]
    assert differences(sourced, want) == ["sources"]
