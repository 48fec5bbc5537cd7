"""The embedded default's backends: each component type's `local.start(ctx)` runs its backend as local
processes next to the embedded cluster (or any cluster in $KUBECONFIG) and returns the settings its driver
needs. `cityhub operator start` calls every type's launcher, then starts the operator with all the settings.

The contract of component_types/<type>/local.py:

    def start(ctx: LocalContext) -> LocalBackend
        Idempotent: processes already running (ctx.supervisor.get(name)) are reused, so a second
        `cityhub operator start` changes nothing. Every process is spawned through ctx.supervisor, with its
        log in ctx.directory, on ports from supervisor.free_port (nothing is fixed, so nothing collides).
        Raises supervisor.ProcessFailed (naming the process and its log) when a backend cannot start.

Secrets a backend needs (its master secret) come from ctx.secret(purpose): a random value made once per
checkout, in a mode-0600 file under the state directory.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cityhub.embedded_cluster.sign_in import Issuer
from cityhub.supervisor import Record, Supervisor
from cityhub_api.settings import Env


@dataclass(frozen=True)
class LocalContext:
    """What `cityhub operator start` gives one type's local launcher."""

    type_name: str
    directory: Path
    """The type's own state directory (<state>/backends/<type>): configuration, data, logs."""
    supervisor: Supervisor
    """Records every process of the embedded default (<state>/processes), so status and stop find them."""
    cache: Path
    """The toolchain cache (binaries in <cache>/bin, backends installed by the types' install.sh)."""
    env: Env = field(default_factory=Env)

    def secret(self, purpose: str, length: int = 48) -> Path:
        """A per-checkout secret file (created once, mode 0600) for `purpose`."""
        file = self.directory.parent / "secrets" / purpose
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
            file.touch(mode=0o600)
            file.write_text(secrets.token_urlsafe(length))
        return file

    def process_name(self, what: str) -> str:
        """Record names are prefixed with the type, e.g. messaging-nats-server."""
        return f"{self.type_name}-{what}"


@dataclass(frozen=True)
class LocalBackend:
    """What a local launcher started and what the operator needs to use it."""

    operator_env: Mapping[str, str]
    """The driver's CITYHUB_* settings (file paths for secrets, never secret values)."""
    processes: tuple[Record, ...] = ()
    summary: str = ""
    """One line for `cityhub operator start`, e.g. "nats-server (JetStream) at nats://127.0.0.1:14222"."""
    issuer: Issuer | None = None
    """An OIDC issuer people sign in to the cluster with (the city's identity): the embedded cluster's API
    server is told to trust it."""
