"""Prototype: the inference gateway's data path in nginx (Debian's nginx + njs, hack/peers/nginx.sh).

    render(routes, limits, port, directory) -> nginx.conf text     (plus keycheck.js, written by `Nginx`)
    Nginx(directory, routes, limits).start() / .reload(routes) / .stop()

Not product code: bench/peer_gateway.py measures it as a third column next to the Python gateway
(component_types/inference/gateway.py) and MLServer direct. The config is rendered from the same route files
the gateway reads (routes.py: endpoint, department, server, model, SHA-256 of the key, requestsPerMinute) and
the same `GatewayLimits`, so cityhub stays the control path (it issues keys, writes routes, renders, reloads)
and nginx only carries calls. What each gateway step becomes:

    allow-list (gateway_paths.py)   raw target ($request_uri) refused with 400 on '%', '\\', '//', '..',
                                    '.' segments or other characters; `merge_slashes off`; only the
                                    locations below exist (404), other methods 405
    route lookup (404)              map $endpoint → model, server (an upstream block), department
    key check (401/403)             njs hashes the presented key (Bearer or X-Api-Key, like presented_key);
                                    map "$endpoint $key_sha256" → 1: the config holds hashes only, as the
                                    route files do, so it is no credential either
    --max-body, --body-timeout      client_max_body_size (413), client_body_timeout (408)
    requestsPerMinute // replicas   limit_req: one zone per distinct rate (a zone has one rate), keyed by
                                    $endpoint only for the endpoints of that rate; burst = rate - 1, nodelay
                                    (a full minute's calls at once, like the gateway's 60 s window; then one
                                    call each 60/rate s, where the gateway frees a minute-old one) → 429
    --max-concurrent-endpoint/-department   limit_conn on $endpoint / $route_department → 429
    --max-concurrent                limit_conn on the server (429 here, not 503: one status per location)
    --timeout, --connect-timeout    proxy_read_timeout/proxy_send_timeout (504), proxy_connect_timeout
    upstream path                   built from the route's model name, never the client's path; only
                                    Content-Type is forwarded (proxy_pass_request_headers off); no query
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from cityhub import supervisor
from cityhub.paths import ToolMissingError
from cityhub.supervisor import HOST, Record
from component_types.inference.gateway_limits import GatewayLimits
from component_types.inference.gateway_paths import ENDPOINT, VERSION
from component_types.inference.routes import Route

JS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")

KEYCHECK_JS = """\
// The presented key's SHA-256 (hex), as gateway.presented_key reads it: 'Authorization: Bearer <key>', else
// 'X-Api-Key: <key>'; '' when none. nginx compares it with the routes' hashes (a map), never a key.
var crypto = require('crypto');

function keyHash(r) {
    var auth = r.headersIn['Authorization'] || '';
    var key;
    if (auth.slice(0, 7).toLowerCase() === 'bearer ') {
        key = auth.slice(7).trim();
    } else {
        key = (r.headersIn['X-Api-Key'] || '').trim();
    }
    return key ? crypto.createHash('sha256').update(key).digest('hex') : '';
}

export default {keyHash};
"""

ERRORS = {
    400: "refused path: canonical paths only (no %-escapes, '..' or '.' segments, '//', backslashes)",
    401: "missing credential: send 'Authorization: Bearer <apiKey>' with the apiKey of the endpoint's Secret",
    403: "this key is not allowed to call this endpoint; use the key of its Secret",
    404: "no such inference endpoint or path; endpoints are named <department>.<name>",
    405: "method not allowed: infer takes POST, metadata and ready take GET",
    408: "the request body did not arrive in time",
    413: "request body too large; send fewer rows",
    429: "rate or concurrency limit of this endpoint; retry later or choose a larger plan",
    502: "the model server is unreachable; retry later",
    504: "the model server did not answer in time; retry later",
}


def nginx_binary() -> Path:
    """nginx from PATH (Debian: /usr/sbin/nginx) with the njs module; ToolMissingError naming the script."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if found is None or not JS_MODULE.is_file():
        raise ToolMissingError("nginx with njs is not installed: run hack/peers/nginx.sh")
    return Path(found)


def _q(text: str) -> str:
    """An nginx string literal (double-quoted; the renderer only quotes names, hashes and regexes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def upstream_name(server: str) -> str:
    parts = urlsplit(server)
    return f"srv_{parts.hostname}_{parts.port}".replace(".", "_").replace(":", "_")


def rate_zone(rpm: int) -> str:
    return f"rpm_{rpm}"


def bucket_size(routes: list[Route]) -> int:
    longest = max((len(f"{r.endpoint} {r.key_sha256}") for r in routes), default=0) + 16
    size = 64
    while size < longest:
        size *= 2
    return size


def render(routes: Iterable[Route], limits: GatewayLimits, port: int, directory: Path) -> str:
    """nginx.conf for `routes`, listening on HOST:`port`; every file it writes lives under `directory`."""
    routes = sorted(routes, key=lambda r: r.endpoint)
    servers = sorted({r.server.rstrip("/") for r in routes})
    rates = sorted({limits.per_replica(r.requests_per_minute) for r in routes})
    d = directory
    out = [
        "daemon off;",
        "master_process on;",
        "worker_processes 1;  # one process, like one gateway replica",
        f"pid {d}/nginx.pid;",
        f"error_log {d}/error.log warn;",
        f"load_module {JS_MODULE};",
        "events { worker_connections 4096; }",
        "http {",
        "  access_log off;",
        "  server_tokens off;",
        f"  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;",
        f"  fastcgi_temp_path {d}/tmp/fcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;",
        "  default_type application/json;",
        f"  js_import keycheck from {d}/keycheck.js;",
        "  js_set $key_sha256 keycheck.keyHash;",
        "  keepalive_requests 1000000;",
        # A map's keys live in a hash whose bucket must hold the longest one ("<endpoint> <sha256>").
        f"  map_hash_bucket_size {bucket_size(routes)};",
        f"  map_hash_max_size {max(2048, 2 * len(routes))};",
    ]
    for server in servers:
        parts = urlsplit(server)
        out += [
            f"  upstream {upstream_name(server)} {{",
            f"    server {parts.hostname}:{parts.port};",
            f"    keepalive {min(limits.max_concurrent, 256)};",
            # Under MLServer's (uvicorn's) 5 s idle timeout: a call never goes out on a closing connection.
            "    keepalive_timeout 4s;",
            "  }",
        ]
    out += ["  map $endpoint $route_model {", '    default "";']
    out += [f"    {_q(r.endpoint)} {_q(r.model)};" for r in routes] + ["  }"]
    out += ["  map $endpoint $route_server {", '    default "";']
    out += [f"    {_q(r.endpoint)} {upstream_name(r.server.rstrip('/'))};" for r in routes] + ["  }"]
    out += ["  map $endpoint $route_department {", '    default "";']
    out += [f"    {_q(r.endpoint)} {_q(r.department)};" for r in routes] + ["  }"]
    out += ['  map "$endpoint $key_sha256" $authorized {', '    default "";']
    out += [f"    {_q(r.endpoint + ' ' + r.key_sha256)} 1;" for r in routes] + ["  }"]
    for rate in rates:
        out += [f"  map $endpoint ${rate_zone(rate)} {{", '    default "";']
        out += [
            f"    {_q(r.endpoint)} {_q(r.endpoint)};"
            for r in routes
            if limits.per_replica(r.requests_per_minute) == rate
        ]
        out += ["  }", f"  limit_req_zone ${rate_zone(rate)} zone={rate_zone(rate)}:1m rate={rate}r/m;"]
    out += [
        "  limit_conn_zone $endpoint zone=conn_endpoint:1m;",
        "  limit_conn_zone $route_department zone=conn_department:1m;",
        "  limit_conn_zone $server_port zone=conn_all:1m;",
        "  limit_req_status 429;",
        "  limit_conn_status 429;",
        "  server {",
        f"    listen {HOST}:{port} backlog=4096;",
        "    merge_slashes off;",
        f"    client_max_body_size {limits.max_body};",
        f"    client_body_buffer_size {limits.max_body};",
        f"    client_body_timeout {limits.body_timeout:g}s;",
        "    proxy_http_version 1.1;",
        "    proxy_pass_request_headers off;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Content-Type $content_type;",
        f"    proxy_connect_timeout {limits.connect_timeout:g}s;",
        f"    proxy_read_timeout {limits.timeout:g}s;",
        f"    proxy_send_timeout {limits.timeout:g}s;",
        "    proxy_hide_header Server;",
        "    proxy_hide_header Date;",
        # The raw target, before nginx decodes or normalizes it: the gateway's allow-list rules.
        '    if ($request_uri ~ "%|\\x5c|//|\\.\\.|/\\.(/|\\?|$)") { return 400; }',
        '    if ($request_uri !~ "^/[A-Za-z0-9._/-]*(\\?.*)?$") { return 400; }',
        "    location = /v2/health/live {",
        '      if ($request_method !~ "^(GET|HEAD)$") { return 405; }',
        "      return 200 '{\"live\": true}';",
        "    }",
    ]
    if servers:
        out += [
            "    location = /v2/health/ready {",
            '      if ($request_method !~ "^(GET|HEAD)$") { return 405; }',
            f"      proxy_pass http://{upstream_name(servers[0])}/v2/health/ready;",
            "    }",
        ]
    endpoint = f"(?<endpoint>{ENDPOINT.pattern})(?:/versions/(?<version>{VERSION.pattern}))?"
    checks = [
        '      if ($route_model = "") { return 404; }',
        '      if ($key_sha256 = "") { return 401; }',
        '      if ($authorized = "") { return 403; }',
    ]
    limiting = [f"      limit_req zone={rate_zone(r)} burst={r - 1} nodelay;" for r in rates] + [
        f"      limit_conn conn_endpoint {limits.max_concurrent_endpoint};",
        f"      limit_conn conn_department {limits.max_concurrent_department};",
        f"      limit_conn conn_all {limits.max_concurrent};",
    ]
    version = "${version_path}"
    out += [
        '    set $version_path "";',
        f"    location ~ {_q('^/v2/models/' + endpoint + '/infer$')} {{",
        '      if ($request_method != "POST") { return 405; }',
        *checks,
        '      if ($version != "") { set $version_path /versions/$version; }',
        *limiting,
        f"      proxy_pass http://$route_server/v2/models/$route_model{version}/infer;",
        "    }",
        f"    location ~ {_q('^/v2/models/' + endpoint + '(?<action>/ready)?$')} {{",
        '      if ($request_method !~ "^(GET|HEAD)$") { return 405; }',
        *checks,
        '      if ($version != "") { set $version_path /versions/$version; }',
        *limiting,
        f"      proxy_pass http://$route_server/v2/models/$route_model{version}$action;",
        "    }",
        "    location / { return 404; }",
    ]
    for status in sorted(ERRORS):
        out.append(f"    error_page {status} @e{status};")
    for status, message in sorted(ERRORS.items()):
        extra = ""
        if status == 401:
            extra = "add_header WWW-Authenticate 'Bearer realm=\"cityhub-inference\"' always; "
        if status == 429:
            extra = "add_header Retry-After 1 always; "
        body = json.dumps({"error": message}).replace("\\", "\\\\").replace("'", "\\'")
        out.append(f"    location @e{status} {{ {extra}return {status} '{body}'; }}")
    out += ["  }", "}"]
    return "\n".join(out) + "\n"


class Nginx:
    """The prototype proxy as a process (cityhub.supervisor): its own config, prefix and pid file."""

    def __init__(self, directory: Path, limits: GatewayLimits, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.limits = limits
        self.port = port or supervisor.free_port()
        self.record: Record | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "nginx.conf"

    def write(self, routes: Iterable[Route]) -> None:
        for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            (self.directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "keycheck.js").write_text(KEYCHECK_JS)
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(render(routes, self.limits, self.port, self.directory))
        os.replace(tmp, self.config)

    def argv(self) -> list[str]:
        binary = str(nginx_binary())
        return [
            binary,
            "-p",
            str(self.directory),
            "-e",
            str(self.directory / "error.log"),
            "-c",
            str(self.config),
        ]

    def start(self, routes: Iterable[Route], timeout: float = 20.0) -> Nginx:
        self.write(routes)
        self.record = supervisor.spawn(
            "nginx", self.argv(), log=self.directory / "nginx.log", ports={"http": self.port}, url=self.url
        )
        supervisor.wait_ready(self.record, lambda: supervisor.http_ok(self.url + "/v2/health/live"), timeout)
        return self

    def reload(self, routes: Iterable[Route]) -> None:
        """What cityhub's control path would do on a route change: render, test (`nginx -t`), SIGHUP the
        master (new workers on the new config; limit zones of the same name and size keep their state)."""
        self.write(routes)
        subprocess.run([*self.argv(), "-t", "-q"], check=True, capture_output=True)
        if self.record is not None and supervisor.is_running(self.record):
            os.kill(self.record.pid, signal.SIGHUP)

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        if self.record is None:
            return []
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.record.pid}/task/{self.record.pid}/children").read_text().split()
            return [self.record.pid, *map(int, children)]
        return [self.record.pid]

    def stop(self) -> str:
        return supervisor.stop(self.record) if self.record is not None else "not started"
