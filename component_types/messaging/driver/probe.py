"""The black-box probe: a publish/consume round trip with a department's own credentials (its Secret)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import nats
import nats.errors
import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import RawCredentials

from component_types.messaging.driver.errors import TEMPORARY, error_text
from component_types.messaging.naming import probe_subject

log = logging.getLogger("component_types.messaging.driver")


async def round_trip(request: Request, secret: Mapping[str, str], timeout: float) -> None:
    """Connect with the Secret's user.creds, publish on a probe subject of the department's own
    (city.<d>._cityhub.probe.<name>: no stream stores it, so the department's data is untouched) and receive
    it back; then read the channel's stream info."""
    creds, url = secret.get("user.creds"), secret.get("url")
    if not creds or not url:
        raise PermanentBackendError("SecretIncomplete", "the Secret lacks url or user.creds")
    name = request.name

    async def quiet(e: Exception) -> None:
        log.debug("probe connection %s: %s", request.key, type(e).__name__)

    try:
        conn = await nats.connect(
            servers=[u.strip() for u in url.split(",")],
            user_credentials=RawCredentials(creds),
            name="cityhub-probe",
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except (*TEMPORARY, nats.errors.Error) as e:
        raise TemporaryBackendError(f"cannot connect to NATS at {url}: {error_text(e)}") from e
    try:
        subject = probe_subject(request.department, name)
        sub = await conn.subscribe(subject, max_msgs=1)
        await conn.publish(subject, b"probe")
        msg = await sub.next_msg(timeout=timeout)
        if msg.data != b"probe":
            raise TemporaryBackendError(f"probe round trip on {subject} returned other data")
        info = await conn.jetstream(timeout=timeout).stream_info(name)
        if info.config.name != name:
            raise TemporaryBackendError(f"stream {name} answered as {info.config.name}")
    except nats.js.errors.NotFoundError as e:
        raise TemporaryBackendError(f"stream {name} is missing") from e
    except (*TEMPORARY, nats.errors.Error, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"probe of {request.key}: {error_text(e)}") from e
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
