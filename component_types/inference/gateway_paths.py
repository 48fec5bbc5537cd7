"""The gateway's allow-list of paths: which calls a department may make, checked on the raw request target.

    GET  /v2/health/live, /v2/health/ready                          no key
    GET  /v2/models/{endpoint}[/versions/{version}]                 model metadata
    GET  /v2/models/{endpoint}[/versions/{version}]/ready           model readiness
    POST /v2/models/{endpoint}[/versions/{version}]/infer           inference

Nothing else is reachable: not the server's repository API (/v2/repository/…: load, unload, index), not
another model. The gateway never forwards the client's path: it builds the upstream path from the parsed
call and the route's own model name (`Call.upstream_path`), so a path cannot walk out of the endpoint it
named.

A path is refused (400, naming the rule) before any route or key is looked at when its raw or decoded form
has a %-escape (endpoint names and versions never need one; %2e, %2f, %5c and overlong UTF-8 such as
%c0%ae all start with '%'), a backslash, an empty segment ('//', a trailing '/'), a '.' or '..' segment or
'..' anywhere, or a character other than ASCII letters, digits, '-', '_', '.' and '/'. The query string is
ignored and never forwarded.
Neutral: standard library only (the gateway and the tests use it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from component_types.inference import naming

ENDPOINT = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?")
"""<namespace>.<name>: a DNS label (no dots), a dot, a DNS subdomain (the request's metadata.name)."""
VERSION = re.compile(r"[0-9A-Za-z][-_.0-9A-Za-z]{0,31}")
"""spec.modelVersion's pattern (schema.json)."""
SAFE = re.compile(r"[A-Za-z0-9._/-]*")

HEALTH = {"/v2/health/live": "live", "/v2/health/ready": "ready"}
ACTIONS = {"": ("GET", "metadata"), "ready": ("GET", "model-ready"), "infer": ("POST", "infer")}
"""Last segment after the endpoint (and version) → the method it takes and the call."""
READ_METHODS = ("GET", "HEAD")


class PathRefused(Exception):
    """A request target the gateway does not serve; `rule` names the rule it broke."""

    def __init__(self, status: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.status, self.rule, self.message = status, rule, message


@dataclass(frozen=True)
class Call:
    kind: str
    """live, ready (no key); metadata, model-ready, infer (an endpoint's)."""
    endpoint: str = ""
    version: str = ""

    def upstream_path(self, model: str) -> str:
        """The path on the model server: from the route's model name and the parsed call only."""
        path = f"/v2/models/{model}" + (f"/versions/{self.version}" if self.version else "")
        return path + {"metadata": "", "model-ready": "/ready", "infer": "/infer"}[self.kind]


def _bad(rule: str, message: str) -> PathRefused:
    return PathRefused(400, rule, f"refused path ({rule}): {message}")


def check_form(path: str) -> None:
    """PathRefused (400) unless `path` is in canonical form; see the module's docstring."""
    if not path.startswith("/") or path.startswith("//"):
        raise _bad("absolute-path", "the request target must be a path starting with a single '/'")
    if "%" in path:
        raise _bad("percent-encoding", "no %-escapes: endpoint names and versions never need one")
    if "\\" in path:
        raise _bad("backslash", "no backslashes")
    segments = path[1:].split("/") if path != "/" else []
    if "" in segments:
        raise _bad("empty-segment", "no empty segments ('//' or a trailing '/')")
    if ".." in path or any(s == "." for s in segments):
        raise _bad("dot-segment", "no '.' or '..' segments and no '..' anywhere")
    if not SAFE.fullmatch(path):
        raise _bad("characters", "only ASCII letters, digits, '-', '_', '.' and '/'")


def parse(method: str, raw: str, decoded: str | None = None) -> Call:
    """The call a request target names; PathRefused when it is not on the allow-list.

    `raw` is the target as received (query included), `decoded` the server's decoded path: both are checked,
    so no decoding step can turn an accepted path into another one.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    check_form(path)
    if decoded is not None and decoded != path:
        check_form(decoded)
        raise _bad("percent-encoding", "the decoded path differs from the raw path")
    if path in HEALTH:
        return _method(Call(HEALTH[path]), method, "GET")
    parts = path[1:].split("/")
    if parts[:2] != ["v2", "models"] or len(parts) < 3:
        raise PathRefused(
            404,
            "not-allowed",
            f"{path} is not served here: the gateway serves /v2/models/<endpoint>/infer, "
            "…/ready, model metadata and /v2/health/*",
        )
    endpoint, rest = parts[2], parts[3:]
    if not ENDPOINT.fullmatch(endpoint):
        raise PathRefused(
            404,
            "endpoint-name",
            f"{naming.UNKNOWN_ENDPOINT} {endpoint!r}; endpoints are named <department>.<name>",
        )
    version = ""
    if rest[:1] == ["versions"] and len(rest) >= 2:
        version, rest = rest[1], rest[2:]
        if not VERSION.fullmatch(version):
            raise _bad("version", f"{version!r} is not a model version")
    if len(rest) > 1 or (rest and rest[0] not in ACTIONS):
        raise PathRefused(
            404,
            "not-allowed",
            f"{path} is not served here: an endpoint takes …/infer (POST), …/ready and "
            "its metadata (GET) only",
        )
    wanted, kind = ACTIONS[rest[0] if rest else ""]
    return _method(Call(kind, endpoint, version), method, wanted)


def _method(call: Call, method: str, wanted: str) -> Call:
    allowed = READ_METHODS if wanted == "GET" else (wanted,)
    if method.upper() not in allowed:
        raise PathRefused(405, "method", f"{call.kind} takes {wanted}, not {method}")
    return call
