"""The black-box probe: a publish/consume round trip with a department's own credentials (its Secret).

Only the credentials come from the Secret: the server is the operator's own (CITYHUB_NATS_URL, or on an edge
cluster the edge's, CITYHUB_NATS_EDGE_URL, where the edge's devices and apps publish). Whoever can
write the Secret can change its `url`, and the operator must not connect wherever that says (SSRF); and
credentials that are not the channel's own are refused before any connection is made."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import nats
import nats.errors
import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, Request, TemporaryBackendError
from nats.aio.client import RawCredentials

from cityhub_nats import jwt
from component_types.messaging.driver.errors import TEMPORARY, error_text
from component_types.messaging.naming import probe_subject

log = logging.getLogger("component_types.messaging.driver")


async def round_trip(
    request: Request, secret: Mapping[str, str], servers: list[str], user: str, timeout: float
) -> None:
    """Connect to `servers` with the Secret's user.creds (which must be those of `user`, the channel's user
    key), publish on a probe subject of the department's own (city.<d>._cityhub.probe.<name>: no stream
    stores it, so the department's data is untouched) and receive it back; then read the stream's info."""
    creds = secret.get("user.creds")
    if not creds:
        raise PermanentBackendError("SecretIncomplete", "the Secret lacks user.creds")
    if _subject(creds) != user:
        raise PermanentBackendError(
            "SecretTampered", "the Secret's user.creds are not this channel's (changed outside the operator)"
        )
    url = ",".join(servers)
    name = request.name

    async def quiet(e: Exception) -> None:
        log.debug("probe connection %s: %s", request.key, type(e).__name__)

    try:
        conn = await nats.connect(
            servers=servers,
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


def _subject(creds: str) -> str | None:
    """The user public key a .creds file's JWT is for (None when it holds no JWT)."""
    lines = creds.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("-----BEGIN NATS USER JWT"):
            try:
                return str(jwt.decode(lines[i + 1].strip()).get("sub"))
            except ValueError:
                return None
    return None
