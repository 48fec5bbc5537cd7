"""A small async client of Keycloak's admin REST API: only the calls the identity driver makes.

Authenticates as a service-account client of the master realm (client-credentials grant) and keeps the
admin token until shortly before it expires. Errors become the driver interface's errors: unreachable,
timed out, 5xx or refused credentials → TemporaryBackendError (retry later); other 4xx → AdminError with
the status, so the driver can decide (404 = missing, 409 = exists).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from cityhub_operator.driver import TemporaryBackendError

from component_types.identity.driver.slots import OldestFirst


class AdminError(Exception):
    """Keycloak answered a 4xx; `status` is the HTTP status, the message Keycloak's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def q(value: str) -> str:
    """A path segment, quoted (client ids and role names may hold ':' or '.')."""
    return quote(value, safe="")


class KeycloakAdmin:
    def __init__(
        self, url: str, client_id: str, client_secret: str, timeout: float, concurrency: int = 8
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._expires = 0.0
        self._token_lock = asyncio.Lock()
        # Calls beyond this wait here rather than in Keycloak: an overloaded server answers none of many
        # concurrent calls within the timeout, and every timed-out call is retried, which only adds load.
        # The calls of the operation that started first go first (see slots.py).
        self._slots = OldestFirst(concurrency)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _admin_token(self, *, refused: str | None = None) -> str:
        """The admin token, fetched when there is none, it is about to expire, or it is `refused` (a call got
        401 with it: calls refused together renew it once)."""
        async with self._token_lock:
            if self._token and self._token != refused and time.monotonic() < self._expires:
                return self._token
            url = f"{self.url}/realms/master/protocol/openid-connect/token"
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._secret,
            }
            try:
                async with self._http().post(url, data=form) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        # Wrong admin credentials are the operator's configuration, not the request's:
                        # retrying with backoff keeps requests waiting until an admin fixes them.
                        raise TemporaryBackendError(
                            f"Keycloak at {self.url} refused the operator's admin client {self.client_id!r} "
                            f"(HTTP {resp.status} {(body or {}).get('error', '')}): check "
                            "CITYHUB_IDENTITY_ADMIN_CLIENT_ID and CITYHUB_IDENTITY_ADMIN_SECRET_FILE"
                        )
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                raise TemporaryBackendError(f"cannot reach Keycloak at {self.url}: {_text(e)}") from e
            self._token = str(body["access_token"])
            # Renew a little early so a token never expires between check and use.
            self._expires = time.monotonic() + max(5.0, float(body.get("expires_in", 60)) - 10.0)
            return self._token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """One admin API call; returns the decoded JSON (or the Location header's last segment on 201).
        `timeout`: seconds for this call instead of CITYHUB_IDENTITY_TIMEOUT (a realm's creation)."""
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        refused: str | None = None
        for attempt in (0, 1):
            # The slot first, then the token: a call may wait long for its slot under load, and a token
            # taken before the wait expired in it (a storm of 401s and renewals, measured).
            async with self._slots.slot():
                token = await self._admin_token(refused=refused)
                try:
                    async with self._http().request(
                        method,
                        f"{self.url}/admin{path}",
                        json=body,
                        params=params,
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=limit,
                    ) as resp:
                        if resp.status == 401 and attempt == 0:
                            refused = token  # revoked, or the server restarted: renew once
                            continue
                        text = await resp.text()
                        if resp.status >= 500 or resp.status in (401, 429):
                            raise TemporaryBackendError(
                                f"Keycloak {method} {path}: HTTP {resp.status} {_error_of(text)}".rstrip()
                            )
                        if resp.status >= 400:
                            raise AdminError(resp.status, _error_of(text) or f"HTTP {resp.status}")
                        if resp.status == 201 and "Location" in resp.headers:
                            return resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
                        if not text:
                            return None
                        return await resp.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise TemporaryBackendError(
                        f"cannot reach Keycloak at {self.url} ({method} {path}): {_text(e)}"
                    ) from e
        raise TemporaryBackendError(f"Keycloak {method} {path}: admin token refused twice")

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET; None when Keycloak answers 404."""
        try:
            return await self.call("GET", path, params=params)
        except AdminError as e:
            if e.status == 404:
                return None
            raise


def _error_of(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(doc, dict):
        return str(doc.get("errorMessage") or doc.get("error_description") or doc.get("error") or "")[:300]
    return ""


def _text(e: BaseException) -> str:
    return str(e) or type(e).__name__
