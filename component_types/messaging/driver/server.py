"""nats-server configuration that trusts the messaging driver's keys (decentralized JWT auth).

    python -m component_types.messaging.driver.server new-secret > secret      a new master secret
    python -m component_types.messaging.driver.server run --secret-file secret --dir D     a local server
    python -m component_types.messaging.driver.server config --secret-file secret --store-dir /data \
        [--listen 0.0.0.0:4222] [--http 8222] [--max-file-store 10G]                print nats-server.conf

The configuration names the operator (its JWT), the system account (preloaded) and a `full` resolver in
<store-dir>/jwt that accepts account JWTs pushed by the operator at runtime. It holds no secret: only
public keys and JWTs signed with the master secret, so it can live in a ConfigMap.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from component_types.messaging.driver import Keys


def server_config(
    secret: bytes,
    *,
    store_dir: str,
    listen: str = "0.0.0.0:4222",
    server_name: str = "cityhub-nats",
    http: str | None = None,
    max_file_store: str | None = None,
    max_memory_store: str | None = None,
) -> str:
    keys = Keys(secret)
    jetstream = [f'store_dir: "{store_dir}/jetstream"']
    if max_file_store:
        jetstream.append(f"max_file_store: {max_file_store}")
    if max_memory_store:
        jetstream.append(f"max_memory_store: {max_memory_store}")
    lines = [
        "# Rendered by component_types.messaging.driver.server: decentralized JWT auth, accounts pushed by",
        "# the cityhub operator through the system account. Holds public keys and signed JWTs only.",
        f'server_name: "{server_name}"',
        f'listen: "{listen}"',
        *([f'http: "{http}"'] if http else []),
        "jetstream {",
        *(f"  {line}" for line in jetstream),
        "}",
        f'operator: "{keys.operator_jwt()}"',
        f'system_account: "{keys.system_account.public}"',
        "resolver {",
        "  type: full",
        f'  dir: "{store_dir}/jwt"',
        "  allow_delete: true",
        '  interval: "2m"',
        "}",
        "resolver_preload {",
        f'  {keys.system_account.public}: "{keys.system_account_jwt()}"',
        "}",
    ]
    return "\n".join(lines) + "\n"


def nats_server_binary() -> Path:
    """CITYHUB_NATS_SERVER_BIN, else <cache>/bin/nats-server (hack/nats.sh builds it), else the PATH's."""
    given = os.environ.get("CITYHUB_NATS_SERVER_BIN")
    if given:
        return Path(given)
    cache = os.environ.get("CITYHUB_CACHE")
    built = (
        (Path(cache).expanduser() if cache else Path.home() / ".cache" / "cityhub") / "bin" / "nats-server"
    )
    if built.exists():
        return built
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(f"nats-server is not built (expected {built}): run hack/nats.sh")
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A nats-server on 127.0.0.1 with a free port, for development, tests and benchmarks.

    Started with `start()`, stopped by its PID with `stop()`; `kill()` simulates a crash. Its data (JetStream
    store and account JWTs) stays in `directory`, so `start()` after `stop()` finds the same state.
    """

    def __init__(
        self, directory: Path, secret: bytes, *, port: int | None = None, max_file_store: str | None = None
    ) -> None:
        self.directory = Path(directory)
        self.secret = secret
        self.port = port or free_port()
        self.max_file_store = max_file_store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats-server.conf"
        conf.write_text(
            server_config(
                self.secret,
                store_dir=str(self.directory),
                listen=f"127.0.0.1:{self.port}",
                server_name=f"cityhub-local-{self.port}",
                max_file_store=self.max_file_store,
            )
        )
        log = (self.directory / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.port} within {timeout}s; see {log.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.messaging.driver.server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-secret", help="print a new random master secret")
    config = sub.add_parser("config", help="print a nats-server configuration trusting the secret's keys")
    config.add_argument("--secret-file", required=True, type=Path)
    config.add_argument("--store-dir", required=True)
    config.add_argument("--listen", default="0.0.0.0:4222")
    config.add_argument("--server-name", default="cityhub-nats")
    config.add_argument("--http", default=None, help="monitoring listen address, e.g. 0.0.0.0:8222")
    config.add_argument("--max-file-store", default=None, help="e.g. 10G")
    run = sub.add_parser("run", help="run a local nats-server on 127.0.0.1 until interrupted (development)")
    run.add_argument("--secret-file", required=True, type=Path)
    run.add_argument("--dir", required=True, type=Path)
    run.add_argument("--port", type=int, default=4222)
    args = parser.parse_args(argv)
    if args.command == "run":
        server = LocalServer(
            args.dir, args.secret_file.read_text(encoding="utf-8").strip().encode(), port=args.port
        ).start()
        print(f"nats-server pid {server.process.pid if server.process else '?'} at {server.url}", flush=True)
        try:
            while server.process and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            server.stop()
        return 0
    if args.command == "new-secret":
        print(secrets.token_urlsafe(48))
        return 0
    secret = args.secret_file.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        print(
            f"{args.secret_file}: needs at least 32 characters of random text (new-secret)", file=sys.stderr
        )
        return 2
    sys.stdout.write(
        server_config(
            secret,
            store_dir=args.store_dir,
            listen=args.listen,
            server_name=args.server_name,
            http=args.http,
            max_file_store=args.max_file_store,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
