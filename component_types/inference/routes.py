"""Routes: what the gateway knows about each endpoint, one JSON file per endpoint.

The driver writes them (embedded mode: files in a directory; kubernetes mode: keys of a ConfigMap the
gateway mounts, which kubelet turns into the same files); the gateway (gateway.py) reads them. A route holds
the SHA-256 of the endpoint's API key, never the key, so the routes can be read by the gateway without being
a credential. Neutral: the driver, the gateway and the local launcher use it (standard library only).

A route's file (ConfigMap key) is `naming.object_name(namespace, name).json`, never the endpoint's name: that
is unique per namespace/name, fits a ConfigMap key whatever the name's length, and a file whose name does not
follow from the route it holds (planted, renamed, left from older versions) is ignored by the gateway.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from component_types.inference import naming

SUFFIX = ".json"


def endpoint_name(department: str, name: str) -> str:
    """The public model name of a department's endpoint: <department>.<name> ('.' is in no DNS label)."""
    return f"{department}.{name}"


def route_file(namespace: str, name: str) -> str:
    """The file (ConfigMap key) of the route of `namespace`'s endpoint `name`."""
    return naming.object_name(namespace, name) + SUFFIX


def api_key(secret: bytes, namespace: str, name: str, uid: str) -> str:
    """The endpoint's API key: derived from the request (uid included), so a recreated endpoint gets a new
    one and every reconcile writes the same one."""
    mac = hmac.new(secret, f"inference-key\0{namespace}/{name}/{uid}".encode(), hashlib.sha256).digest()
    return "chk_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Route:
    endpoint: str
    """Public model name, <department>.<name>: the {name} of /v2/models/{name}/… at the gateway."""
    department: str
    uid: str
    server: str
    """Base URL of the V2 server that serves the model."""
    model: str
    """The model's name on that server."""
    key_sha256: str
    requests_per_minute: int

    @property
    def name(self) -> str:
        """The request's name: the endpoint without its `<department>.` ('' when they disagree)."""
        prefix = f"{self.department}."
        return self.endpoint[len(prefix) :] if self.endpoint.startswith(prefix) else ""

    @property
    def file(self) -> str:
        return route_file(self.department, self.name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Route:
        data: dict[str, Any] = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


class RouteSource(Protocol):
    """What the gateway reads routes from: files (RouteFiles) or a watched ConfigMap (gateway_routes.py)."""

    def version(self) -> object:
        """Changes whenever a route is added, replaced or removed."""
        ...

    def all(self) -> dict[str, Route]: ...


def parse_routes(texts: dict[str, str]) -> dict[str, Route]:
    """Endpoint → route, of the files (ConfigMap keys) → texts whose name follows from the route they hold;
    anything else (malformed, planted, renamed) is ignored."""
    out: dict[str, Route] = {}
    for file, text in texts.items():
        if file.startswith(".") or not file.endswith(SUFFIX):
            continue
        try:
            route = Route.from_json(text)
        except (ValueError, KeyError, TypeError):
            continue
        if route.name and route.file == file:
            out[route.endpoint] = route
    return out


class RouteFiles:
    """Routes as files in `directory` (embedded mode, and what the gateway reads), named by `route_file`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def get(self, file: str) -> Route | None:
        try:
            return Route.from_json((self.directory / file).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, route: Route) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{route.file}.tmp"
        tmp.write_text(route.to_json(), encoding="utf-8")
        os.replace(tmp, self.directory / route.file)  # atomic: the gateway never reads half a file

    def remove(self, file: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / file).unlink()

    def all(self) -> dict[str, Route]:
        """Endpoint → route, of the files whose name follows from the route they hold."""
        if not self.directory.is_dir():
            return {}
        texts: dict[str, str] = {}
        for path in self.directory.iterdir():
            # ConfigMap mounts hold ..data/ and dot-files; only <object name>.json are routes.
            if path.name.startswith(".") or not path.name.endswith(SUFFIX):
                continue
            with contextlib.suppress(OSError, UnicodeDecodeError):
                texts[path.name] = path.read_text(encoding="utf-8")
        return parse_routes(texts)

    def version(self) -> float:
        """Changes whenever a route is added, replaced or removed (renames touch the directory)."""
        try:
            return self.directory.stat().st_mtime
        except OSError:
            return -1.0
