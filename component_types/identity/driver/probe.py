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

    async def probe(self, secret: Mapping[str, str]) -> None:
        """A client-credentials grant with the Secret's credentials (public clients: discovery document)."""
        http = self._session()
        try:
            if secret.get("client_secret"):
                form = {
                    "grant_type": "client_credentials",
                    "client_id": secret["client_id"],
                    "client_secret": secret["client_secret"],
                }
                async with http.post(secret["token_endpoint"], data=form) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status >= 500:
                        raise TemporaryBackendError(f"token endpoint answered HTTP {resp.status}")
                    if resp.status != 200 or "access_token" not in (body or {}):
                        raise BackendError(
                            f"client-credentials grant for {secret['client_id']} refused: HTTP {resp.status} "
                            f"{(body or {}).get('error', '')}"
                        )
                return
            async with http.get(secret["discovery_url"]) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or (body or {}).get("issuer") != secret.get("issuer"):
                    raise BackendError(f"discovery document at {secret['discovery_url']}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TemporaryBackendError(
                f"identity probe: cannot reach Keycloak: {e or type(e).__name__}"
            ) from e
        except KeyError as e:
            raise BackendError(f"identity probe: the Secret lacks {e}") from e
