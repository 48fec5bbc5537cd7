"""Field-level mutations of a valid request, driven by its kind's CRD schema: a required field dropped, a
value of the wrong JSON type, a number or a length out of range, an unknown enum value, a list entry twice, a
huge string, control characters, unicode and path tricks in a string. Each takes a placed seed (`Target`) and
changes one thing, saying what in the case's `detail`. All randomness comes from the generator's
`random.Random(seed)`: a seed gives the same cases every time. Request-level attacks are in attacks.py.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fuzzing.seeds import (
    MISSING,
    FieldPath,
    SchemaField,
    Seed,
    drop,
    fields,
    get,
    put,
    shown,
)

WEIRD = (
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "\u2028",  # line separator
    "\u0301",  # combining accent
    "\U0001f600",  # emoji
    "\ud83d",  # a lone high surrogate (JSON \ud83d)
    "\udc00",  # a lone low surrogate
    "\x00",
    "\x07",
    "\x1b[2J",
    "\n",
    "\r\n",
    "\t",
    " ",
    "İ",  # lower() makes it two characters
    "ß",
    "\uff44\uff45\uff50\uff54",  # full-width "dept"
    "d\u0435pt",  # "dept" with a Cyrillic e
    "\U0001d552",  # mathematical a
    "\uffff",
    "数据",
)
TRICKS = (
    "../",
    "../../etc/passwd",
    "..",
    "%2e%2e/",
    "%2e%2e%2f",
    "..%2f",
    "%252e%252e%252f",
    "/",
    "\\",
    "..\\..\\",
    "./",
    "/etc/passwd",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "~root",
    "%00",
    "${HOME}",
    "$(id)",
    "'; DROP TABLE cityhub_maps.layers; --",
    '"',
    "*",
    ">",
    "city.>",
    "$SYS.>",
    "_INBOX.x",
    "a.b",
    "{{.}}",
)
OTHER_VALUES: tuple[Any, ...] = (
    0,
    -1,
    1.5,
    True,
    None,
    "x",
    "",
    [],
    {},
    ["x"],
    {"a": 1},
    2**63,
    -(2**63) - 1,
    1e308,
    "\uff11\uff12",  # full-width 12
)


def type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


@dataclass
class Target:
    """A placed request and where the families may reach: its kind's schema and the city."""

    seed: Seed
    body: dict[str, Any]
    rng: random.Random
    namespaces: list[str]
    grades: dict[str, str]
    """Namespace -> general, important or core."""

    @property
    def kind(self) -> str:
        return self.seed.kind

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    def spec(self) -> dict[str, Any]:
        spec = self.body.setdefault("spec", {})
        return spec if isinstance(spec, dict) else {}

    def pick(self, items: list[Any] | tuple[Any, ...]) -> Any:
        return items[self.rng.randrange(len(items))]

    def other_department(self, cleared_for: str = "general") -> str:
        ranks = {"general": 0, "important": 1, "core": 2}
        fit = [
            n for n in self.namespaces if n != self.namespace and ranks[self.grades[n]] >= ranks[cleared_for]
        ]
        return str(self.pick(fit))


Mutation = Callable[[Target], str]
"""Changes target.body; returns the case's detail."""


# -- schema-driven families -------------------------------------------------------------------------------


def drop_required(t: Target) -> str:
    required = [f for f in fields(t.kind) if f.required]
    f: SchemaField = t.pick(required)
    if get(t.body, f.path) is MISSING:
        put(t.body, f.path, "placeholder")  # an item that exists without its required key
        drop(t.body, f.path)
        return f"{f.shown} left out"
    drop(t.body, f.path)
    return f"{f.shown} removed"


def wrong_type(t: Target) -> str:
    f: SchemaField = t.pick(list(fields(t.kind)))
    allowed = {"int-or-string": ("integer", "string"), "number": ("number", "integer")}.get(f.type, (f.type,))
    value = t.pick([v for v in OTHER_VALUES if type_of(v) not in allowed])
    put(t.body, f.path, copy.deepcopy(value))
    return f"{f.shown} ← {json.dumps(value)} ({type_of(value)}, wants {f.type or 'any'})"


def out_of_range(t: Target) -> str:
    candidates = [f for f in fields(t.kind) if _bounded(f)]
    f: SchemaField = t.pick(candidates)
    s = f.schema
    if f.type in ("integer", "number", "int-or-string"):
        lo, hi = s.get("minimum"), s.get("maximum")
        options = [2**63, -(2**63) - 1, 2**63 - 1, 0, -1, 0.5]
        if lo is not None:
            options += [lo - 1, lo]
        if hi is not None:
            options += [hi + 1, hi]
        value: Any = t.pick(options)
    elif f.type == "string":
        options = []
        if "maxLength" in s:
            options.append(_long(f, int(s["maxLength"]) + 1))
        if s.get("minLength", 0) > 0:
            options.append("")
        value = t.pick(options)
    else:  # array
        value = _many(t, f, int(s.get("maxItems", 50)) + 1)
    put(t.body, f.path, value)
    return f"{f.shown} ← {_brief(value)} (bounds {_bounds(s)})"


def _bounded(f: SchemaField) -> bool:
    s = f.schema
    if f.type in ("integer", "number", "int-or-string"):
        return True
    if f.type == "string":
        return "maxLength" in s or s.get("minLength", 0) > 0
    return f.type == "array" and "maxItems" in s


def _bounds(s: dict[str, Any]) -> str:
    keys = ("minimum", "maximum", "minLength", "maxLength", "maxItems")
    return ", ".join(f"{k} {s[k]}" for k in keys if k in s) or "none"


def _long(f: SchemaField, n: int) -> str:
    """A string of length n that would otherwise fit the field's pattern where that is easy."""
    if f.path[-1] in ("maxAge", "accessTokenLifespan", "sessionMaxLifespan"):
        return "1" * (n - 1) + "s"
    return "a" * n


def _many(t: Target, f: SchemaField, n: int) -> list[Any]:
    item = f.schema.get("items") or {}
    if item.get("type") == "object":
        key = "department" if "department" in (item.get("properties") or {}) else "name"
        return [{key: f"x{i}"} for i in range(n)]
    return [f"d-{i}" for i in range(n)]


def enum_value(t: Target) -> str:
    f: SchemaField = t.pick([f for f in fields(t.kind) if "enum" in f.schema])
    known = [str(v) for v in f.schema["enum"]]
    base = t.pick(known)
    value = t.pick(
        [
            base.upper(),
            base.lower(),
            base.capitalize() + "s",
            base + " ",
            "\u200b" + base,
            "",
            "*",
            "Other",
            "GeometryCollection",
            "EPSG:3857",
            "Retain",
            "tmpfs",
        ]
    )
    if value in known:
        value += "x"
    put(t.body, f.path, value)
    return f"{f.shown} ← {value!r} (one of {', '.join(known)})"


def duplicate(t: Target) -> str:
    lists = [f for f in fields(t.kind) if f.type == "array"]
    f: SchemaField = t.pick(lists)
    items = get(t.body, f.path)
    if items is MISSING or not items:
        items = _many(t, f, 1)
        put(t.body, f.path, items)
    first = copy.deepcopy(items[0])
    if isinstance(first, dict) and t.rng.random() < 0.5:
        other = next((k for k in first if k not in ("department", "name")), None) or "purpose"
        first[other] = "text" if other == "type" else "again"  # same key, different content
    items.append(first)
    return f"{f.shown}: entry {_brief(items[0])} listed twice"


def huge_string(t: Target, f: SchemaField, size: int) -> str:
    """`size` bytes as the client sends them (JSON, non-ASCII as \\uXXXX escapes: 6 bytes a character), so
    every request stays under the API server's 3 MiB body limit and meets the field's own limits instead."""
    value = "a" * size if t.rng.random() < 0.7 else ("数据" * size)[: max(1, size // 6)]
    put(t.body, f.path, value)
    return f"{f.shown} ← {len(value)} characters ({len(json.dumps(value))} bytes of JSON)"


def set_string(t: Target, path: FieldPath, value: str) -> str:
    put(t.body, path, value)
    return f"{shown(path)} ← {value!r}"


def weird_string(t: Target, f: SchemaField, weird: str) -> str:
    old = get(t.body, f.path)
    old = old if isinstance(old, str) else str(old) if old is not MISSING and old is not None else "x"
    where = t.rng.randrange(4) if f.path != ("metadata", "name") else 1 + t.rng.randrange(3)
    value = [weird, weird + old, old + weird, old[: len(old) // 2] + weird + old[len(old) // 2 :]][where]
    put(t.body, f.path, value)
    return f"{f.shown} ← {value!r}"


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"
