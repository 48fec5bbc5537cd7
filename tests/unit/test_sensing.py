"""The sensing type without servers: the relay's verdicts, names and permissions, and its cluster backend."""

from __future__ import annotations

from component_types.sensing import naming
from component_types.sensing.relay import Bucket, Rules, verdict
from tests.unit.test_components import find, hub, stack_raw


def test_the_relay_refuses_over_size_and_over_rate_saying_the_limit() -> None:
    rules = Rules(max_bytes=100, per_second=2)
    bucket = Bucket(2, 2)
    assert verdict(rules, 101, bucket, 10.0) == (
        "MessageTooLarge",
        "message of 101 bytes; the fleet's plan allows 100",
    )
    assert verdict(rules, 10, bucket, 10.0) is None and verdict(rules, 10, bucket, 10.1) is None
    assert verdict(rules, 10, bucket, 10.2) == (
        "RateLimited",
        "more than 2 messages per second from this device",
    )
    assert verdict(rules, 10, bucket, 10.8) is None, "tokens come back at the fleet's rate"


def test_a_backlog_is_counted_on_the_time_messages_arrived() -> None:
    bucket = Bucket(1, 1)
    assert all(bucket.take(t) for t in (1.0, 2.0, 3.0)), "one a second, however late they are relayed"


def test_devices_publish_only_their_own_topics_and_readers_only_read() -> None:
    pub, sub = naming.device_permissions("water", "w1")
    assert pub == {"allow": ["ingest.water.w1", "ingest.water.w1.>"]} and sub == {
        "allow": ["rejected.water.w1"]
    }
    pub, sub = naming.reader_permissions("water")
    assert "telemetry.water.>" in sub["allow"] and not any(s.startswith("ingest") for s in pub["allow"])
    assert all("water" in s or s in ("_INBOX.>", "$JS.API.INFO") for s in pub["allow"])
    assert naming.parse_ingest("ingest.water.w1.level.raw") == ("water", "w1", "level.raw")
    assert naming.parse_ingest("telemetry.water.w1") is None
    assert naming.ingest_stream("water") != naming.stream_name("water-ingest")


def test_the_cluster_backend_serves_mqtt_with_tls_behind_its_front_door() -> None:
    raw = stack_raw()
    raw["backends"] = {"deploy": ["sensing"], "sensing": {"tlsSecret": "iot-tls", "storageSize": "10Gi"}}
    raw["backendsMasterKey"] = "k" * 48
    created = hub(raw)
    door = find(created, "Service", "sensing", "cityhub-system").inputs["spec"]
    assert [(p["name"], p["port"]) for p in door["ports"]] == [("main", 1883), ("nats", 4222)]
    config = find(created, "ConfigMap", "sensing-gateway-config", "cityhub-system").inputs["data"]
    text = config["nats-server.conf"]
    assert "mqtt {" in text and "tls {" in text and "k" * 32 not in text
    relay = find(created, "Deployment", "sensing-relay", "cityhub-system").inputs["spec"]["template"]["spec"]
    assert relay["containers"][0]["command"] == ["python", "-m", "component_types.sensing.relay"]
