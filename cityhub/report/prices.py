"""The price sheet a city sets (价目表) for the cost showback: a YAML file validated against
schemas/price-sheet.schema.json, then against the component types and catalog offerings cityhub knows.

    currency: CNY
    componentTypes:
      messaging: {componentHour: 0.5, offerings: {messaging: 0.5}}

Every error names the field and the fix (the schema's `x-hint`), so a city's finance office can correct the
file without reading code.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cityhub_api import registry, schemas
from cityhub_api.catalog import load_offerings

SCHEMA = "price-sheet.schema.json"


class PriceSheetError(ValueError):
    """The price sheet is invalid; the message lists every problem as `field: what to change`."""


@dataclass(frozen=True)
class TypePrices:
    component_hour: float
    """Price of one component request of the type for one hour (componentHour)."""
    offerings: Mapping[str, float] = field(default_factory=dict)
    """Offering → its own price per component-hour, where it differs from component_hour."""


@dataclass(frozen=True)
class PriceSheet:
    currency: str
    """ISO 4217, e.g. CNY."""
    component_types: Mapping[str, TypePrices]
    name: str | None = None
    source: str = ""
    """Where the sheet was read from (its path), for the report."""

    def price(self, component_type: str, offering: str) -> float | None:
        """Price per component-hour of an offering of a type; None when the sheet leaves the type out."""
        prices = self.component_types.get(component_type)
        if prices is None:
            return None
        return prices.offerings.get(offering, prices.component_hour)


def _field(parts: list[str | int] | tuple[str | int, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the sheet)"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _schema_problem(error: jsonschema.ValidationError) -> list[str]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-hint")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return [f"{_field([*path, missing])}: is required but missing"]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        out = []
        for key in sorted(set(error.instance) - set(allowed)):
            close = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            out.append(f"{_field([*path, key])}: unknown key; {fix}")
        return out
    if hint:
        return [f"{_field(path)}: {_show(error.instance)} {hint}"]
    return [f"{_field(path)}: {error.message}"]


def _known_problems(doc: Mapping[str, Any]) -> list[str]:
    """What the schema cannot know: the component types and the catalog's offerings of each."""
    types = registry.component_types()
    offerings: dict[str, set[str]] = {}
    for offering in load_offerings():
        offerings.setdefault(offering.component_type, set()).add(offering.name)
    problems = []
    for name, prices in (doc.get("componentTypes") or {}).items():
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"component types: {', '.join(sorted(types))}"
            problems.append(f"componentTypes.{name}: no such component type; {fix}")
            continue
        own = offerings.get(name, set())
        for offering in (prices.get("offerings") or {}) if isinstance(prices, dict) else ():
            if offering not in own:
                problems.append(
                    f"componentTypes.{name}.offerings.{offering}: no offering of {name} is named so; "
                    f"offerings of {name} in the catalog: {', '.join(sorted(own)) or 'none'}"
                )
    return problems


def parse(doc: Any, where: str) -> PriceSheet:
    """A price sheet from a YAML document; PriceSheetError listing every problem, prefixed by `where`."""
    validator = jsonschema.Draft202012Validator(schemas.load(SCHEMA))
    problems = [p for error in validator.iter_errors(doc) for p in _schema_problem(error)]
    if not problems and isinstance(doc, dict):
        problems = _known_problems(doc)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in sorted(set(problems)))
        raise PriceSheetError(f"Invalid price sheet {where} ({count}):\n{lines}")
    types = {
        name: TypePrices(
            component_hour=float(prices["componentHour"]),
            offerings={o: float(p) for o, p in sorted((prices.get("offerings") or {}).items())},
        )
        for name, prices in sorted(doc["componentTypes"].items())
    }
    return PriceSheet(currency=doc["currency"], component_types=types, name=doc.get("name"), source=where)


def load(path: Path) -> PriceSheet:
    """Read and validate the price sheet at `path` (--prices)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PriceSheetError(f"Invalid --prices {path}: cannot read it ({e.strerror or e})") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PriceSheetError(f"Invalid price sheet {path}: not YAML ({e})") from e
    return parse(doc, str(path))
