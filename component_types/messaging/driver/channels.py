"""MessagingDriver: a MessagingChannel's account, stream, sharing and credentials (the Driver interface)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cityhub_operator.driver import Observation, PermanentBackendError, Request, Result

from cityhub_nats import jwt
from cityhub_nats.client.accounts import Accounts, by_name, with_import, without_import
from cityhub_nats.client.connections import Connections
from cityhub_nats.jwt import Key
from cityhub_nats.keys import Keys
from component_types.messaging import naming
from component_types.messaging.driver import streams
from component_types.messaging.driver.probe import round_trip
from component_types.messaging.driver.settings import NatsSettings


class MessagingDriver:
    """The messaging backend: one NATS system connection plus one management connection per department."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.secret)
        self.connections = Connections(settings.servers, self.keys, settings.timeout)
        self.accounts = Accounts(self.connections, self.keys, settings.timeout)

    def user(self, request: Request) -> Key:
        """The request's user key (its credentials)."""
        return self.keys.user(naming.user_label(request.namespace, request.name, request.uid))

    async def close(self) -> None:
        await self.connections.close()

    async def ensure(self, request: Request) -> Result:
        dept, name = request.department, request.name
        readers = self._readers(request)
        own_claims = await self.accounts.nats_claims(dept) or {}
        previous = naming.readers_of(by_name(own_claims.get("exports")).get(naming.export_name(name)))
        user = self.user(request)
        now = int(time.time())
        subject = naming.channel_wildcard(dept, name)

        # 1. Readers no longer granted lose their import first, so a crash cannot leave one behind unrecorded.
        for gone in sorted(previous - readers):
            await self.accounts.modify(gone, without_import(naming.import_name(dept, name)), create=False)
        # 2. The department's account: JetStream on, this channel's export (if shared), its user not revoked.
        account_key = self.keys.account(dept)

        def own_account(claims: dict[str, Any]) -> None:
            exports = by_name(claims.get("exports"))
            old = exports.pop(naming.export_name(name), None)
            if readers:
                revoked = dict((old or {}).get("revocations") or {})
                for gone in previous - readers:
                    revoked[self.keys.account(gone).public] = now
                for reader in readers:
                    revoked.pop(self.keys.account(reader).public, None)
                export = {
                    "name": naming.export_name(name),
                    "subject": subject,
                    "type": "stream",
                    "token_req": True,
                    "description": naming.readers_description(readers),
                }
                if revoked:
                    export["revocations"] = revoked
                exports[naming.export_name(name)] = export
            claims["exports"] = list(exports.values())

        await self.accounts.modify(dept, own_account)
        # 3. The stream.
        admin = await self.connections.admin(dept)
        await streams.ensure(admin, request, self.settings.replicas, self.settings.timeout)
        # 4. Each reader's account imports the channel with an activation signed by the department's account.
        for reader in sorted(readers):
            activation = jwt.activation_jwt(
                account_key,
                self.keys.account(reader).public,
                subject,
                naming.import_name(dept, name),
                issued_at=request.created_at or 1,
            )
            entry = {
                "name": naming.import_name(dept, name),
                "subject": subject,
                "account": account_key.public,
                "token": activation,
                "local_subject": naming.shared_subject(dept, name),
                "type": "stream",
            }
            await self.accounts.modify(reader, with_import(entry))
        # 5. The credentials: deterministic (issued at the request's creation), so the Secret stays identical.
        pub, sub = naming.user_permissions(dept)
        token = jwt.user_jwt(user, account_key, request.key, pub, sub, issued_at=request.created_at or 1)
        return Result(
            endpoints={
                "url": self.settings.public_url,
                "stream": name,
                "subjects": subject,
                "subjectPrefix": naming.own_prefix(dept),
                "sharedPrefix": naming.SHARED_PREFIX,
            },
            credentials={"user.creds": jwt.creds(token, user)},
            backend={"account": account_key.public, "stream": name, "user": user.public},
        )

    async def observe(self, request: Request) -> Observation:
        dept, name = request.department, request.name
        nats_claims = await self.accounts.nats_claims(dept)
        if nats_claims is None:
            return Observation(in_sync=False, drift=(f"NATS account of department {dept} is missing",))
        drift: list[str] = []
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
            if naming.import_name(dept, name) not in imports:
                drift.append(f"department {reader} lacks import {naming.import_name(dept, name)}")
        admin = await self.connections.admin(dept)
        stream_drift = await streams.drift(admin, request, self.settings.replicas, self.settings.timeout)
        if stream_drift:
            drift.append(stream_drift)
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def delete(self, request: Request) -> None:
        dept, name = request.department, request.name
        nats_claims = await self.accounts.nats_claims(dept)
        if nats_claims is None:
            return  # the department's account never existed: nothing of this request can exist
        exported = by_name(nats_claims.get("exports")).get(naming.export_name(name))
        readers = naming.readers_of(exported) | self._readers(request, strict=False)
        for reader in sorted(readers):
            await self.accounts.modify(reader, without_import(naming.import_name(dept, name)), create=False)
        user = self.user(request).public
        now = int(time.time())

        def own_account(claims: dict[str, Any]) -> None:
            claims["exports"] = [
                e for e in claims.get("exports") or [] if e.get("name") != naming.export_name(name)
            ]
            # Revoked in the account JWT: the server disconnects the user and refuses it from then on.
            claims["revocations"] = {**(claims.get("revocations") or {}), user: now}

        await self.accounts.modify(dept, own_account, create=False)
        await streams.delete(await self.connections.admin(dept), request, self.settings.timeout)

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """A publish/consume round trip with the department's own credentials (probe.round_trip)."""
        await round_trip(request, secret, self.settings.timeout)

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
