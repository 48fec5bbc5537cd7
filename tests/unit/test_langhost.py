"""cityhub's Python language host answers the engine's gRPC calls (no Pulumi CLI needed)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import empty_pb2
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
