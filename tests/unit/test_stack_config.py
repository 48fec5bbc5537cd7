"""Pulumi's stack configuration lives in a working copy: no command changes stacks/Pulumi.<stack>.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cityhub import stack_config


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(stack_config.paths, "repo_root", lambda: tmp_path)
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  cityhub:mode: normal  # 平急切换\n")
    return tmp_path


def test_the_working_copy_keeps_local_secrets_and_follows_the_tracked_file(checkout: Path) -> None:
    copy = stack_config.sync("dev")
    assert yaml.safe_load(copy.read_text())["config"] == {"cityhub:mode": "normal"}
    local = yaml.safe_load(copy.read_text())
    local["encryptionsalt"] = "v1:salt"
    local["config"]["cityhub:backendsMasterKey"] = {"secure": "v1:abc"}
    copy.write_text(yaml.safe_dump(local))
    assert stack_config.sync("dev") == copy and yaml.safe_load(copy.read_text()) == local, "unchanged source"
    tracked = checkout / "stacks" / "Pulumi.dev.yaml"
    tracked.write_text("config:\n  cityhub:mode: emergency\n  cityhub:city: 示例市\n")
    merged = yaml.safe_load(stack_config.sync("dev").read_text())
    assert merged["encryptionsalt"] == "v1:salt"
    assert merged["config"] == {
        "cityhub:mode": "emergency",
        "cityhub:backendsMasterKey": {"secure": "v1:abc"},
        "cityhub:city": "示例市",
    }
    assert tracked.read_text() == "config:\n  cityhub:mode: emergency\n  cityhub:city: 示例市\n"


def test_commands_that_read_configuration_get_the_working_copy(checkout: Path) -> None:
    args = stack_config.with_config_file(["up", "--yes", "--stack", "dev"], "dev")
    assert args[-2:] == ["--config-file", str(stack_config.working("dev"))]
    assert stack_config.with_config_file(["stack", "ls"], "dev") == ["stack", "ls"]
    assert stack_config.stack_of(["config", "set", "-s", "prod", "x", "1"]) == "prod"
    assert stack_config.stack_of(["preview", "--stack=dev"]) == "dev"


def test_stack_init_writes_the_salt_into_the_working_copy_only(checkout: Path) -> None:
    seen: list[tuple[list[str], Path]] = []

    def fake_pulumi(args: list[str], cwd: Path) -> int:
        seen.append((args, cwd))
        file = cwd / "Pulumi.dev.yaml"
        file.write_text(file.read_text() + "encryptionsalt: v1:new\n")
        return 0

    assert stack_config.init("dev", fake_pulumi) == 0
    assert seen[0][0] == ["stack", "init", "dev"] and seen[0][1] != checkout
    assert yaml.safe_load(stack_config.working("dev").read_text())["encryptionsalt"] == "v1:new"
    assert "encryptionsalt" not in (checkout / "stacks" / "Pulumi.dev.yaml").read_text()
