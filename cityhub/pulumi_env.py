"""The environment the pinned Pulumi CLI runs in: offline, local file backend, passphrase secrets."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from cityhub import paths
from cityhub.embedded_cluster.layout import kubeconfig_path
from cityhub_api.settings import Env


def passphrase_file() -> Path:
    """The dev passphrase, generated once per checkout; real stacks set PULUMI_CONFIG_PASSPHRASE(_FILE)."""
    path = paths.state_dir() / "pulumi-passphrase"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path


def kubeconfig() -> str:
    """The cluster to deploy to: $KUBECONFIG when set (any real cluster), else the embedded one."""
    return Env().raw("KUBECONFIG") or str(kubeconfig_path())


def pulumi_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    backend = paths.state_dir() / "pulumi"
    backend.mkdir(parents=True, exist_ok=True)
    venv_bin = paths.repo_root() / ".venv" / "bin"
    env["PATH"] = os.pathsep.join([str(paths.bin_dir()), str(venv_bin), env.get("PATH", "")])
    env.setdefault("PULUMI_HOME", str(paths.cache_dir() / "pulumi-home"))
    env.setdefault("PULUMI_BACKEND_URL", backend.as_uri())
    if "PULUMI_CONFIG_PASSPHRASE" not in env and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env:
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase_file())
    # No update checks, no plugin downloads, no registry look-ups: these machines are offline and
    # every plugin is installed by hack/toolchain.sh at a pinned version.
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env["PULUMI_DISABLE_REGISTRY_RESOLVE"] = "true"
    env["PULUMI_SKIP_CONFIRMATIONS"] = "true"
    env["KUBECONFIG"] = kubeconfig()
    # The language host launcher in the shared cache runs this checkout's host with this checkout's venv.
    env["CITYHUB_ROOT"] = str(paths.repo_root())
    python = venv_bin / "python"
    env["CITYHUB_PYTHON"] = str(python if python.exists() else Path(sys.executable))
    return env
