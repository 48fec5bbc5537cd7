"""Settings from environment variables, limit units, the catalog and the driver registry."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from cityhub_operator import drivers_loader
from cityhub_operator import plans as catalog
from cityhub_operator.driver import PermanentBackendError, Request
from cityhub_operator.settings import OperatorSettings

from cityhub_api import registry, units
from cityhub_api.settings import NotConfigured
from component_types.messaging.driver import NatsSettings


def test_defaults_and_values() -> None:
    assert OperatorSettings.from_env({}) == OperatorSettings()
    s = OperatorSettings.from_env(
        {
            "CITYHUB_NAMESPACES": "jiaotong, yingji",
            "CITYHUB_DRIFT_INTERVAL": "30",
            "CITYHUB_LOG_FORMAT": "PLAIN",
            "CITYHUB_METRICS_PORT": "0",
            "CITYHUB_COMPONENTS": "messaging",
        }
    )
    assert s.namespaces == ("jiaotong", "yingji") and s.drift_interval == 30 and s.log_format == "plain"
    assert s.metrics_port == 0 and s.components == ("messaging",)


def test_watch_timeouts_and_peering() -> None:
    s = OperatorSettings()
    assert (s.watch_server_timeout, s.watch_client_timeout) == (120, 150)
    assert (s.api_connect_timeout, s.api_timeout) == (10, 60)
    assert s.watch_stale_after == 180, "/healthz fails 3 minutes after a watch stopped restarting"
    assert (s.peering, s.peering_priority, s.peering_lifetime) == ("", 0, 20), "standalone unless told"
    s = OperatorSettings.from_env(
        {
            "CITYHUB_WATCH_SERVER_TIMEOUT": "30",
            "CITYHUB_WATCH_GRACE": "5",
            "CITYHUB_PEERING": "cityhub-operator",
            "CITYHUB_PEERING_PRIORITY": "200",
            "CITYHUB_PEERING_LIFETIME": "10",
        }
    )
    assert (s.watch_server_timeout, s.watch_client_timeout, s.watch_stale_after) == (30, 60, 65)
    assert (s.peering, s.peering_priority, s.peering_lifetime) == ("cityhub-operator", 200, 10)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CITYHUB_DRIFT_INTERVAL": "soon"},
            "Invalid CITYHUB_DRIFT_INTERVAL=soon: needs to be a number of seconds, at least 1",
        ),
        (
            {"CITYHUB_DRIFT_INTERVAL": "0"},
            "Invalid CITYHUB_DRIFT_INTERVAL=0: needs to be a number of seconds, at least 1",
        ),
        ({"CITYHUB_METRICS_PORT": "99999"}, "Invalid CITYHUB_METRICS_PORT=99999: needs to be a TCP port"),
        (
            {"CITYHUB_WORKER_LIMIT": "-1"},
            "Invalid CITYHUB_WORKER_LIMIT=-1: needs to be an integer of at least 0",
        ),
        ({"CITYHUB_LOG_FORMAT": "xml"}, "Invalid CITYHUB_LOG_FORMAT=xml: needs to be one of json, plain"),
        (
            {"CITYHUB_NAMESPACES": "Jiao_Tong"},
            "Invalid CITYHUB_NAMESPACES=Jiao_Tong: needs to be a comma-separated",
        ),
        (
            {"CITYHUB_WATCH_SERVER_TIMEOUT": "1.5"},
            "Invalid CITYHUB_WATCH_SERVER_TIMEOUT=1.5: needs to be an integer of at least 1",
        ),
        (
            {"CITYHUB_WATCH_SERVER_TIMEOUT": "300", "CITYHUB_WATCH_CLIENT_TIMEOUT": "60"},
            "Invalid CITYHUB_WATCH_CLIENT_TIMEOUT=60: needs to be a number of seconds, at least 300",
        ),
        (
            {"CITYHUB_API_CONNECT_TIMEOUT": "0"},
            "Invalid CITYHUB_API_CONNECT_TIMEOUT=0: needs to be a number of seconds, above 0",
        ),
        (
            {"CITYHUB_PEERING_LIFETIME": "3"},
            "Invalid CITYHUB_PEERING_LIFETIME=3: needs to be an integer of at least 10",
        ),
        (
            {"CITYHUB_PEERING": "a,b"},
            "Invalid CITYHUB_PEERING=a,b: needs to be one object name",
        ),
    ],
)
def test_invalid_settings_say_what_they_need(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        OperatorSettings.from_env(env)


def test_nats_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 40 + "\n")
    s = NatsSettings.from_env(
        {"CITYHUB_NATS_URL": "nats://127.0.0.1:4222", "CITYHUB_NATS_SECRET_FILE": str(secret)}
    )
    assert s.secret == b"x" * 40 and s.public_url == s.url and s.timeout == 5.0
    with pytest.raises(
        ValueError, match=r"^Invalid CITYHUB_NATS_URL=http://x: needs to be nats://host:port"
    ):
        NatsSettings.from_env({"CITYHUB_NATS_URL": "http://x", "CITYHUB_NATS_SECRET_FILE": str(secret)})
    with pytest.raises(
        ValueError, match=r"^Invalid CITYHUB_NATS_SECRET: needs to hold at least 32 characters"
    ):
        NatsSettings.from_env({"CITYHUB_NATS_URL": "nats://a:1", "CITYHUB_NATS_SECRET": "short"})
    with pytest.raises(
        ValueError, match=r"^Invalid CITYHUB_NATS_SECRET_FILE=/nope: needs to be a readable file"
    ):
        NatsSettings.from_env({"CITYHUB_NATS_URL": "nats://a:1", "CITYHUB_NATS_SECRET_FILE": "/nope"})
    with pytest.raises(
        ValueError, match=r"^Invalid CITYHUB_NATS_REPLICAS=9: needs to be an integer of at least 1 and"
    ):
        NatsSettings.from_env(
            {"CITYHUB_NATS_URL": "nats://a:1", "CITYHUB_NATS_SECRET": "y" * 32, "CITYHUB_NATS_REPLICAS": "9"}
        )


@pytest.mark.parametrize(
    ("kind", "value", "number"),
    [
        ("duration", "90m", 5400),
        ("duration", "7d", 604800),
        ("quantity", "10Gi", 10 * 2**30),
        ("quantity", "5M", 5_000_000),
        ("quantity", 1024, 1024),
        ("integer", 7, 7),
        ("integer", "7", 7),
    ],
)
def test_units(kind: str, value: object, number: int) -> None:
    assert units.parse(kind, value) == number


@pytest.mark.parametrize(
    ("kind", "value"),
    [("duration", "7 days"), ("quantity", "1.5Gi"), ("integer", 0), ("integer", True), ("quantity", -1)],
)
def test_bad_units(kind: str, value: object) -> None:
    with pytest.raises(ValueError, match="needs to be"):
        units.parse(kind, value)


def test_an_invalid_catalog_entry_is_reported_as_such() -> None:
    ctype = registry.component_types()["messaging"]
    offering = {
        "componentType": "messaging",
        "defaultPlan": "p",
        "plans": [{"name": "p", "limits": {"maxAge": "a week"}}],
    }
    with pytest.raises(catalog.Unmet) as e:
        catalog.resolve(ctype, {}, "m", offering, ["m"])
    assert e.value.reason == "InvalidOffering" and "ask the platform team" in str(e.value)
    with pytest.raises(catalog.Unmet) as e:
        catalog.resolve(ctype, {}, "m", {"componentType": "maps", "plans": []}, ["other"])
    assert e.value.reason == "OfferingTypeMismatch"


def test_the_registry_loads_drivers_by_name() -> None:
    ctype = registry.component_types()["messaging"]
    env = {"CITYHUB_NATS_URL": "nats://127.0.0.1:1", "CITYHUB_NATS_SECRET": "z" * 32}
    driver = drivers_loader.load_driver(ctype, env)
    assert type(driver).__module__.startswith("component_types.messaging.driver")
    missing = dataclasses.replace(ctype, package="component_types.nope")
    with pytest.raises(drivers_loader.DriverLoadError, match="component type messaging: cannot import"):
        drivers_loader.load_driver(missing, env)


def test_a_type_nobody_configured_is_refused_with_what_to_set() -> None:
    """Serving every type, the operator starts without a backend's settings and says so on its requests;
    asked for that type (CITYHUB_COMPONENTS), it does not start."""
    ctype = registry.component_types()["messaging"]
    driver = drivers_loader.load_driver(ctype, {}, required=False)
    request = Request("dept-yingji", "alerts", "u", "dept-yingji", {}, {})
    with pytest.raises(PermanentBackendError) as e:
        asyncio.run(driver.ensure(request))
    assert e.value.reason == "BackendNotConfigured" and "CITYHUB_NATS_URL is not set" in str(e.value)
    with pytest.raises(NotConfigured, match="CITYHUB_NATS_URL is not set"):
        drivers_loader.load_driver(ctype, {})
