"""The inference gateway: authenticates departments, enforces their limits, proxies KServe V2 calls.

    python -m component_types.inference.gateway --listen HOST:PORT --routes DIR [--routes-configmap NS/NAME]
        [--upstream URL]
        [--max-body 4Mi] [--max-concurrent 256] [--max-concurrent-department 32]
        [--max-concurrent-endpoint 16] [--timeout 30] [--connect-timeout 5] [--body-timeout 30] [--replicas 1]

A runtime, not driver code: the stack runs it in the hub's system namespace (backend.py, pods behind the
front door `inference`, port 8090), the embedded default as a local process (local.py, a free port).

Every request target is first held to the allow-list (gateway_paths.py: exact paths only, no %-escapes,
dot segments, backslashes or empty segments — else 400 naming the rule; other paths 404). Then, for
/v2/models/{endpoint}[/versions/{v}]/{infer,ready} and the model's metadata, it
  1. finds the route of {endpoint} (<department>.<name>; routes.py) — unknown: 404,
  2. checks the caller's key (Authorization: Bearer <apiKey>, or X-Api-Key) against the route's hash —
     none: 401, another endpoint's or department's: 403,
  3. refuses a body over --max-body (413) and admits at most requestsPerMinute // --replicas calls in any
     60 s per endpoint on this replica (429 with Retry-After),
  4. admits at most --max-concurrent-endpoint calls at once per endpoint and --max-concurrent-department per
     department (429), --max-concurrent in all (503),
  5. reads the body within --body-timeout (408) and calls the route's server at a URL it builds itself from
     the route's model name (never the client's path), within --timeout (504; unreachable: 502).
/v2/health/live and /v2/health/ready need no key (ready: the --upstream server, if given, is ready).
Route files are re-read when their directory changes, so new endpoints work without a restart; in a pod,
--routes-configmap watches the routes' ConfigMap instead (gateway_routes.py: a change takes effect in about a
second, not at the kubelet's next rewrite of the mounted files).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from cityhub_api import units
from component_types.inference import naming
from component_types.inference.gateway_limits import Concurrency, Full, GatewayLimits, RateLimiter
from component_types.inference.gateway_paths import Call, PathRefused, parse
from component_types.inference.gateway_routes import ApiServer, ConfigMapRoutes
from component_types.inference.routes import Route, RouteFiles, RouteSource, key_hash

log = logging.getLogger("component_types.inference.gateway")
FORWARDED_HEADERS = {"content-type"}
UPSTREAM_KEEPALIVE = 4.0
"""Seconds an idle connection to a model server is kept for reuse: under MLServer's (uvicorn's) 5 s, so the
gateway never sends a call on a connection the server is closing (that call failed with 502)."""


def _error(status: int, message: str, rule: str | None = None, **headers: str) -> web.Response:
    body = {"error": message, **({"rule": rule} if rule else {})}
    return web.json_response(body, status=status, headers=headers)


class RouteTable:
    def __init__(self, files: RouteSource) -> None:
        self.files = files
        self._version: object = None
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
    def __init__(
        self, routes: RouteSource, upstream: str | None = None, limits: GatewayLimits | None = None
    ) -> None:
        self.routes = RouteTable(routes)
        self.upstream = upstream.rstrip("/") if upstream else None
        self.limits = limits or GatewayLimits()
        self.limiter = RateLimiter()
        self.concurrency = Concurrency(self.limits)
        self.timeout = aiohttp.ClientTimeout(total=self.limits.timeout, connect=self.limits.connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(
                    limit=self.limits.max_concurrent, keepalive_timeout=UPSTREAM_KEEPALIVE
                ),
            )
        return self._session

    async def close(self, _: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body)
        # One catch-all route: the allow-list (gateway_paths.parse) decides, on the raw target, not aiohttp's
        # router on the decoded one.
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.on_cleanup.append(self.close)
        return app

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            call = parse(request.method, request.raw_path, request.path)
        except PathRefused as e:
            return _error(e.status, e.message, e.rule)
        if call.kind == "live":
            return web.json_response({"live": True})
        if call.kind == "ready":
            return await self.ready()
        return await self.model(request, call)

    async def ready(self) -> web.Response:
        if self.upstream is None:
            return web.json_response({"ready": True})
        try:
            async with (await self.session()).get(f"{self.upstream}/v2/health/ready") as resp:
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def model(self, request: web.Request, call: Call) -> web.StreamResponse:
        endpoint = call.endpoint
        route = self.routes.get(endpoint)
        if route is None:
            unknown = f"{naming.UNKNOWN_ENDPOINT} {endpoint!r}; endpoints are named <department>.<name>"
            return _error(404, unknown)
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
        if (request.content_length or 0) > self.limits.max_body:
            return self._too_large()
        limit = self.limits.per_replica(route.requests_per_minute)
        wait = self.limiter.admit(route.endpoint + "/" + route.uid, limit)
        if wait:
            return _error(
                429,
                f"rate limit of {endpoint}: {route.requests_per_minute} calls a minute (the plan's "
                f"requestsPerMinute; {limit} on each of the {self.limits.replicas} gateway replicas); retry "
                "later or choose a larger plan",
                **{"Retry-After": str(math.ceil(wait))},
            )
        try:
            with self.concurrency.slot(endpoint, route.department):
                return await self.forward(request, call, route)
        except Full as e:
            if e.scope == "gateway":
                return _error(
                    503, f"the gateway is busy ({e.limit} calls at once); retry", **{"Retry-After": "1"}
                )
            what = endpoint if e.scope == "endpoint" else f"department {route.department}"
            return _error(
                429,
                f"concurrency limit of {what}: {e.limit} calls at once; wait for answers before sending more",
                **{"Retry-After": "1"},
            )

    def _too_large(self) -> web.Response:
        return _error(
            413, f"request body over {self.limits.max_body} bytes (the gateway's --max-body); send fewer rows"
        )

    async def forward(self, request: web.Request, call: Call, route: Route) -> web.StreamResponse:
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the read in a Task of its own on every call.
            async with asyncio.timeout(self.limits.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except TimeoutError:
            return _error(408, f"the request body did not arrive within {self.limits.body_timeout:g} s")
        target = URL(route.server.rstrip("/") + call.upstream_path(route.model), encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        method = "POST" if call.kind == "infer" else "GET"
        try:
            async with (await self.session()).request(
                method, target, data=body or None, headers=headers
            ) as resp:
                payload = await resp.read()
                return web.Response(
                    body=payload,
                    status=resp.status,
                    headers={"Content-Type": resp.headers.get("Content-Type", "application/json")},
                )
        except TimeoutError:
            log.warning("upstream of %s timed out", call.endpoint)
            return _error(504, f"the model server of {call.endpoint} did not answer in time; retry later")
        except aiohttp.ClientError as e:
            log.warning("upstream of %s unreachable: %s", call.endpoint, type(e).__name__)
            return _error(502, f"the model server of {call.endpoint} is unreachable; retry later")


def positive(kind: str) -> Callable[[str], float]:
    """An argparse type: a positive `kind` (number, integer, or quantity such as 4Mi)."""

    def read(text: str) -> float:
        try:
            value = float(text) if kind == "number" else units.parse(kind, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} needs to be positive")
        return value

    return read


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, GatewayLimits]:
    d = GatewayLimits()
    parser = argparse.ArgumentParser(prog="python -m component_types.inference.gateway")
    parser.add_argument("--listen", required=True, help="host:port, e.g. 0.0.0.0:8090")
    parser.add_argument("--routes", required=True, type=Path, help="directory of route files")
    parser.add_argument(
        "--routes-configmap",
        default=None,
        metavar="NAMESPACE/NAME",
        help="watch this ConfigMap through the API server (in a pod); --routes until it answers",
    )
    parser.add_argument("--upstream", default=None, help="V2 server whose readiness /v2/health/ready reports")
    add = parser.add_argument
    add("--max-body", type=positive("quantity"), default=d.max_body, help="bytes of a body, e.g. 4Mi")
    add("--max-concurrent", type=positive("integer"), default=d.max_concurrent)
    add("--max-concurrent-department", type=positive("integer"), default=d.max_concurrent_department)
    add("--max-concurrent-endpoint", type=positive("integer"), default=d.max_concurrent_endpoint)
    add("--timeout", type=positive("number"), default=d.timeout, help="seconds for one upstream call")
    add("--connect-timeout", type=positive("number"), default=d.connect_timeout)
    add("--body-timeout", type=positive("number"), default=d.body_timeout)
    add("--replicas", type=positive("integer"), default=d.replicas, help="gateway replicas the stack runs")
    args = parser.parse_args(argv)
    limits = GatewayLimits(
        max_body=int(args.max_body),
        max_concurrent=int(args.max_concurrent),
        max_concurrent_department=int(args.max_concurrent_department),
        max_concurrent_endpoint=int(args.max_concurrent_endpoint),
        timeout=float(args.timeout),
        connect_timeout=float(args.connect_timeout),
        body_timeout=float(args.body_timeout),
        replicas=int(args.replicas),
    )
    return args, limits


def main(argv: list[str] | None = None) -> int:
    args, limits = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    source: RouteSource = RouteFiles(args.routes)
    watch: ConfigMapRoutes | None = None
    if args.routes_configmap:
        api = ApiServer.in_cluster()
        if api is None:
            log.warning("--routes-configmap: no ServiceAccount token here; routes from %s", args.routes)
        else:
            namespace, name = ConfigMapRoutes.parse_target(args.routes_configmap)
            source = watch = ConfigMapRoutes(RouteFiles(args.routes), api, namespace, name)
    gateway = Gateway(source, args.upstream, limits)
    app = gateway.app()
    if watch is not None:
        app.on_startup.append(watch.start)
        app.on_cleanup.append(watch.stop)
    where = args.routes_configmap or str(args.routes)
    log.info("inference gateway on %s, routes %s, %s", args.listen, json.dumps(where), limits)
    web.run_app(app, host=host or "0.0.0.0", port=int(port), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
