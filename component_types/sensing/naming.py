"""How a SensorFleet's names map onto the sensing broker (a nats-server with its MQTT gateway).

Neutral (no client library): the driver, the relay, the stack's backend and the docs page use these names,
and every name follows from the request's department (its namespace), name and uid alone. MQTT topic levels
are NATS subject tokens (`ingest/f/d/t` is `ingest.f.d.t`).

    account    one per department on the sensing broker (its own operator and keys: unrelated to messaging)
    ingest     ingest.<fleet>.<device>[.…]      what a device publishes (MQTT ingest/<fleet>/<device>/…),
                                                kept in the work queue <fleet>_ingest until the relay
                                                takes it (nothing is lost while the relay restarts)
    telemetry  telemetry.<fleet>.<device>[.…]   what the relay accepted, captured by the fleet's stream
    rejected   rejected.<fleet>.<device>        why the relay refused a device's message (JSON), readable by
                                                that device only (MQTT rejected/<fleet>/<device>)
    limits     KV bucket `fleets` in the control account, key <department>.<fleet>: the relay's rules
"""

from __future__ import annotations

import re

CONTROL_ACCOUNT = "$control"
"""Label of the control account (holds the `fleets` KV bucket): `$` never starts a namespace."""
FLEETS_BUCKET = "fleets"
RELAY_CONSUMER = "cityhub-relay"
PROBE_DEVICE = "_probe"
"""The operator's probe publishes as this device: `_` never starts a device name, so it cannot collide."""
DEVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
JS_READER_API = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.{stream}",
    "$JS.API.STREAM.MSG.GET.{stream}",
    "$JS.API.DIRECT.GET.{stream}",
    "$JS.API.DIRECT.GET.{stream}.>",
    "$JS.API.CONSUMER.CREATE.{stream}",
    "$JS.API.CONSUMER.CREATE.{stream}.>",
    "$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
    "$JS.API.CONSUMER.INFO.{stream}.*",
    "$JS.API.CONSUMER.DELETE.{stream}.*",
    "$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
    "$JS.ACK.{stream}.>",
    "$JS.FC.{stream}.>",
)
"""What an app's reader credentials may do with JetStream: read its fleet's stream, nothing else."""


def ingest_subject(fleet: str, device: str) -> str:
    return f"ingest.{fleet}.{device}"


def telemetry_subject(fleet: str, device: str) -> str:
    return f"telemetry.{fleet}.{device}"


def telemetry_wildcard(fleet: str) -> str:
    return f"telemetry.{fleet}.>"


def rejected_subject(fleet: str, device: str) -> str:
    return f"rejected.{fleet}.{device}"


def topic(subject: str) -> str:
    """The MQTT topic of a NATS subject."""
    return subject.replace(".", "/")


def probe_subject(fleet: str) -> str:
    """Where the relay passes the operator's probe device on: readable with the fleet's reader credentials,
    captured by no stream (probes do not fill the department's telemetry)."""
    return f"probe.{fleet}"


def stream_name(fleet: str) -> str:
    return fleet


def ingest_stream(fleet: str) -> str:
    """The work-queue stream holding what devices sent until the relay took it (`_` never starts or ends a
    fleet's name, so it cannot be another fleet's stream)."""
    return f"{fleet}_ingest"


def ingest_wildcard(fleet: str) -> str:
    return f"ingest.{fleet}.>"


def fleet_key(department: str, fleet: str) -> str:
    """The fleet's key in the `fleets` KV bucket."""
    return f"{department}.{fleet}"


def device_label(namespace: str, fleet: str, uid: str, device: str) -> str:
    """What a device's key derives from: a fleet made again (new uid) gives its devices new keys."""
    return f"{namespace}/{fleet}/{uid}/device/{device}"


def reader_label(namespace: str, fleet: str, uid: str) -> str:
    return f"{namespace}/{fleet}/{uid}/reader"


def relay_label(department: str) -> str:
    return f"{department}/$relay"


def device_permissions(fleet: str, device: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of a device: publish its own ingest subjects, read why its messages were refused."""
    own = ingest_subject(fleet, device)
    return {"allow": [own, f"{own}.>"]}, {"allow": [rejected_subject(fleet, device)]}


def reader_permissions(fleet: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of an app's reader credentials: its fleet's telemetry and stream, read-only."""
    stream = stream_name(fleet)
    pub = {"allow": ["_INBOX.>", *(s.format(stream=stream) for s in JS_READER_API)]}
    sub = {"allow": [telemetry_wildcard(fleet), probe_subject(fleet), "_INBOX.>"]}
    return pub, sub


def relay_permissions() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of the relay in a department's account: it consumes the ingest work queues (JetStream
    API) and publishes telemetry, rejections and probes."""
    pub = {
        "allow": ["telemetry.>", "rejected.>", "probe.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"]
    }
    return pub, {"allow": ["_INBOX.>", "$JS.>"]}


def parse_ingest(subject: str) -> tuple[str, str, str] | None:
    """(fleet, device, rest) of an ingest subject, or None when it is not one."""
    parts = subject.split(".", 3)
    if len(parts) < 3 or parts[0] != "ingest":
        return None
    return parts[1], parts[2], parts[3] if len(parts) == 4 else ""
