"""A department's application in the messaging attack tests: connected with a channel's credentials, it
records what the server told it; and the check that a victim's channel keeps working."""

from __future__ import annotations

import uuid

import nats
from nats.aio.client import RawCredentials


class App:
    """An application connected with a channel's credentials; records what the server told it."""

    def __init__(self, conn: nats.aio.client.Client, errors: list[str]) -> None:
        self.conn, self.errors = conn, errors

    @classmethod
    async def connect(cls, url: str, creds: str) -> App:
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        conn = await nats.connect(
            url,
            user_credentials=RawCredentials(creds),
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=3,
        )
        return cls(conn, errors)

    def told(self, text: str) -> bool:
        seen = [*self.errors, str(self.conn.last_error or "")]
        return any(text.lower() in e.lower() for e in seen)

    async def close(self) -> None:
        await self.conn.close()


async def keeps_working(creds: str, url: str, dept: str, stream: str) -> None:
    """B publishes into its stream and consumes it back."""
    app = await App.connect(url, creds)
    js = app.conn.jetstream(timeout=3)
    token = uuid.uuid4().hex.encode()
    assert (await js.publish(f"city.{dept}.{stream}.check", token)).stream == stream
    sub = await js.pull_subscribe(f"city.{dept}.{stream}.check", durable=f"check-{uuid.uuid4().hex[:8]}")
    got = [m.data for m in await sub.fetch(100, timeout=3)]
    assert token in got
    await sub.unsubscribe()
    await app.close()
