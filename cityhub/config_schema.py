"""Validation of the raw stack configuration against schemas/hub-config.schema.json, with readable errors."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from cityhub_api import schemas

NAMESPACE = "cityhub"
"""The Pulumi config namespace: stack keys are written `cityhub:<key>`."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: where (a key path) and what to change."""

    path: str
    """e.g. `cityhub:departments[3].quota.cpu`."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """The stack configuration is invalid; nothing has been changed."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"the cityhub stack configuration is invalid ({count}); no resource was changed.\n{lines}"
        )


def hub_schema() -> dict[str, Any]:
    """schemas/hub-config.schema.json with the component types' names and backend settings filled in."""
    return schemas.hub_config_schema()


def key_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """`["departments", 3, "quota"]` -> `cityhub:departments[3].quota`."""
    if not parts:
        return f"{NAMESPACE}:"
    text = f"{NAMESPACE}:{parts[0]}"
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def schema_problems(raw: dict[str, Any]) -> list[ConfigProblem]:
    """Every schema violation in `raw`, sorted by key path."""
    validator = jsonschema.Draft202012Validator(hub_schema())
    problems = [p for error in validator.iter_errors(raw) for p in _problems(error)]
    return sorted(set(problems), key=lambda p: p.path)


def _problems(error: jsonschema.ValidationError) -> list[ConfigProblem]:
    return _unknown_keys(error) if error.validator == "additionalProperties" else [_problem(error)]


def _unknown_keys(error: jsonschema.ValidationError) -> list[ConfigProblem]:
    allowed = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    value = error.instance if isinstance(error.instance, dict) else {}
    problems = []
    for key in sorted(set(value) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        suggestion = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        problems.append(ConfigProblem(key_path([*error.absolute_path, key]), f"unknown key; {suggestion}"))
    return problems


def _problem(error: jsonschema.ValidationError) -> ConfigProblem:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    hint = schema.get("x-hint")
    kind = error.validator
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return ConfigProblem(key_path([*path, missing]), "is required but missing")
    if hint and kind in {"pattern", "type", "minimum"}:
        return ConfigProblem(key_path(path), f"{_show(value)} {hint}")
    if kind == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        return ConfigProblem(key_path(path), f"{_show(value)} is not one of: {options}")
    if kind == "type":
        return ConfigProblem(key_path(path), f"{_show(value)} must be of type {error.validator_value}")
    if kind in {"minimum", "maximum"}:
        return ConfigProblem(key_path(path), f"{_show(value)} must be {kind} {error.validator_value}")
    if kind == "minItems":
        return ConfigProblem(key_path(path), f"needs at least {error.validator_value} entries")
    return ConfigProblem(key_path(path), error.message)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
