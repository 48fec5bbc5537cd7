"""Messaging (消息通道) on NATS JetStream, with NATS decentralized (JWT) auth.

How a MessagingChannel `<name>` in department (namespace) `<d>` maps onto NATS — every name is derived from
the request, so retries and restarts find the same objects:

    account    one per department, key derived from ("account", <d>); its JWT (signed by the operator key)
               enables JetStream and carries the department's exports, imports and revoked users
    stream     `<name>` in the department's account, subjects city.<d>.<name> and city.<d>.<name>.>
    user       key derived from ("user", <d>/<name>/<uid>); its JWT (signed by the account key) may publish
               and subscribe on city.<d>.> only, read shared.> (what others share with <d>) and use the
               JetStream consumer API, but not create, change or delete streams
    sharing    a private stream export `channel/<name>` of city.<d>.<name>.> in <d>'s account, and in each
               reader's account an import `<d>/<name>` with an activation token signed by <d>'s account,
               mapped to shared.<d>.<name>.>; a reader that is no longer granted loses its import and its
               activation is revoked on the export
    deletion   the user key is revoked in the account JWT (the server disconnects it and refuses it from
               then on), the export and the readers' imports are removed, the stream is deleted

Account JWTs reach nats-server at runtime through the system account ($SYS.REQ.CLAIMS.UPDATE), which the
`full` resolver stores in its directory: no shared files, no reloads. See docs/api.md for why.

Settings (CITYHUB_NATS_…) are read by `create_driver(env)`; `server.py` renders the nats-server
configuration that trusts the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client, RawCredentials
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from cityhub_operator.driver import (
    Observation,
    PermanentBackendError,
    Request,
    Result,
    TemporaryBackendError,
)
from cityhub_operator.driver_env import secret_setting
from component_types.messaging.driver import natsjwt
from component_types.messaging.driver.natsjwt import Key

log = logging.getLogger("component_types.messaging.driver")

SYSTEM_ACCOUNT = "$SYS"
OPERATOR_USER = "cityhub-operator"
READERS_PREFIX = "cityhub readers: "
# What a department's credentials may do with JetStream: read streams and manage consumers, nothing else.
JS_CONSUMER_API = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.>",
    "$JS.FC.>",
)
_TEMPORARY = (
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    OSError,
)
# JetStream refusals that no retry can fix (err_code → what to change).
_REFUSALS = {
    10047: "the NATS server has no room for limits.maxBytes: lower spec.limits.maxBytes",
    10058: "a stream of this name exists with settings that cannot change (storage): delete and recreate",
    10065: "the stream's subjects overlap another stream in the department",
    10052: "the stream's settings are invalid",
    10027: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
    10028: "the department's JetStream quota is exhausted: lower spec.limits.maxBytes",
}


def _error_text(e: BaseException) -> str:
    if isinstance(e, nats.js.errors.APIError):
        return f"{e.description or type(e).__name__} (code {e.code}, err_code {e.err_code})"
    return str(e) or type(e).__name__


@dataclass(frozen=True)
class NatsSettings:
    """The messaging driver's settings, from CITYHUB_NATS_* environment variables."""

    url: str
    """CITYHUB_NATS_URL: where the operator reaches nats-server, e.g. nats://127.0.0.1:4222 (comma-separated
    for a cluster)."""
    secret: bytes
    """CITYHUB_NATS_SECRET_FILE (or CITYHUB_NATS_SECRET): the master secret every nkey is derived from;
    the server's configuration must be rendered from the same secret (server.py)."""
    public_url: str
    """CITYHUB_NATS_PUBLIC_URL: the URL written into departments' Secrets; default CITYHUB_NATS_URL."""
    timeout: float = 5.0
    """CITYHUB_NATS_TIMEOUT: seconds to wait for one NATS request."""
    replicas: int = 1
    """CITYHUB_NATS_REPLICAS: JetStream replicas of each stream (1, or up to the cluster size)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NatsSettings:
        url = env.get("CITYHUB_NATS_URL", "").strip()
        if not url or not all(u.strip().startswith(("nats://", "tls://")) for u in url.split(",")):
            raise ValueError(
                f"Invalid CITYHUB_NATS_URL={url!r}: needs to be nats://host:port (comma-separated)"
            )
        secret = _read_secret(env)
        public_url = env.get("CITYHUB_NATS_PUBLIC_URL", "").strip() or url
        timeout = _number(env, "CITYHUB_NATS_TIMEOUT", 5.0, "a positive number of seconds", float)
        replicas = _number(env, "CITYHUB_NATS_REPLICAS", 1, "an integer from 1 to 5", int)
        if not 1 <= replicas <= 5:
            raise ValueError(f"Invalid CITYHUB_NATS_REPLICAS={replicas}: needs to be an integer from 1 to 5")
        return cls(url=url, secret=secret, public_url=public_url, timeout=timeout, replicas=replicas)


def _number(env: Mapping[str, str], name: str, default: Any, needs: str, kind: Callable[[str], Any]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ValueError(f"Invalid {name}={raw}: needs to be {needs}")
    return value


def _read_secret(env: Mapping[str, str]) -> bytes:
    needs = "random text (python -m component_types.messaging.driver.server new-secret)"
    return secret_setting(env, "CITYHUB_NATS_SECRET", min_length=32, needs=needs).encode()


class Keys:
    """Every nkey the driver uses, derived from the master secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.operator = natsjwt.derive_key(secret, "operator", "cityhub")
        self.system_account = natsjwt.derive_key(secret, "account", SYSTEM_ACCOUNT)
        self.system_user = natsjwt.derive_key(secret, "user", f"{SYSTEM_ACCOUNT}/{OPERATOR_USER}")
        self._cache: dict[tuple[str, str], Key] = {}

    def _derive(self, role: str, label: str) -> Key:
        key = self._cache.get((role, label))
        if key is None:
            key = self._cache[(role, label)] = natsjwt.derive_key(self._secret, role, label)
        return key

    def account(self, department: str) -> Key:
        return self._derive("account", department)

    def admin(self, department: str) -> Key:
        """The operator's own user in a department's account: it manages the streams."""
        return self._derive("user", f"{department}/{OPERATOR_USER}")

    def user(self, request: Request) -> Key:
        return natsjwt.derive_key(self._secret, "user", f"{request.namespace}/{request.name}/{request.uid}")

    def system_account_jwt(self) -> str:
        return natsjwt.account_jwt(
            self.system_account,
            self.operator,
            SYSTEM_ACCOUNT,
            {"limits": natsjwt.unlimited_account_limits(jetstream=False)},
        )

    def operator_jwt(self) -> str:
        return natsjwt.operator_jwt(self.operator, self.system_account.public)

    def system_creds(self) -> str:
        token = natsjwt.user_jwt(
            self.system_user,
            self.system_account,
            OPERATOR_USER,
            {"allow": [">"]},
            {"allow": [">"]},
            issued_at=1,
        )
        return natsjwt.creds(token, self.system_user)

    def admin_creds(self, department: str) -> str:
        user, account = self.admin(department), self.account(department)
        token = natsjwt.user_jwt(
            user, account, OPERATOR_USER, {"allow": [">"]}, {"allow": [">"]}, issued_at=1
        )
        return natsjwt.creds(token, user)


def channel_subjects(department: str, name: str) -> list[str]:
    return [f"city.{department}.{name}", f"city.{department}.{name}.>"]


def export_name(name: str) -> str:
    return f"channel/{name}"


def import_name(department: str, name: str) -> str:
    return f"{department}/{name}"


def shared_subject(department: str, name: str) -> str:
    return f"shared.{department}.{name}.>"


def user_permissions(department: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pub, sub) of a department's credentials: its own subjects, what is shared with it, consumer API."""
    own = f"city.{department}.>"
    pub = {"allow": [own, "_INBOX.>", *JS_CONSUMER_API]}
    sub = {"allow": [own, "shared.>", "_INBOX.>"]}
    return pub, sub


def readers_of(export: Mapping[str, Any] | None) -> set[str]:
    """The departments an export's description records as readers (what this driver granted last)."""
    text = (export or {}).get("description", "")
    if not text.startswith(READERS_PREFIX):
        return set()
    return {d for d in text.removeprefix(READERS_PREFIX).split(",") if d}


def _by_name(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {i.get("name", ""): i for i in items or []}


def _normalized_account(nats_claims: Mapping[str, Any]) -> dict[str, Any]:
    """An account's `nats` claims in canonical form: sorted lists, empty ones dropped, JetStream on."""
    out = {k: v for k, v in nats_claims.items() if k not in ("type", "version")}
    out["limits"] = natsjwt.unlimited_account_limits(jetstream=True)
    for key in ("exports", "imports"):
        items = sorted(out.get(key) or [], key=lambda i: i.get("name", ""))
        if items:
            out[key] = items
        else:
            out.pop(key, None)
    if not out.get("revocations"):
        out.pop("revocations", None)
    return out


class MessagingDriver:
    """The messaging backend: one NATS system connection plus one management connection per department."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.secret)
        self._system: Client | None = None
        self._admins: dict[str, Client] = {}
        self._connecting = asyncio.Lock()
        self._account_locks: dict[str, asyncio.Lock] = {}

    # -- connections -------------------------------------------------------------------------------

    async def _connect(self, creds: str, name: str) -> Client:
        async def quiet(e: Exception) -> None:
            log.debug("nats connection %s: %s", name, type(e).__name__)

        try:
            return await nats.connect(
                servers=[u.strip() for u in self.settings.url.split(",")],
                user_credentials=RawCredentials(creds),
                name=name,
                connect_timeout=self.settings.timeout,
                allow_reconnect=True,
                max_reconnect_attempts=3,  # then closed; the pool reconnects on next use
                reconnect_time_wait=0.5,
                error_cb=quiet,
            )
        except (TimeoutError, nats.errors.Error, OSError) as e:
            raise TemporaryBackendError(
                f"cannot connect to NATS at {self.settings.url}: {_error_text(e)}"
            ) from e

    async def _system_conn(self) -> Client:
        async with self._connecting:
            if self._system is None or self._system.is_closed:
                self._system = await self._connect(self.keys.system_creds(), "cityhub-operator-system")
            return self._system

    async def _admin_conn(self, department: str) -> Client:
        conn = self._admins.get(department)
        if conn is not None and not conn.is_closed:
            return conn
        async with self._connecting:
            conn = self._admins.get(department)
            if conn is None or conn.is_closed:
                conn = await self._connect(
                    self.keys.admin_creds(department), f"cityhub-operator-{department}"
                )
                self._admins[department] = conn
            return conn

    async def close(self) -> None:
        conns = [*self._admins.values(), *([self._system] if self._system else [])]
        self._admins.clear()
        self._system = None
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- accounts ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, department: str) -> AsyncIterator[None]:
        lock = self._account_locks.setdefault(department, asyncio.Lock())
        async with lock:
            yield

    async def _lookup(self, department: str) -> dict[str, Any] | None:
        """The department account's current claims as the server has them, or None if it has none."""
        conn = await self._system_conn()
        subject = f"$SYS.REQ.ACCOUNT.{self.keys.account(department).public}.CLAIMS.LOOKUP"
        try:
            msg = await conn.request(subject, b"", timeout=self.settings.timeout)
        except _TEMPORARY as e:
            raise TemporaryBackendError(f"NATS account lookup for {department}: {_error_text(e)}") from e
        if not msg.data:
            return None
        return natsjwt.decode(msg.data.decode())

    async def _push(self, department: str, nats_claims: dict[str, Any]) -> None:
        token = natsjwt.account_jwt(
            self.keys.account(department), self.keys.operator, department, nats_claims
        )
        conn = await self._system_conn()
        try:
            msg = await conn.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=self.settings.timeout)
        except _TEMPORARY as e:
            raise TemporaryBackendError(f"NATS account update for {department}: {_error_text(e)}") from e
        reply = json.loads(msg.data or b"{}")
        if "error" in reply:
            error = reply["error"]
            text = f"NATS refused the account of {department}: {error.get('description', error)}"
            if int(error.get("code", 500)) >= 500:
                raise TemporaryBackendError(text)
            raise PermanentBackendError("BackendRefused", text)

    async def _modify_account(
        self, department: str, change: Callable[[dict[str, Any]], None], *, create: bool = True
    ) -> bool:
        """Read-modify-write one department's account JWT under its lock; push only if it changes.

        Returns whether the account exists afterwards.
        """
        async with self._locked(department):
            current = await self._lookup(department)
            if current is None and not create:
                return False
            before = _normalized_account((current or {}).get("nats", {}))
            after = json.loads(json.dumps(before))
            change(after)
            after = _normalized_account(after)
            if current is None or after != before:
                await self._push(department, after)
            return True

    # -- the Driver interface ----------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        dept, name = request.department, request.name
        readers = self._readers(request)
        previous = readers_of(_by_name((await self._lookup_nats(dept)).get("exports")).get(export_name(name)))
        user = self.keys.user(request)
        now = int(time.time())

        # 1. Readers no longer granted lose their import first, so a crash cannot leave one behind unrecorded.
        for gone in sorted(previous - readers):
            await self._modify_account(gone, _without_import(import_name(dept, name)), create=False)
        # 2. The department's account: JetStream on, this channel's export (if shared), its user not revoked.
        account_key = self.keys.account(dept)

        def own_account(claims: dict[str, Any]) -> None:
            exports = _by_name(claims.get("exports"))
            old = exports.pop(export_name(name), None)
            if readers:
                revoked = dict((old or {}).get("revocations") or {})
                for gone in previous - readers:
                    revoked[self.keys.account(gone).public] = now
                for reader in readers:
                    revoked.pop(self.keys.account(reader).public, None)
                export = {
                    "name": export_name(name),
                    "subject": f"city.{dept}.{name}.>",
                    "type": "stream",
                    "token_req": True,
                    "description": READERS_PREFIX + ",".join(sorted(readers)),
                }
                if revoked:
                    export["revocations"] = revoked
                exports[export_name(name)] = export
            claims["exports"] = list(exports.values())

        await self._modify_account(dept, own_account)
        # 3. The stream.
        await self._ensure_stream(request)
        # 4. Each reader's account imports the channel with an activation signed by the department's account.
        for reader in sorted(readers):
            activation = natsjwt.encode(
                {
                    "sub": self.keys.account(reader).public,
                    "name": import_name(dept, name),
                    "nats": {
                        "subject": f"city.{dept}.{name}.>",
                        "kind": "stream",
                        "type": "activation",
                        "version": 2,
                    },
                },
                account_key,
                issued_at=request.created_at or 1,
            )
            entry = {
                "name": import_name(dept, name),
                "subject": f"city.{dept}.{name}.>",
                "account": account_key.public,
                "token": activation,
                "local_subject": shared_subject(dept, name),
                "type": "stream",
            }
            await self._modify_account(reader, _with_import(entry))
        # 5. The credentials: deterministic (issued at the request's creation), so the Secret stays identical.
        pub, sub = user_permissions(dept)
        token = natsjwt.user_jwt(user, account_key, request.key, pub, sub, issued_at=request.created_at or 1)
        return Result(
            endpoints={
                "url": self.settings.public_url,
                "stream": name,
                "subjects": f"city.{dept}.{name}.>",
                "subjectPrefix": f"city.{dept}.>",
                "sharedPrefix": "shared.>",
            },
            credentials={"user.creds": natsjwt.creds(token, user)},
            backend={"account": account_key.public, "stream": name, "user": user.public},
        )

    async def observe(self, request: Request) -> Observation:
        dept, name = request.department, request.name
        drift: list[str] = []
        claims = await self._lookup(dept)
        if claims is None:
            return Observation(in_sync=False, drift=(f"NATS account of department {dept} is missing",))
        nats_claims = claims.get("nats", {})
        readers = self._readers(request)
        export = _by_name(nats_claims.get("exports")).get(export_name(name))
        if readers_of(export) != readers:
            drift.append(
                f"export {export_name(name)} grants {sorted(readers_of(export))}, wants {sorted(readers)}"
            )
        if self.keys.user(request).public in (nats_claims.get("revocations") or {}):
            drift.append("the channel's user is revoked")
        for reader in sorted(readers):
            reader_claims = await self._lookup(reader)
            imports = _by_name((reader_claims or {}).get("nats", {}).get("imports"))
            if import_name(dept, name) not in imports:
                drift.append(f"department {reader} lacks import {import_name(dept, name)}")
        stream_drift = await self._stream_drift(request)
        if stream_drift:
            drift.append(stream_drift)
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def delete(self, request: Request) -> None:
        dept, name = request.department, request.name
        nats_claims = await self._lookup_nats(dept, missing=None)
        if nats_claims is None:
            return  # the department's account never existed: nothing of this request can exist
        exported = _by_name(nats_claims.get("exports")).get(export_name(name))
        readers = readers_of(exported) | self._readers(request, strict=False)
        for reader in sorted(readers):
            await self._modify_account(reader, _without_import(import_name(dept, name)), create=False)
        user = self.keys.user(request).public
        now = int(time.time())

        def own_account(claims: dict[str, Any]) -> None:
            claims["exports"] = [e for e in claims.get("exports") or [] if e.get("name") != export_name(name)]
            claims["revocations"] = {**(claims.get("revocations") or {}), user: now}

        await self._modify_account(dept, own_account, create=False)
        js = (await self._admin_conn(dept)).jetstream(timeout=self.settings.timeout)
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        except _TEMPORARY as e:
            raise TemporaryBackendError(f"NATS stream {dept}/{name}: delete failed: {_error_text(e)}") from e
        except nats.js.errors.APIError as e:
            raise TemporaryBackendError(f"NATS stream {dept}/{name}: delete failed: {_error_text(e)}") from e

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A publish/consume round trip as the department: connect with the Secret's user.creds, publish
        on a probe subject of its own (city.<d>._cityhub.probe.<name>: no stream stores it, so the
        department's data is untouched) and receive it back; then read the channel's stream info."""
        creds, url = secret.get("user.creds"), secret.get("url")
        if not creds or not url:
            raise PermanentBackendError("SecretIncomplete", "the Secret lacks url or user.creds")
        dept, name = request.department, request.name

        async def quiet(e: Exception) -> None:
            log.debug("probe connection %s: %s", request.key, type(e).__name__)

        try:
            conn = await nats.connect(
                servers=[u.strip() for u in url.split(",")],
                user_credentials=RawCredentials(creds),
                name="cityhub-probe",
                connect_timeout=self.settings.timeout,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=quiet,
            )
        except (*_TEMPORARY, nats.errors.Error) as e:
            raise TemporaryBackendError(f"cannot connect to NATS at {url}: {_error_text(e)}") from e
        try:
            subject = f"city.{dept}._cityhub.probe.{name}"
            sub = await conn.subscribe(subject, max_msgs=1)
            await conn.publish(subject, b"probe")
            msg = await sub.next_msg(timeout=self.settings.timeout)
            if msg.data != b"probe":
                raise TemporaryBackendError(f"probe round trip on {subject} returned other data")
            info = await conn.jetstream(timeout=self.settings.timeout).stream_info(name)
            if info.config.name != name:
                raise TemporaryBackendError(f"stream {name} answered as {info.config.name}")
        except nats.js.errors.NotFoundError as e:
            raise TemporaryBackendError(f"stream {name} is missing") from e
        except (*_TEMPORARY, nats.errors.Error, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"probe of {request.key}: {_error_text(e)}") from e
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- helpers -----------------------------------------------------------------------------------

    def _readers(self, request: Request, *, strict: bool = True) -> set[str]:
        readers = {s["department"] for s in request.spec.get("shareWith") or []}
        if not strict:
            return readers - {request.department}
        if request.department in readers:
            raise PermanentBackendError(
                "InvalidShare",
                f"spec.shareWith lists the channel's own department {request.department}: remove it "
                "(the department's credentials already read all of its channels)",
            )
        return readers

    async def _lookup_nats(self, department: str, missing: Any = ...) -> Any:
        claims = await self._lookup(department)
        if claims is None:
            return {} if missing is ... else missing
        return claims.get("nats", {})

    def _stream_config(self, request: Request) -> StreamConfig:
        limits = request.limits
        storage = StorageType.MEMORY if request.spec.get("storage") == "memory" else StorageType.FILE
        return StreamConfig(
            name=request.name,
            description=f"MessagingChannel {request.key}",
            subjects=channel_subjects(request.department, request.name),
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=float(limits["maxAge"]) if "maxAge" in limits else None,
            max_bytes=int(limits["maxBytes"]) if "maxBytes" in limits else -1,
            max_msgs=int(limits["maxMessages"]) if "maxMessages" in limits else -1,
            storage=storage,
            num_replicas=self.settings.replicas,
            metadata={"cityhub.io/request": request.key, "cityhub.io/uid": request.uid},
        )

    @staticmethod
    def _differences(have: StreamConfig, want: StreamConfig) -> list[str]:
        out = []
        for field in ("subjects", "max_bytes", "max_msgs", "storage", "num_replicas", "description"):
            if getattr(have, field) != getattr(want, field):
                out.append(field)
        if round(have.max_age or 0) != round(want.max_age or 0):
            out.append("max_age")
        if any((have.metadata or {}).get(k) != v for k, v in (want.metadata or {}).items()):
            out.append("metadata")
        return out

    async def _stream_drift(self, request: Request) -> str | None:
        js = (await self._admin_conn(request.department)).jetstream(timeout=self.settings.timeout)
        try:
            info = await js.stream_info(request.name)
        except nats.js.errors.NotFoundError:
            return f"stream {request.name} is missing"
        except (*_TEMPORARY, nats.js.errors.APIError) as e:
            raise TemporaryBackendError(f"NATS stream {request.key}: {_error_text(e)}") from e
        diff = self._differences(info.config, self._stream_config(request))
        return f"stream {request.name} differs in {', '.join(diff)}" if diff else None

    async def _ensure_stream(self, request: Request) -> None:
        want = self._stream_config(request)
        js = (await self._admin_conn(request.department)).jetstream(timeout=self.settings.timeout)
        try:
            try:
                info = await js.stream_info(request.name)
            except nats.js.errors.NotFoundError:
                await js.add_stream(want)
                return
            if self._differences(info.config, want):
                await js.update_stream(want)
        except _TEMPORARY as e:
            raise TemporaryBackendError(f"NATS stream {request.key}: {_error_text(e)}") from e
        except nats.js.errors.APIError as e:
            hint = _REFUSALS.get(e.err_code or 0)
            if hint is None and (e.code or 500) >= 500:
                raise TemporaryBackendError(f"NATS stream {request.key}: {_error_text(e)}") from e
            raise PermanentBackendError(
                "BackendRefused",
                f"NATS refused stream {request.name}: {e.description} — {hint or 'change the request'}",
            ) from e


def _with_import(entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        imports = _by_name(claims.get("imports"))
        imports[entry["name"]] = entry
        claims["imports"] = list(imports.values())

    return change


def _without_import(name: str) -> Callable[[dict[str, Any]], None]:
    def change(claims: dict[str, Any]) -> None:
        claims["imports"] = [i for i in claims.get("imports") or [] if i.get("name") != name]

    return change


def create_driver(env: Mapping[str, str]) -> MessagingDriver:
    """The driver factory the operator core calls (by name, from the messaging schema's x-cityhub.driver)."""
    return MessagingDriver(NatsSettings.from_env(env))
