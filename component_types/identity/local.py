"""The identity backend of the embedded default: one Keycloak on 127.0.0.1, started by `cityhub operator
start` (through `start(ctx)`), and by the tests and benchmarks (through `KeycloakServer`).

    python -m component_types.identity.local template      make the cached initial database (install.sh)

Keycloak runs the distribution install.sh pre-built (`kc.sh start --optimized`), with its H2 database in
its directory, HTTP and management (health) ports from supervisor.free_port, loopback only, local caches
(no clustering) and a modest heap. A first start on an empty database costs ~60 s on two cores, a start on
an existing one ~20 s; so a new directory gets a copy of the cached template database (master realm and the
operator's admin client only), made once by `template`.

The admin secret: Keycloak creates the admin client from KC_BOOTSTRAP_ADMIN_CLIENT_SECRET only when it
creates the master realm, which for a copy of the template happened when the template was made. So a
Keycloak started from the template has the template's admin secret (copied with the database into
<directory>/admin-secret, mode 0600), not ctx.secret("identity-admin"): giving it a secret of its own
would mean an empty database (+40 s per first start) or rotating the secret through the admin API. It
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

from cityhub.embedded_cluster import pki
from cityhub.embedded_cluster.sign_in import Issuer
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.supervisor import HOST, ProcessFailed, Record, Supervisor, free_port, http_ok, kill, wait_ready
from cityhub_api.settings import Env, cache_dir
from component_types.identity import keycloak

START_TIMEOUT = 240.0
"""Seconds to wait for /health/ready: ~20 s from the template, ~60 s on an empty database, more when busy."""
STOP_TIMEOUT = 30.0


class KeycloakServer:
    """A Keycloak whose database, admin secret and log live in `directory`; its process is recorded in
    `supervisor` (default: <directory>/processes) under `name`.

    Ports are chosen once (free ports unless given), so a stopped server restarts at the same URL.
    `start` reuses a running process of the same record (its ports then come from the record).
    """

    def __init__(
        self,
        directory: Path,
        *,
        home: Path | None = None,
        supervisor: Supervisor | None = None,
        name: str = "keycloak",
        http_port: int | None = None,
        management_port: int | None = None,
        https_port: int | None = None,
    ) -> None:
        """`https_port`: also serve HTTPS there (0: a free port), with a certificate made in `directory`/tls
        by a CA of its own (sign_in_ca_pem): what the API server's sign-in trusts."""
        self.directory = Path(directory)
        self.home = home or keycloak.keycloak_home(cache_dir())
        self.supervisor = supervisor or Supervisor(self.directory / "processes")
        self.name = name
        # Never a fixed port (8080 was also the operator's health port and MLServer's): free ones, kept
        # for restarts.
        self.http_port = http_port or free_port()
        self.management_port = management_port or free_port(exclude=[self.http_port])
        self.https_port = (https_port or free_port()) if https_port is not None else None
        self.record: Record | None = None

    @classmethod
    def from_template(
        cls,
        directory: Path,
        *,
        home: Path | None = None,
        supervisor: Supervisor | None = None,
        name: str = "keycloak",
        https_port: int | None = None,
    ) -> KeycloakServer:
        """A server whose database starts as a copy of the cached template (made on first use)."""
        server = cls(directory, home=home, supervisor=supervisor, name=name, https_port=https_port)
        if not (server.directory / "db").exists():
            template = ensure_template(server.home)
            server.directory.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template / "db", server.directory / "db")
            shutil.copy2(template / "admin-secret", server.admin_secret_file)
        return server

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def issuer(self) -> str:
        """The realm's issuer as people signing in see it (HTTPS); empty without HTTPS."""
        return f"https://{HOST}:{self.https_port}/realms/{keycloak.DEFAULT_REALM}" if self.https_port else ""

    @property
    def tls_dir(self) -> Path:
        return self.directory / "tls"

    def sign_in_ca_pem(self) -> str:
        return (self.tls_dir / "ca.crt").read_text()

    def _tls(self) -> tuple[int, Path, Path] | None:
        """The HTTPS port and a certificate for 127.0.0.1 from a CA of this server's own (made once)."""
        if self.https_port is None:
            return None
        cert, key = self.tls_dir / "keycloak.crt", self.tls_dir / "keycloak.key"
        if not cert.exists():
            ca = pki.make_ca("cityhub-identity-ca")
            leaf = pki.issue(ca, "keycloak", dns=("localhost",), ips=(HOST,), server=True)
            pki.write_private(self.tls_dir / "ca.key", ca.key_pem)
            (self.tls_dir / "ca.crt").write_bytes(ca.cert_pem)
            pki.write_private(key, leaf.key_pem)
            cert.write_bytes(leaf.cert_pem)
        return self.https_port, cert, key

    @property
    def health_url(self) -> str:
        # With HTTPS on, Keycloak serves its management interface (health) over HTTPS too.
        scheme = "https" if self.https_port else "http"
        return f"{scheme}://{HOST}:{self.management_port}{keycloak.READY_PATH}"

    def healthy(self) -> bool:
        return http_ok(self.health_url, ca_file=self.tls_dir / "ca.crt" if self.https_port else None)

    @property
    def admin_secret_file(self) -> Path:
        return self.directory / "admin-secret"

    @property
    def admin_secret(self) -> str:
        """The admin client's secret, made (mode 0600) for a database Keycloak has not created yet."""
        if not self.admin_secret_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.admin_secret_file.touch(mode=0o600)
            self.admin_secret_file.write_text(secrets.token_urlsafe(24) + "\n")
        return self.admin_secret_file.read_text().strip()

    @property
    def log(self) -> Path:
        return self.directory / "keycloak.log"

    def operator_env(self, realm: str = keycloak.DEFAULT_REALM) -> dict[str, str]:
        """The CITYHUB_IDENTITY_* settings that point the identity driver at this server."""
        return keycloak.operator_env(self.url, str(self.admin_secret_file), realm=realm)

    def start(self, timeout: float = START_TIMEOUT) -> KeycloakServer:
        """Start Keycloak (or adopt the running one) and wait until it is ready; ProcessFailed otherwise."""
        running = self.supervisor.get(self.name)
        if running is not None:
            self.record = running
            self.http_port, self.management_port = running.ports["http"], running.ports["management"]
            self.https_port = running.ports.get("https")
        else:
            env = {
                **os.environ,
                keycloak.BOOTSTRAP_CLIENT_ID: keycloak.ADMIN_CLIENT_ID,
                keycloak.BOOTSTRAP_CLIENT_SECRET: self.admin_secret,
                "JAVA_OPTS_APPEND": keycloak.HEAP,
            }
            self.record = self.supervisor.spawn(
                self.name,
                keycloak.local_args(
                    self.home, self.directory, self.http_port, self.management_port, self._tls()
                ),
                log=self.log,
                env=env,
                cwd=self.directory,
                ports={
                    "http": self.http_port,
                    "management": self.management_port,
                    **({"https": self.https_port} if self.https_port else {}),
                },
                serves="identity backend (Keycloak)",
                url=self.url,
            )
        wait_ready(self.record, self.healthy, timeout, 0.5)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> str:
        """SIGTERM to kc.sh's process group (kc.sh runs the JVM in it), SIGKILL after `timeout`."""
        self.record = None
        return self.supervisor.stop(self.name, timeout) or "not running"

    def kill(self) -> str:
        """SIGKILL, like a crash; `start` afterwards recovers the same database."""
        rec = self.supervisor.record(self.name)
        return kill(rec) if rec is not None else "not running"


def ensure_template(home: Path) -> Path:
    """The cached initial database with its admin secret (keycloak.template_dir); made on first use by one
    start and stop of a Keycloak on an empty database."""
    target = keycloak.template_dir(home)
    if (target / "admin-secret").exists():
        return target
    work = Path(f"{target}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    server = KeycloakServer(work, home=home)
    try:
        server.start()
    finally:
        server.stop()
    # Only the database and its admin secret are the template: not the log nor the process records.
    shutil.rmtree(work / "processes", ignore_errors=True)
    server.log.unlink(missing_ok=True)
    try:
        work.rename(target)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)  # another process made it first
    return target


def start(ctx: LocalContext) -> LocalBackend:
    """The embedded default's Keycloak in ctx.directory; a running one is reused."""
    try:
        home = keycloak.keycloak_home(ctx.cache, ctx.env)
    except keycloak.KeycloakMissing as e:
        raise ProcessFailed(f"{ctx.process_name('keycloak')}: {e}") from e
    name = ctx.process_name("keycloak")
    running = ctx.supervisor.get(name)
    if running is not None and "https" not in running.ports:
        ctx.supervisor.stop(name)  # started before people signed in with it: restart with HTTPS
    server = KeycloakServer.from_template(
        ctx.directory, home=home, supervisor=ctx.supervisor, name=name, https_port=0
    ).start()
    assert server.record is not None
    return LocalBackend(
        operator_env=server.operator_env(),
        processes=(server.record,),
        summary=f"Keycloak {keycloak.VERSION} at {server.url} (realm {keycloak.DEFAULT_REALM}; "
        f"sign-in {server.issuer})",
        issuer=Issuer(server.issuer, server.sign_in_ca_pem()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.identity.local")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("template", help="make the cached initial database new local Keycloaks start from")
    parser.parse_args(argv)
    try:
        print(ensure_template(keycloak.keycloak_home(cache_dir(), Env())))
    except (keycloak.KeycloakMissing, ProcessFailed) as e:
        print(f"identity: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
