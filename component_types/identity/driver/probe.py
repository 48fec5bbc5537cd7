"""The identity probe: what a department's application does with its Secret, and nothing more.

A confidential client performs a client-credentials grant with `client_id` and `client_secret`; a public
client (no secret) fetches the discovery document and checks its issuer. Unreachable Keycloak or a 5xx is
TemporaryBackendError; a refused grant is BackendError naming the client, never its secret.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from cityhub_operator.driver import BackendError, TemporaryBackendError


class TokenProbe:
    """Owns one HTTP session for the probes (made on first use, closed with the driver)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def probe(self, endpoints: Mapping[str, str], issuer: str, client_secret: str) -> None:
        """A client-credentials grant with the Secret's client secret at `endpoints` (the operator's own,
        never the Secret's); a public client (no secret): the discovery document names `issuer`."""
        http = self._session()
        try:
            if client_secret:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": endpoints["client_id"],
                    "client_secret": client_secret,
                }
                async with http.post(endpoints["token_endpoint"], data=form) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status >= 500:
                        raise TemporaryBackendError(f"token endpoint answered HTTP {resp.status}")
                    if resp.status != 200 or "access_token" not in (body or {}):
                        raise BackendError(
                            f"client-credentials grant for {endpoints['client_id']} refused: "
                            f"HTTP {resp.status} "
                            f"{(body or {}).get('error', '')}"
                        )
                return
            async with http.get(endpoints["discovery_url"]) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or (body or {}).get("issuer") != issuer:
                    where = endpoints["discovery_url"]
                    raise BackendError(f"discovery document at {where}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TemporaryBackendError(
                f"identity probe: cannot reach Keycloak: {e or type(e).__name__}"
            ) from e

