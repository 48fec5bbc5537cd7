"""The sensing probe: a device publish round trip, MQTT in and NATS out, as a department experiences it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from urllib.parse import urlsplit

import nats
import nats.errors
import paho.mqtt.client as mqtt
from cityhub_operator.driver import BackendError, TemporaryBackendError
from nats.aio.client import RawCredentials

from cityhub_nats.client.errors import TEMPORARY, error_text
from component_types.sensing import naming

log = logging.getLogger(__name__)


def publish(
    mqtt_url: str, client_id: str, username: str, password: str, topic: str, payload: bytes, timeout: float
) -> None:
    """Connect, publish one QoS 1 message, wait for its acknowledgement, disconnect (blocking: paho)."""
    url = urlsplit(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    if url.scheme == "mqtts":
        client.tls_set()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883))
    except OSError as e:
        raise TemporaryBackendError(f"MQTT gateway at {mqtt_url} unreachable: {e}") from e
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TemporaryBackendError(f"MQTT gateway at {mqtt_url}: no CONNACK within {timeout:g}s")
        if refused:
            raise BackendError(f"MQTT gateway refused the probe device: {refused[0]}")
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TemporaryBackendError(f"MQTT gateway did not acknowledge the probe within {timeout:g}s")
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()


async def round_trip(
    *, mqtt_url: str, device_jwt: str, nats_url: str, reader_creds: str, fleet: str, timeout: float
) -> None:
    """The probe device publishes a nonce over MQTT; the reader credentials must receive it from the relay."""
    nonce = secrets.token_hex(8).encode()

    async def quiet(e: Exception) -> None:
        # Without a callback nats-py logs every failed attempt with a traceback: a backend outage would
        # fill the operator's log with them, while the raise below already says what happened.
        log.debug("sensing probe connection: %s", type(e).__name__)

    try:
        conn = await nats.connect(
            nats_url,
            user_credentials=RawCredentials(reader_creds),
            name="cityhub-probe-sensing",
            connect_timeout=timeout,
            allow_reconnect=False,
            error_cb=quiet,
        )
    except (*TEMPORARY, nats.errors.Error) as e:
        raise TemporaryBackendError(f"cannot read the telemetry at {nats_url}: {error_text(e)}") from e
    try:
        sub = await conn.subscribe(naming.probe_subject(fleet))
        await conn.flush(timeout)
        topic = naming.topic(naming.ingest_subject(fleet, naming.PROBE_DEVICE))
        client_id = f"cityhub-probe-{fleet}-{nonce.decode()}"
        await asyncio.to_thread(
            publish, mqtt_url, client_id, naming.PROBE_DEVICE, device_jwt, topic, nonce, timeout
        )
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except TimeoutError as e:  # nats' own, or asyncio's
                raise BackendError(
                    f"the probe's message did not come through the relay within {timeout:g}s"
                ) from e
            if msg.data == nonce:
                return
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
