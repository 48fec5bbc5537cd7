"""Component types: one folder each, discovered here. Everything about a type follows from its folder.

    component_types/<type>/
        schema.json      the request's own spec fields; under `x-cityhub` its kind, names, limits, printer
                         columns, front door (Service port) and backend settings schema
        catalog.yaml     the catalog entries (ComponentOffering) it ships with
        README.md        its docs page
        install.sh       builds or installs its backend into the cache (called by hack/toolchain.sh)
        driver/          the operator side: `create_driver(env)`; the only place its backend client lives
        backend.py       the stack side: `Backend`, the Pulumi ComponentResource for cityhub:backends.deploy
        local.py         the embedded default: `start(ctx)` runs its backend as local processes
        fixtures.py      pytest fixtures its tests (and other tests) use
        people.py        (the identity type only) people who sign in to the hub: the sign-in client, the
                         departments' role groups, adding a person; `cityhub login` and `cityhub people`

Modules are found by these names and imported with importlib only when a caller asks for one role, so the
operator core never imports a driver, the Pulumi program never loads a backend client library, and a new
type changes no file outside its folder.

CITYHUB_COMPONENT_TYPES lists the folders to search (os.pathsep-separated; each is an importable package
whose sub-folders are types); the default is the checkout's `component_types/`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from cityhub_api import labels
from cityhub_api.settings import Env

DRIVER, BACKEND, LOCAL, FIXTURES, PEOPLE = "driver", "backend", "local", "fixtures", "people"
ROLES = (DRIVER, BACKEND, LOCAL, FIXTURES, PEOPLE)
LIMIT_KINDS = ("duration", "quantity", "integer")
SCHEMA_FILE = "schema.json"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "component_types"


class SchemaError(ValueError):
    """A type folder or schema file is missing or inconsistent; the message names the file and the field."""


class RoleMissing(LookupError):
    """A type has no module for a role (e.g. no local launcher); the message names both."""


@dataclass(frozen=True)
class DoorPort:
    """One more port of a front door (e.g. the sensing gateway's NATS port beside its MQTT port)."""

    name: str
    port: int
    target_port: int
    app_protocol: str


@dataclass(frozen=True)
class SideDoor:
    """A workload of the backend besides the front door's that departments of the service's zones reach
    directly, through its own Service (e.g. maps' PostGIS, where a department writes its features)."""

    workload: str
    """The pods' app.kubernetes.io/name in the hub's system namespace."""
    port: int


@dataclass(frozen=True)
class FrontDoor:
    """The Service in the hub's system namespace that departments reach a type's backend through.

    Its name, selector and ports derive from the type, and the type's backend labels its serving pods with
    `pod_labels`, so the Service selects them by construction (names are never repeated as strings).
    """

    name: str
    port: int
    target_port: int
    app_protocol: str
    extra_ports: tuple[DoorPort, ...] = ()
    side_doors: tuple[SideDoor, ...] = ()

    @property
    def ports(self) -> tuple[DoorPort, ...]:
        """Every port: the main one (named `main`) first."""
        return (DoorPort("main", self.port, self.target_port, self.app_protocol), *self.extra_ports)

    @property
    def selector(self) -> dict[str, str]:
        return {labels.SERVICE: self.name}

    @property
    def pod_labels(self) -> dict[str, str]:
        """What every pod that serves the front door carries."""
        return self.selector

    def host(self, namespace: str = labels.SYSTEM_NAMESPACE, domain: str = "cluster.local") -> str:
        return f"{self.name}.{namespace}.svc.{domain}"


@dataclass(frozen=True)
class ComponentType:
    """One component type, as declared by its folder."""

    name: str
    """The folder's name, e.g. messaging; ComponentOffering.spec.componentType names it."""
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    limits: dict[str, str]
    """Limit name → kind (duration, quantity, integer); spec.limits.<name> is checked against the plan."""
    display_name: str
    """中文 first, e.g. 消息通道 (Messaging)."""
    printer_columns: tuple[dict[str, Any], ...]
    schema: dict[str, Any]
    """The type's own schema: spec parameters (without x-cityhub)."""
    front_door: FrontDoor
    backend_settings: dict[str, Any]
    """JSON Schema of cityhub:backends.<name> (the type's own stack settings); {} when it has none."""
    backend_summary: str
    """One line for the docs' component table: what runs the backend and where it is built from."""
    folder: Path
    package: str
    """The folder's dotted package name, e.g. component_types.messaging."""
    extra: dict[str, Any] = field(default_factory=dict)

    def module_name(self, role: str) -> str:
        return f"{self.package}.{role}"

    def has(self, role: str) -> bool:
        return (self.folder / role / "__init__.py").exists() or (self.folder / f"{role}.py").exists()

    def load(self, role: str) -> ModuleType:
        """Import the type's module for `role` (driver, backend, local, fixtures)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not self.has(role):
            raise RoleMissing(f"component type {self.name} has no {role} module in {self.folder}")
        _importable(self.folder.parent)
        return importlib.import_module(self.module_name(role))

    @property
    def catalog_file(self) -> Path:
        return self.folder / "catalog.yaml"

    @property
    def docs_page(self) -> Path:
        return self.folder / "README.md"

    @property
    def install_script(self) -> Path:
        return self.folder / "install.sh"


def _importable(root: Path) -> None:
    """Make the package at `root` importable (a root given by CITYHUB_COMPONENT_TYPES may be anywhere)."""
    parent = str(root.parent)
    try:
        spec = importlib.util.find_spec(root.name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        if parent not in sys.path:
            sys.path.insert(0, parent)
        return
    if str(root) not in [str(Path(p).resolve()) for p in spec.submodule_search_locations]:
        raise SchemaError(
            f"{root}: another package named {root.name} is importable "
            f"({list(spec.submodule_search_locations)}); give the folder a unique name"
        )


def roots(env: Env | None = None) -> tuple[Path, ...]:
    raw = (env or Env()).raw("CITYHUB_COMPONENT_TYPES")
    if raw is None:
        return (DEFAULT_ROOT,)
    return tuple(Path(p).expanduser().resolve() for p in raw.split(":") if p.strip())


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SchemaError(f"{path}: missing") from e
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e})") from e


def _front_door(path: Path, name: str, meta: dict[str, Any]) -> FrontDoor:
    door = meta.get("frontDoor")
    needs = (
        "port (and optionally targetPort, appProtocol, extraPorts: [{name, port, targetPort, …}], sideDoors)"
    )
    if not isinstance(door, dict) or not isinstance(door.get("port"), int):
        raise SchemaError(f"{path}: x-cityhub.frontDoor needs {needs}")
    extra = []
    for i, item in enumerate(door.get("extraPorts", [])):
        if not isinstance(item, dict) or not isinstance(item.get("port"), int) or not item.get("name"):
            raise SchemaError(f"{path}: x-cityhub.frontDoor.extraPorts[{i}] needs name and port")
        extra.append(
            DoorPort(
                str(item["name"]),
                item["port"],
                int(item.get("targetPort", item["port"])),
                str(item.get("appProtocol", "tcp")),
            )
        )
    side = []
    for i, item in enumerate(door.get("sideDoors", [])):
        if not isinstance(item, dict) or not isinstance(item.get("port"), int) or not item.get("workload"):
            raise SchemaError(f"{path}: x-cityhub.frontDoor.sideDoors[{i}] needs workload and port")
        side.append(SideDoor(str(item["workload"]), item["port"]))
    return FrontDoor(
        name=name,
        port=door["port"],
        target_port=int(door.get("targetPort", door["port"])),
        app_protocol=str(door.get("appProtocol", "tcp")),
        extra_ports=tuple(extra),
        side_doors=tuple(side),
    )


def load_type(folder: Path, package: str) -> ComponentType:
    """The component type declared by `folder` (its schema.json), checked for consistency."""
    path = folder / SCHEMA_FILE
    doc = _load_json(path)
    meta = doc.get("x-cityhub")
    if not isinstance(meta, dict):
        raise SchemaError(f"{path}: needs an x-cityhub object (kind, plural, frontDoor, …)")
    missing = [k for k in ("componentType", "kind", "plural", "singular", "displayName") if not meta.get(k)]
    if missing:
        raise SchemaError(f"{path}: x-cityhub needs {', '.join(missing)}")
    if meta["componentType"] != folder.name:
        raise SchemaError(f"{path}: x-cityhub.componentType must equal the folder's name {folder.name!r}")
    limits = dict(meta.get("limits", {}))
    for name, kind in limits.items():
        if kind not in LIMIT_KINDS:
            raise SchemaError(f"{path}: x-cityhub.limits.{name} is {kind!r}; must be one of {LIMIT_KINDS}")
        if name not in doc.get("properties", {}).get("limits", {}).get("properties", {}):
            raise SchemaError(f"{path}: x-cityhub.limits.{name} has no spec property limits.{name}")
    known = {
        "componentType",
        "kind",
        "plural",
        "singular",
        "shortNames",
        "limits",
        "displayName",
        "printerColumns",
        "frontDoor",
        "backendSettings",
        "backendSummary",
    }
    return ComponentType(
        name=folder.name,
        kind=meta["kind"],
        plural=meta["plural"],
        singular=meta["singular"],
        short_names=tuple(meta.get("shortNames", ())),
        limits=limits,
        display_name=meta["displayName"],
        printer_columns=tuple(meta.get("printerColumns", ())),
        schema={k: v for k, v in doc.items() if k != "x-cityhub"},
        front_door=_front_door(path, folder.name, meta),
        backend_settings=dict(meta.get("backendSettings", {})),
        backend_summary=str(meta.get("backendSummary", "")),
        folder=folder,
        package=package,
        extra={k: v for k, v in meta.items() if k not in known},
    )


def _schema_files(search: tuple[Path, ...]) -> tuple[tuple[Path, int], ...]:
    files = []
    for root in search:
        if not root.is_dir():
            raise SchemaError(f"CITYHUB_COMPONENT_TYPES: {root} is not a folder")
        files += [(p, p.stat().st_mtime_ns) for p in sorted(root.glob(f"*/{SCHEMA_FILE}"))]
    return tuple(files)


@cache
def _discover(files: tuple[tuple[Path, int], ...]) -> dict[str, ComponentType]:
    """Types from their schema files; cached by path and modification time (a changed file is re-read)."""
    found: dict[str, ComponentType] = {}
    for path, _ in files:
        folder = path.parent
        ctype = load_type(folder, f"{folder.parent.name}.{folder.name}")
        if ctype.name in found:
            other = found[ctype.name].folder
            raise SchemaError(f"{folder}: type {ctype.name} is also declared in {other}")
        found[ctype.name] = ctype
    for attr in ("kind", "plural"):
        values = [getattr(t, attr) for t in found.values()]
        dupes = {v for v in values if values.count(v) > 1}
        if dupes:
            raise SchemaError(f"component types: {attr} used by more than one type: {sorted(dupes)}")
    return dict(sorted(found.items()))


def component_types(env: Env | None = None) -> dict[str, ComponentType]:
    """Every component type, by name (sorted)."""
    return dict(_discover(_schema_files(roots(env))))


def component_type(name: str) -> ComponentType:
    types = component_types()
    if name not in types:
        raise KeyError(f"no component type {name!r}; declared: {', '.join(types)}")
    return types[name]


def component_type_by_kind(kind: str) -> ComponentType:
    for t in component_types().values():
        if t.kind == kind:
            return t
    raise KeyError(kind)


def type_names() -> tuple[str, ...]:
    return tuple(component_types())
