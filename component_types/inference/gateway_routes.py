"""The gateway's routes as its pods see them: the routes ConfigMap, watched through the API server.

Why not only the ConfigMap volume: the kubelet rewrites a mounted ConfigMap at its next sync of the pod, up to
a minute or more after the operator's change (its sync period plus jitter, on any cluster). A new endpoint
would answer 404 for that long after the operator wrote its route, and — worse — a deleted endpoint's key
would keep working as long. Watching the one ConfigMap makes both take effect in about a second.

The volume stays the fallback: until the API server has answered once (or when the gateway's account may not
read the ConfigMap, e.g. a cluster whose administrators did not grant it), routes come from the mounted files,
as before. Once the watch has answered, its view wins; it is kept through API server outages (the last
routes known) and re-listed on reconnection.

The account needs exactly `get`, `list`, `watch` on that one ConfigMap (backend.py GATEWAY_RULES): a
list/watch with `fieldSelector=metadata.name=<name>` is authorized against the rule's resourceNames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from component_types.inference.routes import Route, RouteFiles, parse_routes

log = logging.getLogger("component_types.inference.gateway_routes")
ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WATCH_SECONDS = 290
"""A watch ends on the server's side after this long and is re-listed: the server's own limit is 30 to 60 min,
a shorter one bounds how long a silently dropped connection goes unnoticed."""
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class ApiServer:
    """Where the API server is and how to authenticate to it (the pod's own ServiceAccount by default)."""

    url: str
    token_file: Path
    ca_file: Path | None

    @classmethod
    def in_cluster(cls) -> ApiServer | None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        token = ACCOUNT_DIR / "token"
        if not host or not port or not token.is_file():
            return None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token, ACCOUNT_DIR / "ca.crt")

    def headers(self) -> dict[str, str]:
        # Read for every connection: projected tokens are rotated by the kubelet.
        token = self.token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https://"):
            return False
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


def _refused(status: int, text: str) -> aiohttp.ClientError:
    return aiohttp.ClientError(f"API server answered {status}: {text[:200]}")


class ConfigMapRoutes:
    """A route source (version(), all(), like RouteFiles) fed by a watch of ConfigMap `namespace/name`, the
    mounted `files` until the watch has answered."""

    def __init__(self, files: RouteFiles, api: ApiServer, namespace: str, name: str) -> None:
        self.files, self.api = files, api
        self.namespace, self.name = namespace, name
        self._routes: dict[str, Route] | None = None
        self._version = ""
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def parse_target(cls, text: str) -> tuple[str, str]:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"{text!r}: needs NAMESPACE/NAME, e.g. cityhub-system/inference-routes")
        return namespace, name

    def version(self) -> object:
        return ("files", self.files.version()) if self._routes is None else ("api", self._version)

    def all(self) -> dict[str, Route]:
        return self.files.all() if self._routes is None else dict(self._routes)

    @property
    def watching(self) -> bool:
        return self._routes is not None

    def _apply(self, obj: dict[str, Any] | None) -> str:
        data = (obj or {}).get("data") or {}
        self._routes = parse_routes({str(k): str(v) for k, v in data.items()})
        meta = (obj or {}).get("metadata") or {}
        version = str(meta.get("resourceVersion", ""))
        self._version = version or f"{self._version}+"
        return version

    async def start(self, _: Any = None) -> None:
        self._task = asyncio.create_task(self.run(), name="routes-watch")

    async def stop(self, _: Any = None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        base = f"{self.api.url}/api/v1/namespaces/{quote(self.namespace, safe='')}/configmaps"
        failures, announced = 0, False
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=WATCH_SECONDS + 30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    version = await self._list(session, base)
                    if failures or not announced:
                        where = f"{self.namespace}/{self.name}"
                        log.info("routes: watching ConfigMap %s (%d routes)", where, len(self._routes or {}))
                        announced = True
                    failures = 0
                    await self._watch(session, base, version)
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                    delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                    # Said once per outage, not once per retry.
                    if failures == 0:
                        source = "the last routes it read" if self.watching else "the mounted route files"
                        where = f"{self.namespace}/{self.name}"
                        log.warning("routes watch of %s: %s; serving %s, retrying", where, e, source)
                    failures += 1
                    await asyncio.sleep(delay)

    async def _list(self, session: aiohttp.ClientSession, base: str) -> str:
        url = f"{base}/{quote(self.name, safe='')}"
        async with session.get(url, headers=self.api.headers(), ssl=self.api.ssl()) as resp:
            if resp.status == 404:
                self._apply(None)  # no ConfigMap: no routes
                return ""
            if resp.status != 200:
                raise _refused(resp.status, await resp.text())
            return self._apply(await resp.json())

    async def _watch(self, session: aiohttp.ClientSession, base: str, version: str) -> None:
        params = {
            "watch": "1",
            "fieldSelector": f"metadata.name={self.name}",
            "timeoutSeconds": str(WATCH_SECONDS),
            **({"resourceVersion": version} if version else {}),
        }
        async with session.get(base, params=params, headers=self.api.headers(), ssl=self.api.ssl()) as resp:
            if resp.status != 200:
                raise _refused(resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                if kind in ("ADDED", "MODIFIED"):
                    self._apply(event.get("object"))
                elif kind == "DELETED":
                    self._apply(None)
                elif kind == "ERROR":
                    return  # e.g. 410 Gone: the version is too old; list again
