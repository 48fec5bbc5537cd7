"""The sensing relay: what devices publish reaches the fleet's stream only within the plan.

    python -m component_types.sensing.relay --url nats://127.0.0.1:4222 --secret-file F [--metrics-port P]

It watches the control account's `fleets` bucket (the driver's rules: per fleet the largest message and the
messages per second a device may send) and, for every fleet, takes what devices sent from the fleet's work
queue <fleet>_ingest (a durable consumer, as its own user in the department's account: nothing is lost while
the relay restarts) and for each message either

    passes it on   to telemetry.<fleet>.<device>[.…] (captured by the fleet's stream), or to probe.<fleet>
                   for the operator's probe device;
    refuses it     with a JSON reason on rejected.<fleet>.<device> (MQTT rejected/<fleet>/<device>), which
                   that device may subscribe to: MessageTooLarge or RateLimited, saying the limit.

Rates are counted per device with a token bucket (bursts up to one second's worth) on the time the gateway
received each message, so a backlog after a restart is not mistaken for a burst. Metrics on /metrics:
cityhub_sensing_messages_total{department, result}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import prometheus_client
from nats.aio.client import Client, RawCredentials
from nats.aio.msg import Msg

from cityhub_nats import jwt
from cityhub_nats.keys import Keys
from component_types.sensing import naming

log = logging.getLogger("component_types.sensing.relay")
MESSAGES = prometheus_client.Counter(
    "cityhub_sensing_messages",
    "Device messages by result: accepted, too_large, rate_limited, unknown_fleet.",
    ["department", "result"],
)


@dataclass
class Bucket:
    """A token bucket: `rate` tokens a second, at most `rate` stored (one second's burst)."""

    rate: float
    tokens: float
    stamp: float = 0.0
    """When the last message arrived (seconds); 0: never."""

    def take(self, now: float) -> bool:
        if self.stamp:
            self.tokens = min(self.rate, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(frozen=True)
class Rules:
    max_bytes: int
    per_second: int

    @classmethod
    def parse(cls, data: bytes) -> Rules:
        doc = json.loads(data or b"{}")
        return cls(int(doc.get("maxMessageBytes") or 0), int(doc.get("messagesPerSecond") or 0))


def verdict(rules: Rules, size: int, bucket: Bucket | None, now: float) -> tuple[str, str] | None:
    """None to pass a message on, else (reason, message) to refuse it."""
    if rules.max_bytes and size > rules.max_bytes:
        return "MessageTooLarge", f"message of {size} bytes; the fleet's plan allows {rules.max_bytes}"
    if bucket is not None and not bucket.take(now):
        return "RateLimited", f"more than {rules.per_second} messages per second from this device"
    return None


class Relay:
    def __init__(self, url: str, secret: bytes) -> None:
        self.url = url
        self.keys = Keys(secret)
        self.rules: dict[tuple[str, str], Rules] = {}
        self.buckets: dict[tuple[str, str, str], Bucket] = {}
        self.departments: dict[str, Client] = {}
        self.fleets: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def _connect(self, creds: str, name: str) -> Client:
        async def quiet(e: Exception) -> None:
            log.debug("nats connection %s: %s", name, e)

        return await nats.connect(
            self.url,
            user_credentials=RawCredentials(creds),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=quiet,
        )

    def _creds(self, department: str) -> str:
        user = self.keys.user(naming.relay_label(department))
        pub, sub = naming.relay_permissions()
        token = jwt.user_jwt(user, self.keys.account(department), "cityhub-relay", pub, sub, issued_at=1)
        return jwt.creds(token, user)

    async def department(self, department: str) -> Client:
        conn = self.departments.get(department)
        if conn is None or conn.is_closed:
            conn = self.departments[department] = await self._connect(
                self._creds(department), f"cityhub-relay-{department}"
            )
        return conn

    def follow(self, department: str, fleet: str) -> None:
        """Relay the fleet's work queue (once; the task ends when the fleet's rules are deleted)."""
        task = self.fleets.get((department, fleet))
        if task is None or task.done():
            self.fleets[(department, fleet)] = asyncio.create_task(self._relay(department, fleet))

    async def _relay(self, department: str, fleet: str) -> None:
        while (department, fleet) in self.rules:
            try:
                conn = await self.department(department)
                sub = await conn.jetstream().pull_subscribe(
                    naming.ingest_wildcard(fleet),
                    durable=naming.RELAY_CONSUMER,
                    stream=naming.ingest_stream(fleet),
                )
                log.info("relaying fleet %s/%s", department, fleet)
                while (department, fleet) in self.rules:
                    try:
                        batch = await sub.fetch(256, timeout=1)
                    except TimeoutError:  # nats' own, or asyncio's when the server answers late (loaded host)
                        continue
                    for msg in batch:
                        await self.handle(department, conn, msg)
                        await msg.ack()
            except asyncio.CancelledError:
                raise
            except (nats.errors.Error, nats.js.errors.Error, OSError) as e:
                log.warning("relay of %s/%s interrupted: %s; retrying", department, fleet, e)
                await asyncio.sleep(1)

    async def handle(self, department: str, conn: Client, msg: Msg) -> None:
        parsed = naming.parse_ingest(msg.subject)
        if parsed is None:
            return
        fleet, device, rest = parsed
        rules = self.rules.get((department, fleet))
        if rules is None:
            MESSAGES.labels(department, "unknown_fleet").inc()
            return
        bucket = None
        if rules.per_second:
            key = (department, fleet, device)
            bucket = self.buckets.get(key)
            if bucket is None or bucket.rate != rules.per_second:
                bucket = self.buckets[key] = Bucket(rules.per_second, rules.per_second, 0.0)
        try:
            received = msg.metadata.timestamp.timestamp()
        except (AttributeError, ValueError):
            received = time.time()
        refused = verdict(rules, len(msg.data), bucket, received)
        if refused is not None:
            reason, message = refused
            MESSAGES.labels(department, "too_large" if reason == "MessageTooLarge" else "rate_limited").inc()
            body = {"reason": reason, "message": message, "topic": naming.topic(msg.subject)}
            await conn.publish(naming.rejected_subject(fleet, device), json.dumps(body).encode())
            return
        if device == naming.PROBE_DEVICE:
            await conn.publish(naming.probe_subject(fleet), msg.data)
            return
        subject = naming.telemetry_subject(fleet, device) + (f".{rest}" if rest else "")
        await conn.publish(subject, msg.data)
        MESSAGES.labels(department, "accepted").inc()

    async def watch(self) -> None:
        """Follow the driver's rules as they change; runs until cancelled."""
        while True:
            try:
                control = await self._connect(
                    self.keys.admin_creds(naming.CONTROL_ACCOUNT), "cityhub-relay-control"
                )
                kv = await control.jetstream().key_value(naming.FLEETS_BUCKET)
                break
            except (nats.errors.Error, nats.js.errors.Error, OSError):
                await asyncio.sleep(1)  # no fleet yet: the driver makes the account and bucket with the first
        watcher = await kv.watchall()
        async for entry in watcher:
            if entry is None:
                continue  # the initial values have all been delivered
            department, _, fleet = entry.key.partition(".")
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.rules.pop((department, fleet), None)
                continue
            self.rules[(department, fleet)] = Rules.parse(entry.value)
            self.follow(department, fleet)

    async def close(self) -> None:
        for task in self.fleets.values():
            task.cancel()
        for conn in self.departments.values():
            with contextlib.suppress(Exception):
                await conn.close()


async def run(url: str, secret: bytes, metrics_port: int) -> None:
    if metrics_port:
        prometheus_client.start_http_server(metrics_port, addr="0.0.0.0")
    relay = Relay(url, secret)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(relay.watch())
    await stop.wait()
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    await relay.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.sensing.relay", description=__doc__)
    parser.add_argument("--url", required=True, help="the gateway's NATS URL")
    parser.add_argument("--secret-file", required=True, type=Path, help="the gateway's master secret")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port (0: off)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","msg":"%(message)s"}')
    secret = args.secret_file.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        parser.error(f"--secret-file {args.secret_file}: needs at least 32 characters of random text")
    asyncio.run(run(args.url, secret, args.metrics_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
