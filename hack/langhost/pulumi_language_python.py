"""A Pulumi language host for Python programs and Python policy packs.

Why this exists: Pulumi's own host (module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
is untagged and the Go module proxy reachable here serves none of its pseudo-versions, so it cannot be built
on these machines (docs/toolchain.md lists what was tried). This host speaks the same gRPC protocol
(pulumirpc.LanguageRuntime, using the stubs the `pulumi` package ships) and runs programs through Pulumi's own
executor script, `pulumi-language-python-exec`, copied from the sdk/v3 module at the pinned release. It
implements what `pulumi preview/up/destroy` and `--policy-pack` need; code generation RPCs are not offered.

The engine starts it as `pulumi-language-python [flags] ENGINE_ADDRESS`, reads the port from its first stdout
line, and stops it when done.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

# The executor exits with this code after it has printed an actionable error itself.
EXITED_AFTER_USER_MESSAGE = 32

# Run in the program's interpreter, so plugins are found where the program's packages are installed.
_LIST_PLUGINS = r"""
import importlib.metadata as md, json
out = []
for dist in md.distributions():
    for f in dist.files or []:
        if f.name == "pulumi-plugin.json":
            try:
                spec = json.loads(f.read_text())
            except Exception:
                continue
            if spec.get("resource"):
                name = spec.get("name") or dist.metadata["Name"].removeprefix("pulumi-")
                version, server = spec.get("version", ""), spec.get("server", "")
                out.append({"name": name, "version": version, "server": server})
print(json.dumps(out))
"""
_LIST_DEPENDENCIES = (
    "import importlib.metadata as md, json;"
    "print(json.dumps([[d.metadata['Name'], d.version] for d in md.distributions()]))"
)


def _exec_script() -> str:
    # toolchain.sh installs the executor next to this host's launcher on PATH.
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "pulumi-language-python-exec"
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError("pulumi-language-python-exec is not on PATH: run hack/toolchain.sh")


def _options(info: language_pb2.ProgramInfo | None) -> dict[str, Any]:
    if info is None or not info.HasField("options"):
        return {}
    return json_format.MessageToDict(info.options)


def _python(info: language_pb2.ProgramInfo | None) -> str:
    """The interpreter for a program: Pulumi.yaml's `runtime.options.virtualenv`, else this host's own."""
    venv = _options(info).get("virtualenv")
    if venv and info is not None:
        path = Path(venv)
        if not path.is_absolute():
            path = Path(info.root_directory) / path
        python = path / "bin" / "python"
        if not python.exists():
            raise RuntimeError(
                f"runtime.options.virtualenv: {path} has no bin/python; create it or fix the path"
            )
        return str(python)
    return sys.executable


def _query(python: str, code: str) -> Any:
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


class PythonLanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str, tracing: str) -> None:
        self.engine_address = engine_address
        self.tracing = tracing

    def Handshake(self, request: Any, context: Any) -> Any:
        self.engine_address = request.engine_address or self.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=importlib.metadata.version("pulumi"))

    def _packages(self, info: Any) -> list[dict[str, str]]:
        return _query(_python(info), _LIST_PLUGINS)  # type: ignore[no-any-return]

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        packages = [
            plugin_pb2.PackageDependency(
                name=p["name"], kind="resource", version=p["version"], server=p["server"]
            )
            for p in self._packages(request.info)
        ]
        return language_pb2.GetRequiredPackagesResponse(packages=packages)

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        plugins = [
            plugin_pb2.PluginDependency(
                name=p["name"], kind="resource", version=p["version"], server=p["server"]
            )
            for p in self._packages(request.info)
        ]
        return language_pb2.GetRequiredPluginsResponse(plugins=plugins)

    def Run(self, request: Any, context: Any) -> Any:
        try:
            python = _python(request.info)
        except RuntimeError as err:
            return language_pb2.RunResponse(error=str(err))
        args = [python, "-u", _exec_script()]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("root_directory", request.info.root_directory),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("dry_run", "true" if request.dryRun else "false"),
            ("parallel", str(request.parallel)),
            ("tracing", self.tracing),
            ("organization", request.organization),
        ):
            if value:
                args += [f"--{flag}", value]
        args.append(request.info.entry_point or ".")
        args += list(request.args)
        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        sys.stdout.flush()
        code = subprocess.run(args, env=env, check=False).returncode
        sys.stdout.flush()
        sys.stderr.flush()
        if code == 0:
            return language_pb2.RunResponse()
        if code == EXITED_AFTER_USER_MESSAGE:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {code}")

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        # Dependencies are pinned in pyproject.toml and installed by hack/toolchain.sh, never by the engine.
        yield language_pb2.InstallDependenciesResponse(
            stdout=b"cityhub: Python dependencies are installed by hack/toolchain.sh\n"
        )

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
        return language_pb2.RuntimeOptionsResponse()

    def About(self, request: Any, context: Any) -> Any:
        python = _python(request.info if request.HasField("info") else None)
        version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True)
        return language_pb2.AboutResponse(executable=python, version=version.stdout.split()[-1])

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        deps = _query(_python(request.info), _LIST_DEPENDENCIES)
        return language_pb2.GetProgramDependenciesResponse(
            dependencies=[language_pb2.DependencyInfo(name=n, version=v) for n, v in deps]
        )

    def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:
        """Run a Python plugin (a policy pack): `python <program directory> ARGS` (its __main__.py).

        A policy pack prints its gRPC port on stdout and then serves until the engine is done with it, so
        both streams are forwarded as they come (stdout first of all: the engine waits for the port), and
        the pack is stopped when the engine drops the call.
        """
        try:
            python = _python(request.info)
        except RuntimeError as err:
            yield language_pb2.RunPluginResponse(stderr=f"{err}\n".encode())
            yield language_pb2.RunPluginResponse(exitcode=1)
            return
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in request.env if "=" in item)
        proc = subprocess.Popen(
            [python, "-u", request.info.program_directory, *request.args],
            cwd=request.pwd or None,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if context is not None:
            context.add_callback(lambda: proc.poll() is None and proc.kill())
        chunks: queue.Queue[tuple[str, bytes]] = queue.Queue()

        def pump(name: str, stream: Any) -> None:
            for line in iter(stream.readline, b""):
                chunks.put((name, line))
            chunks.put((name, b""))

        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=pump, args=(name, stream), daemon=True).start()
        open_streams = 2
        while open_streams:
            name, data = chunks.get()
            if not data:
                open_streams -= 1
            else:
                yield language_pb2.RunPluginResponse(**{name: data})
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


def _exit_with_parent() -> None:
    # The engine owns this process; when it goes away nothing else will stop us.
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pulumi-language-python", prefix_chars="-")
    parser.add_argument("-tracing", "--tracing", default="")
    parser.add_argument("engine_address", nargs="?", default="")
    # The engine may pass flags meant for Pulumi's own host (-root, -binary, -typechecker, ...).
    args, _unknown = parser.parse_known_args(argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        PythonLanguageHost(args.engine_address, args.tracing), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    # The engine stops its plugins with SIGINT (then SIGKILL): that is a normal shutdown, not an error.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop(grace=1))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
