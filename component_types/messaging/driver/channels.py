"""MessagingDriver: a MessagingChannel's account, stream, sharing and credentials (the Driver interface)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from cityhub_operator.driver import Observation, PermanentBackendError, Request, Result
from nats.aio.client import Client

from cityhub_nats import jwt
from cityhub_nats.client.accounts import Accounts, Change, by_name, without_import
from cityhub_nats.client.connections import Connections
from cityhub_nats.jwt import Key
from cityhub_nats.keys import Keys
from component_types.messaging import naming
from component_types.messaging.driver import edges, reservations, shares, streams
from component_types.messaging.driver.probe import round_trip
from component_types.messaging.driver.reservations import FLOOR, Reserved
from component_types.messaging.driver.revocations import chain, revoke, tidy, without_export
from component_types.messaging.driver.settings import NatsSettings


class MessagingDriver:
    """The messaging backend: one NATS system connection plus one management connection per department.

    With settings.edge, it serves the departments of that edge cluster (driver/edges.py): their channels'
    streams live on the edge and the hub's streams source them; accounts and shares stay on the hub."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.lifetime = settings.lifetime
        self.keys = Keys(settings.secret)
        self.edge = settings.edge
        self.leaf = settings.leaf_nodes
        self.connections = Connections(settings.servers, self.keys, settings.timeout)
        self.accounts = Accounts(self.connections, self.keys, settings.timeout, self.limits.account(FLOOR, 0))
        self._reserving: dict[str, asyncio.Lock] = {}
        self._on_edge: dict[str, tuple[str, str]] = {}
        """Request key → (department, channel) of this edge's channels: what uplinks() judges by."""
        self.edge_accounts: Accounts | None = None
        """The departments' accounts as the edge has them (its system account, directly): revocations."""
        if self.edge is not None:
            edge_name = "cityhub-operator-edge"
            on_edge = Connections(self.edge.servers, self.keys, settings.timeout, name=edge_name)
            self.edge_accounts = Accounts(on_edge, self.keys, settings.timeout)

    def user(self, request: Request) -> Key:
        """The request's user key (its credentials)."""
        return self.keys.user(naming.user_label(request.namespace, request.name, request.uid))

    def window(self, request: Request, now: int) -> tuple[int, int]:
        """(issued_at, expires_at) of the request's credentials and activations in force at `now`."""
        return self.lifetime.window(request.created_at or 1, now)

    async def close(self) -> None:
        await self.connections.close()
        if self.edge_accounts is not None:
            await self.edge_accounts.connections.close()

    async def ensure(self, request: Request) -> Result:
        dept, name = request.department, request.name
        readers = self._readers(request)
        streams.check(request)
        now = int(time.time())
        issued, expires = window = self.window(request, now)
        own_claims = await self.accounts.nats_claims(dept) or {}
        previous = naming.readers_of(by_name(own_claims.get("exports")).get(naming.export_name(name)))
        entries = {r: shares.import_entry(self.keys, dept, name, r, window) for r in readers}
        # 0. Every reader has room for the share, or nothing changes (TooManyShares names the reader).
        for reader in sorted(readers):
            held = (await self.accounts.nats_claims(reader) or {}).get("imports")
            refused = shares.refusal(self.limits, reader, held, entries[reader], dept, now)
            if refused is not None:
                raise refused
        # 1. Readers no longer granted lose their import first, so a crash cannot leave one behind unrecorded.
        for gone in sorted(previous - readers):
            change = chain(without_import(naming.import_name(dept, name)), self._tidy(now))
            await self.accounts.modify(gone, change, create=False)
        # 2. The department's account: its limits, this channel's export (if shared), its user not revoked.
        user = self.user(request)

        def not_revoked(claims: dict[str, Any]) -> None:
            claims["revocations"] = {
                k: t for k, t in (claims.get("revocations") or {}).items() if k != user.public
            }

        export = shares.export_change(self.keys, dept, name, readers, previous, now)
        await self.accounts.modify(dept, chain(export, not_revoked, self._tidy(now, own=True)))
        # 3. The stream (recording when the credentials below were issued), within the department's quota.
        await self._stream(request, issued)
        # 4. Each reader's account imports the channel with an activation signed by the department's account.
        for reader in sorted(readers):
            grant = shares.granting(self.limits, reader, entries[reader], dept)
            await self.accounts.modify(reader, chain(grant, self._tidy(now)))
        # 5. The credentials: the same within a renewal period (byte-identical Secret), expiring after it.
        pub, sub = naming.user_permissions(dept)
        token = jwt.user_jwt(
            user,
            self.keys.account(dept),
            request.key,
            pub,
            sub,
            issued_at=issued,
            expires_at=expires,
            payload=self.limits.payload,
            subs=self.limits.subscriptions,
        )
        if self.edge is not None:
            self._on_edge[request.key] = (dept, name)
        return Result(
            endpoints={
                "url": self.edge.url if self.edge else self.settings.public_url,
                "stream": name,
                "subjects": naming.channel_wildcard(dept, name),
                "subjectPrefix": naming.own_prefix(dept),
                "sharedPrefix": naming.SHARED_PREFIX,
            },
            credentials={"user.creds": jwt.creds(token, user)},
            backend={"account": self.keys.account(dept).public, "stream": name, "user": user.public},
        )

    async def observe(self, request: Request) -> Observation:
        dept, name = request.department, request.name
        nats_claims = await self.accounts.nats_claims(dept)
        if nats_claims is None:
            return Observation(in_sync=False, drift=(f"NATS account of department {dept} is missing",))
        drift: list[str] = []
        now = int(time.time())
        window = self.window(request, now)
        admin = await self.connections.admin(dept)
        reserved, _ = await reservations.streams_reserved(admin, self.settings.timeout)
        if nats_claims.get("limits") != reserved.limits(self.limits, self.leaf):
            drift.append(
                f"the limits of department {dept}'s NATS account differ from its settings and streams"
            )
        readers = self._readers(request)
        export = by_name(nats_claims.get("exports")).get(naming.export_name(name))
        granted = naming.readers_of(export)
        if granted != readers:
            drift.append(
                f"export {naming.export_name(name)} grants {sorted(granted)}, wants {sorted(readers)}"
            )
        if self.user(request).public in (nats_claims.get("revocations") or {}):
            drift.append("the channel's user is revoked")
        for reader in sorted(readers):
            imports = by_name((await self.accounts.nats_claims(reader) or {}).get("imports"))
            imported = naming.import_name(dept, name)
            held = imports.get(imported)
            if held is None:
                drift.append(f"department {reader} lacks import {imported}")
            elif held != shares.import_entry(self.keys, dept, name, reader, window):
                drift.append(f"department {reader}'s import {imported} is due for renewal")
        replicas, timeout = self.settings.replicas, self.settings.timeout
        if self.edge is None:
            drift += await streams.drift(admin, request, replicas, timeout, window[0])
        else:
            self._on_edge[request.key] = (dept, name)
            edge, silence = self.edge.name, self.edge.silence
            drift += await edges.drift(admin, request, edge, replicas, timeout, window[0], silence)
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def delete(self, request: Request) -> None:
        """Withdraw the shares, revoke the user and delete the stream with its messages (on an edge: the
        hub's stream, then the edge's)."""
        if not await self._withdraw(request):
            return
        dept, timeout = request.department, self.settings.timeout
        async with self._reserving.setdefault(dept, asyncio.Lock()):
            admin = await self.connections.admin(dept)
            await streams.delete(admin, request, timeout)
            others, _ = await reservations.streams_reserved(admin, timeout, exclude=request.name)
            system = await self.connections.system()
            await self._reserve(admin, system, dept, others)
        if self.edge is not None:
            await edges.delete_on_edge(admin, request, self.edge.name, timeout)
            self._on_edge.pop(request.key, None)

    async def uplinks(self) -> dict[str, bool]:
        """The edge's uplink, judged by when the hub last heard from the edge through its channels' sourcing
        (driver.UplinkReporter); nothing without an edge, or before any of its channels exists."""
        if self.edge is None or not self._on_edge:
            return {}
        up = await edges.uplink_up(
            self.connections.admin, list(self._on_edge.values()), self.edge.silence, self.settings.timeout
        )
        return {} if up is None else {self.edge.name: up}

    async def orphan(self, request: Request) -> None:
        """deletionPolicy Orphan: the stream and its messages stay (the department's other credentials still
        read them), but nothing the request granted outlives it: its user is revoked and its shares are
        withdrawn. (Called by the operator core for Orphan deletions.)"""
        await self._withdraw(request)

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A publish/consume round trip with the Secret's credentials, on the operator's own server, or on
        an edge the edge's (CITYHUB_NATS_EDGE_URL) (probe.round_trip): the Secret's url is never dialled."""
        user = self.user(request).public
        servers = self.edge.servers if self.edge else self.settings.servers
        await round_trip(request, secret, servers, user, self.settings.timeout)

    async def _withdraw(self, request: Request) -> bool:
        """Remove the readers' imports and the export, and revoke the user; False when the department has no
        account (nothing of the request can exist)."""
        dept, name = request.department, request.name
        nats_claims = await self.accounts.nats_claims(dept)
        if nats_claims is None:
            return False
        now = int(time.time())
        exported = by_name(nats_claims.get("exports")).get(naming.export_name(name))
        readers = naming.readers_of(exported) | self._readers(request, strict=False)
        for reader in sorted(readers):
            change = chain(without_import(naming.import_name(dept, name)), self._tidy(now))
            await self.accounts.modify(reader, change, create=False)
        # Revoked in the account JWT: the server disconnects the user and refuses it from then on.
        own = chain(
            without_export(naming.export_name(name)),
            revoke(self.user(request).public, request.created_at, now, self.lifetime),
            self._tidy(now, own=True),
        )
        await self.accounts.modify(dept, own, create=False)
        if self.edge is not None and self.edge_accounts is not None:
            user = self.user(request).public
            at = int(((await self.accounts.nats_claims(dept)) or {}).get("revocations", {}).get(user, now))
            await edges.revoke_on_edge(self.edge_accounts, dept, user, at, self.edge.name, self.lifetime, now)
        return True

    async def _stream(self, request: Request, issued: int) -> None:
        """Create or update the stream, the account's JetStream limits following (reservations.py): under
        the department's lock, so two of its channels never reserve the same room."""
        dept, timeout = request.department, self.settings.timeout
        async with self._reserving.setdefault(dept, asyncio.Lock()):
            admin = await self.connections.admin(dept)
            system = await self.connections.system()
            others, current = await reservations.streams_reserved(admin, timeout, exclude=request.name)
            reservations.check_quota(request, self.limits, others, current)
            after = others.plus(streams.storage_of(request), int(request.limits["maxBytes"]))
            existing = others.and_(current)
            during = after.most(existing)  # while the stream changes: room for it as it is and as it will be

            async def reserve(wanted: Reserved, for_request: Request | None = None) -> None:
                await self._reserve(admin, system, dept, wanted, for_request)

            replicas = self.settings.replicas
            try:
                if self.edge is not None:  # first: while the edge is unreachable, nothing changes on the hub
                    await edges.ensure_on_edge(admin, request, self.edge.name, issued, timeout)
                await reserve(during, request)
                if self.edge is None:
                    await streams.ensure(admin, system, request, replicas, timeout, issued, self.limits)
                else:
                    await edges.ensure_on_hub(admin, request, self.edge.name, replicas, issued, timeout)
            except PermanentBackendError:
                await reserve(existing)  # back to what the department's streams hold
                raise
            if after != during:
                await reserve(after)

    async def _reserve(
        self, admin: Client, system: Client, dept: str, wanted: Reserved, request: Request | None = None
    ) -> None:
        """The department's JetStream limits `wanted` (reservations.reserve), its leaf limit ours."""
        await reservations.reserve(
            self.accounts,
            admin,
            system,
            dept,
            self.limits,
            wanted,
            self.settings.timeout,
            request=request,
            leaf=self.leaf,
        )

    def _tidy(self, now: int, *, own: bool = False) -> Change:
        """Every change to an account: the limits from the settings, revocations pruned, expired imports
        dropped. The leaf limit is set on the served department's `own` account only (another's is another
        cluster's operator's: reservations.py)."""
        static = reservations.static(self.limits, self.leaf if own else None)

        def change(claims: dict[str, Any]) -> None:
            static(claims)
            tidy(claims, now, self.lifetime)

        return change

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
