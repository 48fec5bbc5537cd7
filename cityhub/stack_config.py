"""The stack configuration Pulumi reads and writes: a working copy per checkout, so no command changes a
tracked file.

    stacks/Pulumi.<stack>.yaml           tracked: what the city configures (reviewed, commented)
    .state/stacks/Pulumi.<stack>.yaml    the working copy every `cityhub pulumi …` passes as --config-file:
                                         Pulumi writes the passphrase's salt and `config set` values there

The working copy is made from the tracked file, and taken again from it whenever the tracked file changes (a
`git pull`): the tracked keys win, keys set only locally (secrets such as cityhub:backendsMasterKey, or a
`config set` of a key the tracked file lacks) and the salt are kept. `pulumi stack init` writes the salt into
the project's own stack file and takes no --config-file, so it runs in a scratch copy of the project.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths

PROJECT = "cityhub"
SECRETS_KEYS = ("encryptionsalt", "secretsprovider", "encryptedkey")
"""What Pulumi keeps about the stack's secrets provider: per checkout, never from the tracked file."""
WITH_CONFIG = {"up", "preview", "destroy", "refresh", "config", "import", "watch"}
"""Commands that read or write the stack's configuration (and accept --config-file)."""


def tracked(stack: str) -> Path:
    return paths.repo_root() / "stacks" / f"Pulumi.{stack}.yaml"


def working(stack: str) -> Path:
    return paths.state_dir() / "stacks" / f"Pulumi.{stack}.yaml"


def readable(stack: str) -> Path | None:
    """The stack file the report and the dashboard read: the tracked one, else this checkout's copy."""
    return next((p for p in (tracked(stack), working(stack)) if p.exists()), None)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.exists() else {}


def sync(stack: str) -> Path:
    """The working copy of `stack`, made or refreshed from the tracked file; returns its path."""
    source, copy = tracked(stack), working(stack)
    stamp = copy.with_name(copy.name + ".source-sha256")
    copy.parent.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        return copy  # a stack only this checkout knows: the working copy is all there is
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if copy.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return copy
    if not copy.exists():
        shutil.copyfile(source, copy)
    else:
        mine, theirs = _load(copy), _load(source)
        merged = {k: v for k, v in theirs.items() if k not in SECRETS_KEYS}
        merged.update({k: mine[k] for k in SECRETS_KEYS if k in mine})
        merged["config"] = {**(mine.get("config") or {}), **(theirs.get("config") or {})}
        copy.write_text(yaml.safe_dump(merged, allow_unicode=True, sort_keys=False), encoding="utf-8")
    stamp.write_text(digest + "\n")
    return copy


def stack_of(args: list[str]) -> str | None:
    """The stack a pulumi command line names (--stack X, --stack=X, -s X), or None."""
    for i, arg in enumerate(args):
        if arg in ("--stack", "-s") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--stack="):
            return arg.split("=", 1)[1]
    return None


def command_of(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def with_config_file(args: list[str], stack: str) -> list[str]:
    """`args` with --config-file naming the working copy, for the commands that read configuration."""
    if command_of(args) not in WITH_CONFIG or any(a.startswith("--config-file") for a in args):
        return args
    return [*args, "--config-file", str(sync(stack))]


def init(stack: str, run: Callable[[list[str], Path], int]) -> int:
    """`pulumi stack init <stack>` (run(args, cwd)) in a scratch copy of the project, so the passphrase's
    salt lands in the working copy and not in the tracked file."""
    copy = sync(stack)
    scratch = paths.state_dir() / "pulumi-init"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n", encoding="utf-8")
    config_file = scratch / f"Pulumi.{stack}.yaml"
    if copy.exists():
        shutil.copyfile(copy, config_file)
    code = run(["stack", "init", stack], scratch)
    if code == 0 and config_file.exists():
        made = _load(config_file)
        mine = _load(copy)
        mine.update({k: made[k] for k in SECRETS_KEYS if k in made})
        copy.write_text(yaml.safe_dump(mine, allow_unicode=True, sort_keys=False), encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    return code
