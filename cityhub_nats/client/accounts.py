"""Department accounts: their JWTs are read from nats-server, changed and pushed back through the system
account ($SYS.REQ.ACCOUNT.<id>.CLAIMS.LOOKUP, $SYS.REQ.CLAIMS.UPDATE). The `full` resolver stores them in its
directory: no shared files, no reloads.

Every change is a read-modify-write under the department's lock, pushed only when the canonical claims
differ, so a retry or a second operator run pushes nothing. An account keeps its limits until a change sets
others (`claims["limits"]`); a new one gets the Accounts' default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from cityhub_operator.driver import PermanentBackendError, TemporaryBackendError

from cityhub_nats import jwt
from cityhub_nats.client.connections import Connections
from cityhub_nats.client.errors import TEMPORARY, error_text
from cityhub_nats.keys import Keys

Change = Callable[[dict[str, Any]], None]
"""Changes an account's `nats` claims in place."""


def by_name(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {i.get("name", ""): i for i in items or []}


def normalized(nats_claims: dict[str, Any], limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """An account's `nats` claims in canonical form: sorted lists, empty ones dropped, limits present (the
    claims' own, else `limits`, else JetStream on and nothing limited)."""
    out = {k: v for k, v in nats_claims.items() if k not in ("type", "version")}
    default = limits if limits is not None else jwt.unlimited_account_limits(jetstream=True)
    out["limits"] = dict(out.get("limits") or default)
    for key in ("exports", "imports"):
        items = sorted(out.get(key) or [], key=lambda i: i.get("name", ""))
        if items:
            out[key] = items
        else:
            out.pop(key, None)
    if not out.get("revocations"):
        out.pop("revocations", None)
    return out


def with_import(entry: dict[str, Any]) -> Change:
    def change(claims: dict[str, Any]) -> None:
        imports = by_name(claims.get("imports"))
        imports[entry["name"]] = entry
        claims["imports"] = list(imports.values())

    return change


def without_import(name: str) -> Change:
    def change(claims: dict[str, Any]) -> None:
        claims["imports"] = [i for i in claims.get("imports") or [] if i.get("name") != name]

    return change


class Accounts:
    def __init__(
        self, connections: Connections, keys: Keys, timeout: float, limits: dict[str, Any] | None = None
    ) -> None:
        """`limits`: a new account's limits (default: JetStream on, nothing limited)."""
        self.connections = connections
        self.keys = keys
        self.timeout = timeout
        self.limits = limits
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _locked(self, department: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(department, asyncio.Lock())
        async with lock:
            yield

    async def lookup(self, department: str) -> dict[str, Any] | None:
        """The department account's current claims as the server has them, or None if it has none."""
        conn = await self.connections.system()
        subject = f"$SYS.REQ.ACCOUNT.{self.keys.account(department).public}.CLAIMS.LOOKUP"
        try:
            msg = await conn.request(subject, b"", timeout=self.timeout)
        except TEMPORARY as e:
            raise TemporaryBackendError(f"NATS account lookup for {department}: {error_text(e)}") from e
        if not msg.data:
            return None
        return jwt.decode(msg.data.decode())

    async def nats_claims(self, department: str) -> dict[str, Any] | None:
        """The account's `nats` claims, or None if it has no account."""
        claims = await self.lookup(department)
        return None if claims is None else claims.get("nats", {})

    async def push(self, department: str, nats_claims: dict[str, Any]) -> None:
        token = jwt.account_jwt(self.keys.account(department), self.keys.operator, department, nats_claims)
        conn = await self.connections.system()
        try:
            msg = await conn.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=self.timeout)
        except TEMPORARY as e:
            raise TemporaryBackendError(f"NATS account update for {department}: {error_text(e)}") from e
        reply = json.loads(msg.data or b"{}")
        if "error" in reply:
            error = reply["error"]
            text = f"NATS refused the account of {department}: {error.get('description', error)}"
            if int(error.get("code", 500)) >= 500:
                raise TemporaryBackendError(text)
            raise PermanentBackendError("BackendRefused", text)

    async def modify(
        self, department: str, change: Change, *, create: bool = True, force: bool = False
    ) -> bool:
        """Read-modify-write one department's account JWT under its lock; push only if it changes (or when
        `force`: the server applies the claims again, e.g. limits it could not apply before). `change` may
        raise (a refusal): nothing is pushed.

        Returns whether the account exists afterwards.
        """
        async with self._locked(department):
            current = await self.lookup(department)
            if current is None and not create:
                return False
            before = normalized((current or {}).get("nats", {}), self.limits)
            after = json.loads(json.dumps(before))
            change(after)
            after = normalized(after, self.limits)
            if current is None or force or after != before:
                await self.push(department, after)
            return True
