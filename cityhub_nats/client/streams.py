"""A JetStream stream the operator owns in a department's account: drift, create/update and delete, the same
way for every type whose backend is a nats-server. The type says what it wants (a StreamConfig) and what each
refusal means for its request; departments' credentials cannot change streams.

`domain`: the JetStream domain the stream lives in, reached from the operator's connection ($JS.<domain>.API,
e.g. an edge cluster's through its leaf node); None is the connection's own server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import nats.js.errors
from cityhub_operator.driver import PermanentBackendError, TemporaryBackendError
from nats.aio.client import Client
from nats.js.api import StreamConfig

from cityhub_nats.client.errors import TEMPORARY, error_text

COMPARED = ("max_bytes", "max_msgs", "max_msg_size", "storage", "num_replicas", "description")


def _sources(config: StreamConfig) -> list[tuple[str, str | None, str | None]]:
    """What a stream sources: (stream, external API prefix, consumer) each (the server adds fields)."""
    return sorted(
        (s.name, s.external.api if s.external else None, s.consumer.name if s.consumer else None)
        for s in config.sources or []
    )


def differences(have: StreamConfig, want: StreamConfig) -> list[str]:
    """The fields of `have` that differ from `want` (the server adds fields of its own: not compared)."""
    out = ["subjects"] if (have.subjects or None) != (want.subjects or None) else []  # none: None or []
    out += [field for field in COMPARED if getattr(have, field) != getattr(want, field)]
    if round(have.max_age or 0) != round(want.max_age or 0):
        out.append("max_age")
    if any((have.metadata or {}).get(k) != v for k, v in (want.metadata or {}).items()):
        out.append("metadata")
    if _sources(have) != _sources(want):
        out.append("sources")
    republish = [(r.src, r.dest) if r else None for r in (have.republish, want.republish)]
    if republish[0] != republish[1]:
        out.append("republish")
    return out


@contextlib.contextmanager
def refusals_mapped(where: str, name: str, refusals: Mapping[int, str]) -> Iterator[None]:
    """What a JetStream call's failure means for the request: an unreachable or busy server is a
    TemporaryBackendError; a refusal of the request as written (err_code in `refusals`, or any 4xx) is a
    PermanentBackendError saying what to change."""
    try:
        yield
    except TEMPORARY as e:
        raise TemporaryBackendError(f"NATS stream {where}: {error_text(e)}") from e
    except nats.js.errors.APIError as e:
        hint = refusals.get(e.err_code or 0)
        if hint is None and (e.code or 500) >= 500:
            raise TemporaryBackendError(f"NATS stream {where}: {error_text(e)}") from e
        raise PermanentBackendError(
            "BackendRefused",
            f"NATS refused stream {name}: {e.description} — {hint or 'change the request'}",
        ) from e


async def drift(
    admin: Client, want: StreamConfig, timeout: float, where: str, *, domain: str | None = None
) -> str | None:
    """One sentence saying how the stream differs from `want`, or None when it matches."""
    try:
        info = await admin.jetstream(timeout=timeout, domain=domain).stream_info(str(want.name))
    except nats.js.errors.NotFoundError:
        return f"stream {want.name} is missing"
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {where}: {error_text(e)}") from e
    diff = differences(info.config, want)
    return f"stream {want.name} differs in {', '.join(diff)}" if diff else None


async def ensure(
    admin: Client,
    want: StreamConfig,
    timeout: float,
    where: str,
    refusals: Mapping[int, str],
    *,
    domain: str | None = None,
) -> None:
    """Create the stream, or update it where it differs (errors: refusals_mapped)."""
    js = admin.jetstream(timeout=timeout, domain=domain)
    with refusals_mapped(where, str(want.name), refusals):
        try:
            info = await js.stream_info(str(want.name))
        except nats.js.errors.NotFoundError:
            await js.add_stream(want)
            return
        if differences(info.config, want):
            await js.update_stream(want)


async def delete(admin: Client, name: str, timeout: float, where: str, *, domain: str | None = None) -> None:
    """Delete the stream and its messages; done when it is already gone."""
    try:
        await admin.jetstream(timeout=timeout, domain=domain).delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    except (*TEMPORARY, nats.js.errors.APIError) as e:
        raise TemporaryBackendError(f"NATS stream {where}: delete failed: {error_text(e)}") from e
