"""docs/glossary.md names only config keys, labels, metrics and commands that exist: each backticked item
of its table is checked against the stack config schema, cityhub_api.labels, the operator's metrics and the
CLI."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cityhub import cli
from cityhub_api import crds, labels
from cityhub_api.api import CATEGORY

REPO = Path(__file__).resolve().parents[2]
GLOSSARY = REPO / "docs" / "glossary.md"
TERMS = (
    "统一目录",
    "一本账",
    "数据分类分级",
    "平急切换",
    "多级贯通",
    "服务响应度",
    "问题解决度",
    "用户满意度",
    "中枢能力仪表盘",
    "成熟度",
)
COLUMNS = {3: "config", 4: "label", 5: "metric", 6: "command"}
"""Table column (0-based) → what its backticked items are."""
PARSERS = {
    "report": "cityhub.report.command",
    "drill": "cityhub.drill.command",
    "maturity": "cityhub.maturity.command",
    "dashboard": "cityhub.dashboard.serve",
}
"""Subcommands with flags in the glossary → the module whose parser() defines them."""


def rows() -> list[list[str]]:
    lines = [ln for ln in GLOSSARY.read_text(encoding="utf-8").splitlines() if ln.startswith("| ")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return [c for c in cells[1:] if len(c) == 7]  # the header row first


def items() -> list[tuple[str, str, str]]:
    """(term, kind, item) for every backticked item in the checked columns."""
    return [
        (row[0], kind, item)
        for row in rows()
        for column, kind in COLUMNS.items()
        for item in re.findall(r"`([^`]+)`", row[column])
    ]


def schema_has(path: str) -> bool:
    schema = json.loads((REPO / "schemas" / "hub-config.schema.json").read_text(encoding="utf-8"))
    defs = schema.get("$defs", {})
    node: Any = schema
    for part in path.removeprefix("cityhub:").split("."):
        name = part.removesuffix("[]")
        node = defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
        if name not in (node.get("properties") or {}):
            return False
        node = node["properties"][name]
        node = defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
        if part.endswith("[]"):
            if "items" not in node:
                return False
            node = node["items"]
    return True


def metric_names() -> set[str]:
    text = (REPO / "operator" / "cityhub_operator" / "metrics.py").read_text(encoding="utf-8")
    return set(re.findall(r'"(cityhub_[a-z_]+)"', text))


def cli_subcommands() -> set[str]:
    """The subcommands `cityhub --help` lists ({up,destroy,cluster,...})."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["--help"])
    return set(re.search(r"\{([a-z,]+)\}", out.getvalue()).group(1).split(","))  # type: ignore[union-attr]


def command_exists(command: str) -> bool:
    words = command.split()
    if words[0] == "kubectl":
        plurals = {c["spec"]["names"]["plural"] for c in crds.install_set()} | {CATEGORY}
        return words[1] == "get" and words[2] in plurals
    if words[0] != "cityhub" or words[1] not in cli_subcommands():
        return False
    flags = [w for w in words[2:] if w.startswith("--")]
    if not flags:
        return True
    parser: argparse.ArgumentParser = importlib.import_module(PARSERS[words[1]]).parser()
    return all(f in parser._option_string_actions for f in flags)


def test_the_glossary_covers_every_term_of_the_plan() -> None:
    assert [r[0] for r in rows()] == list(TERMS)
    assert len(items()) > 40


@pytest.mark.parametrize(("term", "kind", "item"), items(), ids=lambda v: str(v))
def test_every_named_key_label_metric_and_command_exists(term: str, kind: str, item: str) -> None:
    if kind == "config":
        assert schema_has(item), f"{term}: no config key {item} in schemas/hub-config.schema.json"
    elif kind == "label":
        known = {v for v in vars(labels).values() if isinstance(v, str)}
        assert item in known, f"{term}: no label {item} in cityhub_api/labels.py"
    elif kind == "metric":
        assert item in metric_names(), f"{term}: no metric {item} in operator/cityhub_operator/metrics.py"
    else:
        assert command_exists(item), f"{term}: no command {item} (cityhub/cli.py, its parsers, the CRDs)"


def test_the_checker_refuses_what_does_not_exist() -> None:
    assert not schema_has("cityhub:departments[].grade") and schema_has("cityhub:departments[].dataGrade")
    assert not schema_has("cityhub:departments.dataGrade")  # a list needs []
    assert not command_exists("cityhub drill --fast") and not command_exists("cityhub emergency")
    assert not command_exists("kubectl get offerings")
