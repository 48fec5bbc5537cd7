"""cityhub's Python language host answers the engine's gRPC calls (no Pulumi CLI needed)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from cityhub import paths


@pytest.fixture
def host() -> Iterator[language_pb2_grpc.LanguageRuntimeStub]:
    script = paths.repo_root() / "hack" / "langhost" / "pulumi_language_python.py"
    proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1:1"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield language_pb2_grpc.LanguageRuntimeStub(channel)
    finally:
        proc.kill()
        proc.wait()


def test_reports_the_sdk_version(host: language_pb2_grpc.LanguageRuntimeStub) -> None:
    assert host.GetPluginInfo(empty_pb2.Empty()).version == importlib.metadata.version("pulumi")


def test_requires_the_kubernetes_plugin_the_sdk_asks_for(host: language_pb2_grpc.LanguageRuntimeStub) -> None:
    info = language_pb2.ProgramInfo(
        root_directory=str(paths.repo_root()), program_directory=str(paths.repo_root())
    )
    packages = host.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info)).packages
    kubernetes = [p for p in packages if p.name == "kubernetes"]
    assert kubernetes and kubernetes[0].version == "4.25.0"


def test_runs_a_policy_pack_plugin_streaming_both_outputs(
    host: language_pb2_grpc.LanguageRuntimeStub, tmp_path: Path
) -> None:
    """The engine starts Python policy packs through RunPlugin: the pack's stdout (its port) must arrive
    as it is printed, stderr too, then the exit code."""
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "__main__.py").write_text(
        "import os, sys\n"
        "print('port', *sys.argv[1:], os.environ['CITYHUB_X'], os.getcwd(), flush=True)\n"
        "print('warning from the pack', file=sys.stderr, flush=True)\n"
        "sys.exit(3)\n"
    )
    info = language_pb2.ProgramInfo(root_directory=str(pack), program_directory=str(pack))
    request = language_pb2.RunPluginRequest(
        info=info, args=["127.0.0.1:9"], env=["CITYHUB_X=yes"], pwd=str(tmp_path)
    )
    replies = list(host.RunPlugin(request))
    stdout = b"".join(r.stdout for r in replies).decode()
    stderr = b"".join(r.stderr for r in replies).decode()
    assert stdout == f"port 127.0.0.1:9 yes {tmp_path}\n"
    assert stderr == "warning from the pack\n"
    assert replies[-1].exitcode == 3


def test_a_plugin_whose_virtualenv_is_missing_fails_with_the_path(
    host: language_pb2_grpc.LanguageRuntimeStub, tmp_path: Path
) -> None:
    options = struct_pb2.Struct()
    options.update({"virtualenv": "no-such-venv"})
    info = language_pb2.ProgramInfo(
        root_directory=str(tmp_path), program_directory=str(tmp_path), options=options
    )
    replies = list(host.RunPlugin(language_pb2.RunPluginRequest(info=info)))
    assert "no-such-venv has no bin/python" in b"".join(r.stderr for r in replies).decode()
    assert replies[-1].exitcode == 1
