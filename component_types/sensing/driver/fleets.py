"""SensingDriver: a SensorFleet's account, stream, relay rules, device credentials and revocations.

How a SensorFleet `<fleet>` in department (namespace) `<d>` maps onto the gateway (see naming.py):

    account    `<d>` on the gateway (JetStream on); its JWT lists revoked device keys
    stream     `<fleet>` in `<d>`'s account on telemetry.<fleet>.>, limits from the plan
    rules      KV `fleets` in the control account, key `<d>.<fleet>`: size and rate limits, the devices
               issued (the relay enforces the limits; the driver remembers what to revoke)
    devices    one user per device, key from (<d>, <fleet>, uid, device), a bearer JWT (an MQTT client sends
               it as its password) allowed to publish ingest.<fleet>.<device>[.…] only
    reader     one user per fleet for the department's apps: read telemetry.<fleet>.> and the stream
    removal    a device no longer listed is revoked in the account JWT: the gateway disconnects it and
               refuses it from then on; listing it again issues a new JWT (issued after the revocation)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import nats.js.errors
from cityhub_operator.driver import Observation, PermanentBackendError, Request, Result, TemporaryBackendError
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from cityhub_nats import jwt
from cityhub_nats.client import streams
from cityhub_nats.client.accounts import Accounts
from cityhub_nats.client.capacity import applied, jetstream_accounts, server_rooms, size
from cityhub_nats.client.connections import Connections
from cityhub_nats.client.errors import TEMPORARY, error_text
from cityhub_nats.jwt import Key
from cityhub_nats.keys import Keys
from component_types.sensing import naming
from component_types.sensing.driver.probe import round_trip
from component_types.sensing.driver.settings import SensingSettings

MESSAGE_ROOM = 2**20 + 4 * 2**10
"""Room for one message in a stream: nats-server's largest payload (1MB) and its subject."""
INGEST_MAX_AGE = 3600
"""Seconds a device message waits for the relay at most (the relay is down for longer only in an outage)."""
REFUSALS = {
    10047: "the gateway has no room for limits.maxBytes: lower spec.limits.maxBytes",
    10027: "the department has reached its number of streams on the gateway: delete a fleet it does not use",
    10028: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
}


def ingest_config(request: Request) -> StreamConfig:
    """Device messages until the relay takes them: a work queue, bounded by the fleet's storage limit."""
    fleet = request.name
    return StreamConfig(
        name=naming.ingest_stream(fleet),
        description=f"SensorFleet {request.key}: device messages for the relay",
        subjects=[naming.ingest_wildcard(fleet)],
        retention=RetentionPolicy.WORK_QUEUE,
        discard=DiscardPolicy.OLD,
        max_age=float(INGEST_MAX_AGE),
        max_bytes=int(request.limits["maxBytes"]) if "maxBytes" in request.limits else -1,
        max_msgs=-1,
        max_msg_size=-1,  # over-size messages must reach the relay, which says why it refuses them
        storage=StorageType.FILE,
        num_replicas=1,
        metadata={"cityhub.io/request": request.key, "cityhub.io/uid": request.uid},
    )


def stream_config(request: Request) -> StreamConfig:
    limits = request.limits
    fleet = request.name
    return StreamConfig(
        name=naming.stream_name(fleet),
        description=f"SensorFleet {request.key}",
        subjects=[naming.telemetry_wildcard(fleet)],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=float(limits["maxAge"]) if "maxAge" in limits else None,
        max_bytes=int(limits["maxBytes"]) if "maxBytes" in limits else -1,
        max_msgs=-1,
        max_msg_size=int(limits["maxMessageBytes"]) if "maxMessageBytes" in limits else -1,
        storage=StorageType.FILE,
        num_replicas=1,
        metadata={"cityhub.io/request": request.key, "cityhub.io/uid": request.uid},
    )


class SensingDriver:
    """The sensing backend: the gateway's system connection, one per department account, the control KV."""

    def __init__(self, settings: SensingSettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.secret)
        self.connections = Connections(
            [settings.url], self.keys, settings.timeout, "cityhub-operator-sensing"
        )
        self.accounts = Accounts(self.connections, self.keys, settings.timeout)
        self._kv: KeyValue | None = None

    async def close(self) -> None:
        await self.connections.close()

    # -- keys ------------------------------------------------------------------------------------------

    def device_key(self, request: Request, device: str) -> Key:
        return self.keys.user(naming.device_label(request.namespace, request.name, request.uid, device))

    def reader_key(self, request: Request) -> Key:
        return self.keys.user(naming.reader_label(request.namespace, request.name, request.uid))

    def device_jwt(self, request: Request, device: str, revoked_at: int = 0) -> str:
        """The device's bearer JWT, issued after any revocation of its key (so re-listing it works) and
        otherwise at the request's creation: the same token on every reconcile."""
        issued = max(request.created_at or 1, revoked_at + 1)
        pub, sub = naming.device_permissions(request.name, device)
        return jwt.user_jwt(
            self.device_key(request, device),
            self.keys.account(request.department),
            device,
            pub,
            sub,
            issued_at=issued,
            bearer_token=True,
        )

    # -- the relay's rules -----------------------------------------------------------------------------

    async def kv(self) -> KeyValue:
        """The control account's `fleets` bucket (the account and the bucket are made on first use)."""
        if self._kv is not None:
            return self._kv
        await self.accounts.modify(naming.CONTROL_ACCOUNT, lambda claims: None)
        js = (await self.connections.admin(naming.CONTROL_ACCOUNT)).jetstream(timeout=self.settings.timeout)
        try:
            try:
                self._kv = await js.key_value(naming.FLEETS_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(KeyValueConfig(bucket=naming.FLEETS_BUCKET, history=1))
        except (*TEMPORARY, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"sensing control bucket: {error_text(e)}") from e
        return self._kv

    async def rules(self, request: Request) -> dict[str, Any] | None:
        try:
            entry = await (await self.kv()).get(naming.fleet_key(request.department, request.name))
        except nats.js.errors.KeyNotFoundError:
            return None
        except (*TEMPORARY, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"sensing rules of {request.key}: {error_text(e)}") from e
        return json.loads(entry.value or b"{}")

    def wanted_rules(self, request: Request, devices: list[str]) -> dict[str, Any]:
        return {
            "uid": request.uid,
            "maxMessageBytes": int(request.limits.get("maxMessageBytes", 0)),
            "messagesPerSecond": int(request.limits.get("messagesPerSecond", 0)),
            "devices": devices,
        }

    async def _put_rules(self, request: Request, rules: dict[str, Any]) -> None:
        try:
            await (await self.kv()).put(
                naming.fleet_key(request.department, request.name), json.dumps(rules, sort_keys=True).encode()
            )
        except (*TEMPORARY, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"sensing rules of {request.key}: {error_text(e)}") from e

    # -- Driver ----------------------------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        dept, fleet = request.department, request.name
        devices = sorted(set(request.spec.get("devices") or []))
        most = request.limits.get("maxDevices")
        if most is not None and len(devices) > int(most):
            raise PermanentBackendError(
                "TooManyDevices",
                f"spec.devices lists {len(devices)} devices; plan {request.plan!r} allows at most {most} "
                "(spec.limits.maxDevices): remove devices or choose a plan that allows more",
            )
        before = await self.rules(request) or {}
        issued = set(before.get("devices") or []) if before.get("uid") == request.uid else set()
        removed = issued - set(devices)
        now = int(time.time())

        def account(claims: dict[str, Any]) -> None:
            revoked = dict(claims.get("revocations") or {})
            for device in removed:
                revoked[self.device_key(request, device).public] = now
            if revoked:
                claims["revocations"] = revoked

        storage = await self.account_storage(request)

        def account_and_limits(claims: dict[str, Any]) -> None:
            account(claims)
            most = self.settings.account_connections
            claims["limits"] = {
                **jwt.unlimited_account_limits(jetstream=True),
                "disk_storage": storage,
                "conn": most,
                "consumer": most,
            }

        # 1. Revoke first: a device removed from the list stops working even if a later step fails. The
        # account's store follows its fleets (account_storage); its connections and sessions are bounded.
        await self.accounts.modify(dept, account_and_limits)
        await self._check_room(request, storage, account_and_limits)
        revocations = ((await self.accounts.nats_claims(dept)) or {}).get("revocations") or {}
        # 2. The streams: what devices sent (for the relay) and the telemetry the relay accepted.
        admin = await self.connections.admin(dept)
        for config in (ingest_config(request), stream_config(request)):
            await streams.ensure(admin, config, self.settings.timeout, request.key, REFUSALS)
        # 3. The relay's rules (and what was issued, for the next removal).
        want = self.wanted_rules(request, devices)
        if before != want:
            await self._put_rules(request, want)
        credentials = {
            f"device-{device}": self.device_jwt(
                request, device, int(revocations.get(self.device_key(request, device).public, 0))
            )
            for device in devices
        }
        reader = self.reader_key(request)
        pub, sub = naming.reader_permissions(fleet)
        token = jwt.user_jwt(
            reader, self.keys.account(dept), f"{fleet}-reader", pub, sub, issued_at=request.created_at or 1
        )
        credentials["creds"] = jwt.creds(token, reader)
        return Result(
            endpoints=self.endpoints(request),
            credentials=credentials,
            backend={
                "account": self.keys.account(dept).public,
                "stream": naming.stream_name(fleet),
                "devices": str(len(devices)),
            },
        )

    async def _check_room(self, request: Request, storage: int, change: Any) -> None:
        """The gateway applies an account's larger store only when its own store (maxFileStore) has room for
        it; otherwise it keeps the old limits, or leaves JetStream off for a new account, and every stream
        call then fails as unavailable. Said as it is: BackendRefused naming the room and the two fixes."""
        admin = await self.connections.admin(request.department)
        if (await applied(admin, self.settings.timeout))[0] >= storage:
            return
        # The claims may already say so while the server kept older limits: push them once more.
        await self.accounts.modify(request.department, change, force=True)
        if (await applied(admin, self.settings.timeout))[0] >= storage:
            return
        rooms = await server_rooms(await self.connections.system(), self.settings.timeout)
        room = ""
        if rooms:
            file = rooms[StorageType.FILE]
            room = f"; it has {size(file.free)} of {size(file.size)} unreserved"
        asked = size(int(request.limits.get("maxBytes", 0)))
        raise PermanentBackendError(
            "BackendRefused",
            f"the MQTT gateway has no room for spec.limits.maxBytes={asked}: {request.department}'s fleets "
            f"would reserve {size(storage)} of its JetStream store (each fleet twice its maxBytes, for the "
            f"devices' and the relay's streams, and the MQTT sessions){room} — lower spec.limits.maxBytes, "
            "or raise cityhub:backends.sensing.maxFileStore",
        )

    async def account_storage(self, request: Request) -> int:
        """The department account's JetStream file store: what its fleets' streams reserve (this one's as
        asked), room for one message more in each (nats-server checks the account's limit before a full
        stream discards its oldest), and settings.mqtt_store for the gateway's MQTT sessions and retained
        messages. Without a limit, a device publishing retained messages (the gateway keeps the last one of
        every topic, unbounded by the plan) would fill the store every department's streams live in."""
        mine = {naming.stream_name(request.name), naming.ingest_stream(request.name)}
        reserved = 2 * (int(request.limits.get("maxBytes", 0)) + MESSAGE_ROOM)
        if await self.accounts.lookup(request.department) is not None:
            admin = await self.connections.admin(request.department)
            try:
                infos = await admin.jetstream(timeout=self.settings.timeout).streams_info()
            except nats.js.errors.ServiceUnavailableError as e:
                # No streams yet when JetStream is off for the account (the gateway had no room for its
                # first limits: _check_room); otherwise the gateway's JetStream is not answering: retry.
                system = await self.connections.system()
                on = await jetstream_accounts(system, self.settings.timeout)
                if on is None or self.keys.account(request.department).public in on:
                    raise TemporaryBackendError(
                        f"sensing streams of {request.department}: {error_text(e)}"
                    ) from e
                infos = []
            except (*TEMPORARY, nats.js.errors.APIError) as e:
                raise TemporaryBackendError(
                    f"sensing streams of {request.department}: {error_text(e)}"
                ) from e
            for info in infos:
                name = info.config.name or ""
                if name not in mine and not name.startswith("$MQTT_"):
                    reserved += max(0, info.config.max_bytes or 0) + MESSAGE_ROOM
        return reserved + self.settings.mqtt_store

    def endpoints(self, request: Request) -> dict[str, str]:
        fleet = request.name
        return {
            "mqttUrl": self.settings.mqtt_url,
            "natsUrl": self.settings.public_url,
            "topic": f"ingest/{fleet}/<device>/<anything>",
            "rejectedTopic": f"rejected/{fleet}/<device>",
            "stream": naming.stream_name(fleet),
            "subjects": naming.telemetry_wildcard(fleet),
        }

    async def observe(self, request: Request) -> Observation:
        drift: list[str] = []
        if await self.accounts.lookup(request.department) is None:
            return Observation(False, (f"account of {request.department} is missing",))
        admin = await self.connections.admin(request.department)
        for config in (ingest_config(request), stream_config(request)):
            stream_drift = await streams.drift(admin, config, self.settings.timeout, request.key)
            if stream_drift:
                drift.append(stream_drift)
        devices = sorted(set(request.spec.get("devices") or []))
        if await self.rules(request) != self.wanted_rules(request, devices):
            drift.append(f"the relay's rules of fleet {request.name} are missing or differ")
        return Observation(not drift, tuple(drift))

    async def delete(self, request: Request) -> None:
        rules = await self.rules(request) or {}
        issued = set(rules.get("devices") or []) if rules.get("uid") == request.uid else set()
        issued |= set(request.spec.get("devices") or [])
        now = int(time.time())
        issued.add(naming.PROBE_DEVICE)
        keys = [self.device_key(request, d).public for d in sorted(issued)]
        keys.append(self.reader_key(request).public)

        def account(claims: dict[str, Any]) -> None:
            revoked = dict(claims.get("revocations") or {})
            revoked.update({k: now for k in keys})
            claims["revocations"] = revoked

        if await self.accounts.modify(request.department, account, create=False):
            admin = await self.connections.admin(request.department)
            for stream in (naming.stream_name(request.name), naming.ingest_stream(request.name)):
                await streams.delete(admin, stream, self.settings.timeout, request.key)
        try:
            await (await self.kv()).delete(naming.fleet_key(request.department, request.name))
        except nats.js.errors.KeyNotFoundError:
            pass
        except (*TEMPORARY, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"sensing rules of {request.key}: {error_text(e)}") from e

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A device publish round trip: the operator's probe device publishes over MQTT, the department's
        reader credentials (from its Secret) receive what the relay passed on."""
        await round_trip(
            mqtt_url=self.settings.mqtt_url,
            device_jwt=self.device_jwt(request, naming.PROBE_DEVICE),
            nats_url=self.settings.url,
            reader_creds=secret["creds"],
            fleet=request.name,
            timeout=self.settings.timeout,
        )
