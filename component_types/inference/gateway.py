"""The inference gateway: authenticates departments, enforces their rate limits, proxies KServe V2 calls.

    python -m component_types.inference.gateway --listen HOST:PORT --routes DIR [--upstream URL]

A runtime, not driver code: the stack runs it in the hub's system namespace (backend.py, pods behind the
front door `inference`, port 8090), the embedded default as a local process (local.py, a free port).

For /v2/models/{endpoint}[/versions/{v}]/{infer,ready} and /v2/models/{endpoint} it
  1. finds the route of {endpoint} (<department>.<name>; routes.py) — unknown: 404,
  2. checks the caller's key (Authorization: Bearer <apiKey>, or X-Api-Key) against the route's hash —
     none: 401, another endpoint's or department's: 403,
  3. admits at most requestsPerMinute calls in any 60 s per endpoint — more: 429 with Retry-After,
  4. forwards the call to the route's server and model and returns its answer unchanged.
/v2/health/live and /v2/health/ready need no key (ready: the --upstream server, if given, is ready).
Route files are re-read when their directory changes, so new endpoints work without a restart.
"""

from __future__ import annotations

import argparse
import collections
import hmac
import json
import logging
import math
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from component_types.inference.routes import Route, RouteFiles, key_hash

log = logging.getLogger("component_types.inference.gateway")
WINDOW = 60.0
HOP_HEADERS = {"content-type", "content-length"}


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class RateLimiter:
    """At most `limit` admissions in any WINDOW seconds per key (a sliding log: exact, O(limit) memory)."""

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[float]] = {}

    def admit(self, key: str, limit: int, now: float | None = None) -> float:
        """0 when admitted, else the seconds until a call would be."""
        now = time.monotonic() if now is None else now
        calls = self._calls.setdefault(key, collections.deque())
        while calls and calls[0] <= now - WINDOW:
            calls.popleft()
        if len(calls) >= limit:
            return max(0.001, calls[0] + WINDOW - now)
        calls.append(now)
        return 0.0

    def forget(self, keep: set[str]) -> None:
        for key in set(self._calls) - keep:
            del self._calls[key]


class RouteTable:
    def __init__(self, files: RouteFiles) -> None:
        self.files = files
        self._version = -2.0
        self._routes: dict[str, Route] = {}

    def get(self, endpoint: str) -> Route | None:
        version = self.files.version()
        if version != self._version:
            self._routes, self._version = self.files.all(), version
        return self._routes.get(endpoint)


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("X-Api-Key", "").strip() or None


class Gateway:
    def __init__(self, routes: RouteFiles, upstream: str | None = None, timeout: float = 30.0) -> None:
        self.routes = RouteTable(routes)
        self.upstream = upstream.rstrip("/") if upstream else None
        self.limiter = RateLimiter()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
            )
        return self._session

    async def close(self, _: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/v2/health/live", self.live)
        app.router.add_get("/v2/health/ready", self.ready)
        app.router.add_route("*", "/v2/models/{endpoint}", self.model)
        app.router.add_route("*", "/v2/models/{endpoint}/{rest:.*}", self.model)
        app.on_cleanup.append(self.close)
        return app

    async def live(self, _: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, _: web.Request) -> web.Response:
        if self.upstream is None:
            return web.json_response({"ready": True})
        try:
            async with (await self.session()).get(f"{self.upstream}/v2/health/ready") as resp:
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def model(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        rest = request.match_info.get("rest", "")
        route = self.routes.get(endpoint)
        if route is None:
            return _error(404, f"no inference endpoint {endpoint!r}; endpoints are named <department>.<name>")
        key = presented_key(request)
        if key is None:
            return _error(
                401,
                "missing credential: send 'Authorization: Bearer <apiKey>' with the apiKey from the "
                "endpoint's Secret",
                **{"WWW-Authenticate": 'Bearer realm="cityhub-inference"'},
            )
        if not hmac.compare_digest(key_hash(key), route.key_sha256):
            return _error(403, f"this key is not allowed to call {endpoint}; use the key of its Secret")
        wait = self.limiter.admit(route.endpoint + "/" + route.uid, route.requests_per_minute)
        if wait:
            return _error(
                429,
                f"rate limit of {endpoint}: {route.requests_per_minute} calls a minute (the plan's "
                "requestsPerMinute); retry later or choose a larger plan",
                **{"Retry-After": str(math.ceil(wait))},
            )
        target = f"{route.server.rstrip('/')}/v2/models/{route.model}" + (f"/{rest}" if rest else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in HOP_HEADERS}
        body = await request.read()
        try:
            async with (await self.session()).request(
                request.method, target, data=body or None, headers=headers
            ) as resp:
                payload = await resp.read()
                return web.Response(
                    body=payload,
                    status=resp.status,
                    headers={"Content-Type": resp.headers.get("Content-Type", "application/json")},
                )
        except (TimeoutError, aiohttp.ClientError) as e:
            log.warning("upstream of %s unreachable: %s", endpoint, type(e).__name__)
            return _error(502, f"the model server of {endpoint} is unreachable; retry later")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.inference.gateway")
    parser.add_argument("--listen", required=True, help="host:port, e.g. 0.0.0.0:8090")
    parser.add_argument("--routes", required=True, type=Path, help="directory of route files")
    parser.add_argument("--upstream", default=None, help="V2 server whose readiness /v2/health/ready reports")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for one upstream call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    gateway = Gateway(RouteFiles(args.routes), args.upstream, args.timeout)
    log.info("inference gateway on %s, routes %s", args.listen, json.dumps(str(args.routes)))
    web.run_app(gateway.app(), host=host or "0.0.0.0", port=int(port), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
