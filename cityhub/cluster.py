"""The embedded default cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

    python -m cityhub.cluster up       start everything; a no-op when it is already up, and when some
                                       process died (crash, reboot) restart just those, keeping the data
    python -m cityhub.cluster status   each process, its pid, port and state; exit 1 unless all run
    python -m cityhub.cluster down     stop everything it started, free its ports, delete its data

The cluster is a convenience for a laptop or CI: everything listens on 127.0.0.1, nodes are simulated
by kwok (3 CPU nodes, 2 GPU inference nodes), and the only thing the rest of cityhub gets from it is the
admin kubeconfig at <state>/cluster/kubeconfig. Nothing else may depend on it being embedded: a real
cluster is used by pointing KUBECONFIG at it instead.

State lives under <state>/cluster (CITYHUB_STATE overrides <repo>/.state): pki/, conf/ (component
kubeconfigs, kwok config), etcd-data/, logs/<process>.log and state.json (pid, command line, ports).
Ports are picked free on 127.0.0.1; CITYHUB_<PROCESS>_PORT (e.g. CITYHUB_APISERVER_PORT) pins one.
CITYHUB_CLUSTER_TIMEOUT (seconds, default 180) bounds each wait. Linux only: liveness comes from /proc.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import http.client
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cityhub import paths

HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/12"
# The first address of the service range is the `kubernetes` Service's ClusterIP.
SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CLUSTER_NAME = "cityhub"

# Start order; `down` stops them in reverse.
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Each process's ports, keyed by role; the first one is the one status shows first and health-checks.
PORT_ROLES: dict[str, tuple[str, ...]] = {
    "etcd": ("client", "peer"),
    "kube-apiserver": ("secure",),
    "kube-controller-manager": ("secure",),
    "kube-scheduler": ("secure",),
    "kwok": ("server",),
}
STATE_VERSION = 1
DEFAULT_STEP_TIMEOUT = 180.0  # seconds; generous because a 2-core machine may be compiling meanwhile
STOP_TIMEOUT = 15.0


class ClusterError(RuntimeError):
    """A step of up/down failed; `step` names it for the user."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step in any unexpected error (an API error, a file system error) raised inside it."""
    try:
        yield
    except ClusterError:
        raise
    except Exception as e:
        raise ClusterError(name, f"{type(e).__name__}: {e}") from e


class PortTakenError(ClusterError):
    def __init__(self, port: int, env_var: str) -> None:
        super().__init__(
            "pick ports",
            f"port {port} on {HOST} (set by {env_var}) is already in use; free it or unset {env_var}",
        )
        self.port = port


# --------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where one embedded cluster keeps its files."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def component_kubeconfig(self, name: str) -> Path:
        return self.conf / f"{name}.kubeconfig"


def layout() -> Layout:
    return Layout(paths.state_dir() / "cluster")


def kubeconfig_path() -> Path:
    """The admin kubeconfig of the embedded cluster (it may not exist yet)."""
    return layout().kubeconfig


# ---------------------------------------------------------------------------------------------- ports


LOWEST_PORT = 10000


def ephemeral_port_range() -> tuple[int, int]:
    """The range the kernel takes source ports of outgoing connections from."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A free port on HOST, not in `exclude` (ports already promised to others).

    Picked below the ephemeral range rather than by binding to port 0 (which returns an ephemeral
    port): once a server on an ephemeral port stops, the kernel may hand that port to any outgoing
    connection as its source port, and the server cannot be restarted on its recorded port.
    """
    low, _ = ephemeral_port_range()
    if low - LOWEST_PORT >= 1000:
        for _ in range(200):
            port = random.randrange(LOWEST_PORT, low)
            if port not in exclude and port_is_free(port):
                return port
    # A machine whose ephemeral range leaves no room below it: let the kernel choose.
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port
    raise ClusterError("pick ports", f"could not find a free port on {HOST}")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR like the Go servers use, so a socket lingering in TIME_WAIT does not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def port_env_var(process: str, role: str) -> str:
    """CITYHUB_APISERVER_PORT, CITYHUB_ETCD_PORT, CITYHUB_ETCD_PEER_PORT, CITYHUB_SCHEDULER_PORT, ..."""
    base = process.removeprefix("kube-").replace("-", "_").upper()
    suffix = "" if role == PORT_ROLES[process][0] else f"_{role.upper()}"
    return f"CITYHUB_{base}{suffix}_PORT"


def pick_port(env_var: str, taken: set[int], env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    given = env.get(env_var)
    if given:
        try:
            port = int(given)
        except ValueError:
            raise ClusterError("pick ports", f"{env_var}={given!r} is not a port number") from None
        if port in taken or not port_is_free(port):
            raise PortTakenError(port, env_var)
    else:
        port = free_port(exclude=taken)
    taken.add(port)
    return port


def pick_ports(env: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Every process's ports, pinned ones (env) checked first so a conflict fails before anything starts."""
    env = dict(os.environ) if env is None else env
    taken: set[int] = set()
    pinned = [(p, r) for p in PROCESSES for r in PORT_ROLES[p] if env.get(port_env_var(p, r))]
    ports: dict[str, dict[str, int]] = {p: {} for p in PROCESSES}
    for process, role in pinned:
        ports[process][role] = pick_port(port_env_var(process, role), taken, env)
    for process in PROCESSES:
        for role in PORT_ROLES[process]:
            if role not in ports[process]:
                ports[process][role] = pick_port(port_env_var(process, role), taken, env)
    return ports


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ pki


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return private_pem(self.key)


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: every component accepts it, and it is generated in microseconds where RSA takes a while
    # on a small CI machine.
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "cityhub-ca", days: int = 3650) -> KeyPair:
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def issue(
    ca: KeyPair,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    days: int = 1825,
) -> KeyPair:
    """A leaf cert signed by `ca`. Server certs need SANs; a client cert's CN is the user, O its groups."""
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (keys, kubeconfigs with embedded keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_pair(pair: KeyPair, directory: Path, name: str) -> tuple[Path, Path]:
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    directory.mkdir(parents=True, exist_ok=True)
    crt.write_bytes(pair.cert_pem)
    write_private(key, pair.key_pem)
    return crt, key


@dataclass(frozen=True)
class Pki:
    """The file paths of everything generate_pki writes."""

    dir: Path

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.crt("ca")

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = (HOST,)

# name -> (CN, O, server?, client?); server certs get the loopback SANs, the apiserver gets more.
CERTS: dict[str, tuple[str, tuple[str, ...], bool, bool]] = {
    "apiserver": ("kube-apiserver", (), True, False),
    "etcd-server": ("cityhub-etcd", (), True, True),  # client usage too: etcd also presents it to peers
    "apiserver-etcd-client": ("kube-apiserver-etcd-client", (), False, True),
    # What the apiserver presents to kubelets (kwok's server) for logs/exec; a real kubelet would
    # authorize it by asking the apiserver, where system:masters may do anything.
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",), False, True),
    "admin": ("cityhub-admin", ("system:masters",), False, True),
    "controller-manager": ("system:kube-controller-manager", (), False, True),
    "scheduler": ("system:kube-scheduler", (), False, True),
    # kwok plays the kubelet of every simulated node and updates any pod/node/lease; on a real cluster
    # it gets kwok's ClusterRole, here admin rights keep the embedded setup small.
    "kwok": ("kwok-controller", ("system:masters",), False, True),
    "controller-manager-serving": ("kube-controller-manager", (), True, False),
    "scheduler-serving": ("kube-scheduler", (), True, False),
    "kwok-serving": ("kwok-controller", (), True, False),
}


FRONT_PROXY_CLIENT = "front-proxy-client"


def generate_pki(directory: Path) -> Pki:
    ca = make_ca()
    write_pair(ca, directory, "ca")
    # The front proxy (aggregated APIs such as metrics-server) gets its own CA: a cert it signs may
    # assert any user in request headers, so it must not be a cert the main CA hands out for other uses.
    # Configuring it also stops the controller-manager and scheduler from logging every 20s that the
    # requestheader CA is missing from kube-system/extension-apiserver-authentication.
    front_proxy_ca = make_ca("cityhub-front-proxy-ca")
    write_pair(front_proxy_ca, directory, "front-proxy-ca")
    write_pair(issue(front_proxy_ca, FRONT_PROXY_CLIENT, client=True), directory, "front-proxy-client")
    for name, (cn, orgs, server, client) in CERTS.items():
        dns, ips = (LOOPBACK_DNS, LOOPBACK_IPS) if server else ((), ())
        if name == "apiserver":
            dns, ips = APISERVER_DNS_NAMES, (HOST, SERVICE_IP)
        write_pair(issue(ca, cn, orgs=orgs, dns=dns, ips=ips, server=server, client=client), directory, name)
    # The service-account token signing key: a bare key pair, the apiserver needs no certificate for it.
    sa = new_key()
    write_private(directory / "sa.key", private_pem(sa))
    public = sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "sa.pub").write_bytes(public)
    return Pki(directory)


# ---------------------------------------------------------------------------------------- kubeconfigs


def render_kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str) -> str:
    """A self-contained kubeconfig (data embedded, so it can be copied elsewhere) using client-cert auth."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


# kubeconfig file -> (certificate name in the pki, user name)
KUBECONFIGS = {
    "admin": ("admin", "cityhub-admin"),
    "controller-manager": ("controller-manager", "system:kube-controller-manager"),
    "scheduler": ("scheduler", "system:kube-scheduler"),
    "kwok": ("kwok", "kwok-controller"),
}


def write_kubeconfigs(lay: Layout, pki: Pki, server: str) -> None:
    ca_pem = pki.ca.read_bytes()
    for name, (cert, user) in KUBECONFIGS.items():
        text = render_kubeconfig(server, ca_pem, pki.crt(cert).read_bytes(), pki.key(cert).read_bytes(), user)
        target = lay.kubeconfig if name == "admin" else lay.component_kubeconfig(name)
        write_private(target, text.encode())


# ---------------------------------------------------------------------------------------------- state


@dataclass
class ProcessRecord:
    name: str
    pid: int
    # /proc/<pid>/stat starttime: tells our process apart from a later one that reuses the pid.
    start_time: int
    ports: dict[str, int]
    cmd: list[str]
    log: str

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))


@dataclass
class ClusterState:
    apiserver: str
    kubeconfig: str
    processes: list[ProcessRecord] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    version: int = STATE_VERSION

    def find(self, name: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.name == name), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported cluster state version {data.get('version')!r}")
        procs = [ProcessRecord(**p) for p in data.pop("processes", [])]
        return cls(**data, processes=procs)


def save_state(lay: Layout, state: ClusterState) -> None:
    # Write-then-rename so a crash never leaves a half-written file that hides running processes.
    tmp = lay.state_file.with_suffix(".json.tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, lay.state_file)


def load_state(lay: Layout) -> ClusterState | None:
    try:
        return ClusterState.from_json(lay.state_file.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as e:
        raise ClusterError("read state", f"{lay.state_file} is unreadable ({e}); remove {lay.root}") from e


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialise up/down of one state directory (two shells, or a test and a developer)."""
    lock = paths.state_dir() / "cluster.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ processes

# Popen objects of the processes this Python process started: kept so they are reaped (no zombies
# when up and down run in one process, as in the tests) and not garbage-collected with a warning.
_children: dict[int, subprocess.Popen[bytes]] = {}


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid`, or None when it does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: fields after it are split safely.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(rec: ProcessRecord) -> bool:
    reap(rec.pid)
    return proc_start_time(rec.pid) == rec.start_time


def child_env(name: str, lay: Layout) -> dict[str, str]:
    env = dict(os.environ)
    # etcd and kwok read flags from ETCD_*/KWOK_* variables; a developer's would silently change them.
    for key in list(env):
        if key.startswith(("ETCD_", "KWOK_")):
            del env[key]
    if name == "kwok":
        # kwok otherwise also loads ~/.kwok/kwok.yaml: keep a developer's kwokctl setup out of ours.
        env["KWOK_WORKDIR"] = str(lay.conf / "kwok-workdir")
    return env


def launch(
    name: str, cmd: list[str], ports: dict[str, int], log_path: Path, env: dict[str, str] | None = None
) -> ProcessRecord:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A new session: the process outlives this CLI and down can signal its whole group.
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=log_path.parent,
        )
    _children[child.pid] = child
    start = proc_start_time(child.pid)
    if start is None:
        raise ClusterError(f"start {name}", f"{name} exited at once\n{tail(log_path)}")
    return ProcessRecord(name=name, pid=child.pid, start_time=start, ports=ports, cmd=cmd, log=str(log_path))


def tail(path: Path | str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"  (no log at {path})"
    return f"  --- last {len(text)} lines of {path} ---\n" + "\n".join(f"  | {line}" for line in text)


def stop(rec: ProcessRecord, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM the process group, SIGKILL it after `timeout`; returns what happened, for the user."""
    if not is_running(rec):
        return "already exited"
    # Only signal a group whose leader we verified is ours (start time matches): pids get reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, signal.SIGTERM)
    if wait_until(lambda: not is_running(rec), timeout):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, signal.SIGKILL)
    if wait_until(lambda: not is_running(rec), 5.0):
        return f"killed (no exit {timeout:.0f}s after SIGTERM)"
    raise ClusterError(f"stop {rec.name}", f"pid {rec.pid} survives SIGKILL")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------------------------- health


def ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def https_get(port: int, path: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> tuple[int, str]:
    """GET https://HOST:port/path; (0, reason) when nothing answers. http.client: no proxy env applies."""
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e) or type(e).__name__
    finally:
        conn.close()


def health_check(name: str, pki: Pki, port: int) -> Callable[[], tuple[bool, str]]:
    """A check returning (healthy, detail) for one process."""
    if name == "etcd":
        ctx = ssl_context(pki.ca, pki.crt("apiserver-etcd-client"), pki.key("apiserver-etcd-client"))

        def etcd() -> tuple[bool, str]:
            status, body = https_get(port, "/health", ctx)
            try:
                return status == 200 and json.loads(body).get("health") == "true", body.strip()
            except ValueError:
                return False, body.strip()

        return etcd
    if name == "kube-apiserver":
        # /readyz with the admin identity: it also proves client-cert auth works end to end.
        ctx, path = ssl_context(pki.ca, pki.crt("admin"), pki.key("admin")), "/readyz"
    else:
        ctx, path = ssl_context(pki.ca), "/healthz"

    def http_ok() -> tuple[bool, str]:
        status, body = https_get(port, path, ctx)
        return status == 200, f"{path}: {status or 'no answer'} {body.strip()[:300]}"

    return http_ok


def step_timeout() -> float:
    return float(os.environ.get("CITYHUB_CLUSTER_TIMEOUT", DEFAULT_STEP_TIMEOUT))


def wait_healthy(rec: ProcessRecord, check: Callable[[], tuple[bool, str]], timeout: float) -> float:
    """Seconds until `check` passed; fails early (with the log) when the process exits meanwhile."""
    t0 = time.monotonic()
    detail = ""
    while time.monotonic() - t0 < timeout:
        healthy, detail = check()
        if healthy:
            return time.monotonic() - t0
        if not is_running(rec):
            raise ClusterError(
                f"start {rec.name}",
                f"{rec.name} (pid {rec.pid}) exited before it was healthy\n{tail(rec.log)}",
            )
        time.sleep(0.3)
    raise ClusterError(
        f"start {rec.name}",
        f"{rec.name} (pid {rec.pid}) not healthy within {timeout:.0f}s (last check: {detail})\n"
        f"{tail(rec.log)}",
    )


# ------------------------------------------------------------------------------------------- commands


def command(name: str, lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    builders: dict[str, Callable[[Layout, Pki, dict[str, dict[str, int]]], list[str]]] = {
        "etcd": etcd_cmd,
        "kube-apiserver": apiserver_cmd,
        "kube-controller-manager": controller_manager_cmd,
        "kube-scheduler": scheduler_cmd,
        "kwok": kwok_cmd,
    }
    return [str(paths.tool(name)), *builders[name](lay, pki, ports)]


def etcd_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    client = f"https://{HOST}:{ports['etcd']['client']}"
    peer = f"https://{HOST}:{ports['etcd']['peer']}"
    tls = [f"--cert-file={pki.crt('etcd-server')}", f"--key-file={pki.key('etcd-server')}"]
    return [
        "--name=cityhub",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=cityhub={peer}",
        "--initial-cluster-state=new",
        # TLS with client certificates even on loopback: anyone on the machine could otherwise read
        # every Secret straight out of etcd.
        *tls,
        f"--trusted-ca-file={pki.ca}",
        "--client-cert-auth=true",
        *(f"--peer-{flag[2:]}" for flag in tls),
        f"--peer-trusted-ca-file={pki.ca}",
        "--peer-client-cert-auth=true",
        "--auto-compaction-retention=1",
        # fsync dominates etcd latency on CI disks and buys little here: a crashed or killed etcd loses
        # nothing (the page cache survives it), only a power cut could, and this data is a dev cluster's.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"--etcd-servers=https://{HOST}:{ports['etcd']['client']}",
        f"--etcd-cafile={pki.ca}",
        f"--etcd-certfile={pki.crt('apiserver-etcd-client')}",
        f"--etcd-keyfile={pki.key('apiserver-etcd-client')}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={ports['kube-apiserver']['secure']}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        f"--client-ca-file={pki.ca}",
        f"--tls-cert-file={pki.crt('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        # The apiserver calls the simulated kubelets (kwok) for logs/exec; verify them against our CA.
        f"--kubelet-certificate-authority={pki.ca}",
        f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        f"--requestheader-client-ca-file={pki.crt('front-proxy-ca')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.crt('front-proxy-client')}",
        f"--proxy-client-key-file={pki.key('front-proxy-client')}",
        "--allow-privileged=true",
        # The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation rejects
        # (loopback); no pod really runs here to use them, so do not reconcile them at all.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def _delegated_auth(lay: Layout, pki: Pki, component: str) -> list[str]:
    kubeconfig = lay.component_kubeconfig(component)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--tls-cert-file={pki.crt(component + '-serving')}",
        f"--tls-private-key-file={pki.key(component + '-serving')}",
        # One instance only: leader election would just delay a restart by a lease period.
        "--leader-elect=false",
    ]


def controller_manager_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    return [
        *_delegated_auth(lay, pki, "controller-manager"),
        f"--secure-port={ports['kube-controller-manager']['secure']}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca}",
        f"--cluster-signing-cert-file={pki.ca}",
        f"--cluster-signing-key-file={pki.key('ca')}",
        "--use-service-account-credentials=true",
        # Default controller set; node IPAM stays idle (no --allocate-node-cidrs): kwok assigns pod IPs.
        "--controllers=*",
        "--profiling=false",
    ]


def scheduler_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    return [
        *_delegated_auth(lay, pki, "scheduler"),
        f"--secure-port={ports['kube-scheduler']['secure']}",
    ]


def kwok_cmd(lay: Layout, pki: Pki, ports: dict[str, dict[str, int]]) -> list[str]:
    port = ports["kwok"]["server"]
    return [
        f"--kubeconfig={lay.component_kubeconfig('kwok')}",
        f"--config={lay.conf / 'kwok.yaml'}",
        # Only nodes cityhub marks as fake: a real kubelet joining this API server is left alone.
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--server-address={HOST}:{port}",
        # The simulated kubelets' address is kwok's own server, so the apiserver can reach it.
        f"--node-ip={HOST}",
        f"--node-port={port}",
        f"--tls-cert-file={pki.crt('kwok-serving')}",
        f"--tls-private-key-file={pki.key('kwok-serving')}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
        # At INFO kwok logs every lease renewal of every node (tens of thousands of lines a day).
        "--v=WARN",
    ]


def write_kwok_config(lay: Layout) -> Path:
    """kwok >= 0.5 simulates nothing without Stage objects (it exits with "no stages found"); these are
    the ones kwokctl installs by default: node-initialize, node-heartbeat-with-lease, pod-ready,
    pod-complete, pod-delete (kwok v0.8.0 kustomize/stage, Apache-2.0)."""
    target = lay.conf / "kwok.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    (lay.conf / "kwok-workdir").mkdir(exist_ok=True)
    target.write_text(KWOK_STAGES)
    return target


# ---------------------------------------------------------------------------------------------- nodes

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pool: str
    zone: str
    cpu: str
    memory: str
    pods: str = "110"
    gpus: int = 0


NODES = (
    NodeSpec("cityhub-cpu-0", "cpu", "zone-a", "16", "64Gi"),
    NodeSpec("cityhub-cpu-1", "cpu", "zone-b", "16", "64Gi"),
    NodeSpec("cityhub-cpu-2", "cpu", "zone-c", "16", "64Gi"),
    NodeSpec("cityhub-gpu-0", "gpu-inference", "zone-a", "32", "256Gi", gpus=4),
    NodeSpec("cityhub-gpu-1", "gpu-inference", "zone-b", "32", "256Gi", gpus=4),
)


def node_manifest(spec: NodeSpec) -> dict[str, Any]:
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "cityhub.io/pool": spec.pool,
        "topology.kubernetes.io/region": "cityhub-local",
        "topology.kubernetes.io/zone": spec.zone,
    }
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods, "ephemeral-storage": "500Gi"}
    taints: list[dict[str, str]] = []
    if spec.gpus:
        labels["nvidia.com/gpu.present"] = "true"
        resources["nvidia.com/gpu"] = str(spec.gpus)
        taints.append(dict(GPU_TAINT))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def api_client(kubeconfig: Path) -> Any:
    # Imported here: the kubernetes package takes about a second to import and status/down don't need it.
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=str(kubeconfig))


def apply_nodes(kubeconfig: Path, specs: tuple[NodeSpec, ...] = NODES) -> None:
    """Create the simulated nodes, or bring existing ones back to their declared labels, taints (the
    whole list is replaced) and resources."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for spec in specs:
            body = node_manifest(spec)
            try:
                core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    message = f"creating node {spec.name}: {e.status} {e.reason}: {e.body}"
                    raise ClusterError("create nodes", message) from e
                core.patch_node(spec.name, {"metadata": body["metadata"], "spec": body["spec"]})
                core.patch_node_status(spec.name, {"status": body["status"]})


def _node_ready(node: Any) -> bool:
    ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    # The not-ready taint is added at creation and lifted by the node lifecycle controller; until then
    # nothing schedules, so "Ready" alone is not yet usable.
    tainted = any(t.key.startswith("node.kubernetes.io/") for t in (node.spec.taints or []))
    return ready and not tainted


def wait_nodes_ready(kubeconfig: Path, timeout: float, specs: tuple[NodeSpec, ...] = NODES) -> float:
    from kubernetes import client

    t0 = time.monotonic()
    pending: list[str] = [s.name for s in specs]
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        while time.monotonic() - t0 < timeout:
            nodes = {n.metadata.name: n for n in core.list_node(label_selector="type=kwok").items}
            pending = [s.name for s in specs if s.name not in nodes or not _node_ready(nodes[s.name])]
            if not pending:
                return time.monotonic() - t0
            time.sleep(0.5)
    raise ClusterError(
        "wait for nodes",
        f"nodes not Ready and schedulable within {timeout:.0f}s: {', '.join(pending)} (see logs/kwok.log)",
    )


def wait_default_service_account(kubeconfig: Path, timeout: float) -> None:
    """Pods are rejected until the controller-manager created the namespace's `default` ServiceAccount."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)

        def exists() -> bool:
            try:
                core.read_namespaced_service_account("default", "default")
            except ApiException:
                return False
            return True

        if not wait_until(exists, timeout, 0.5):
            raise ClusterError(
                "wait for default service account",
                f"default/default ServiceAccount missing after {timeout:.0f}s "
                "(see logs/kube-controller-manager.log)",
            )


# ------------------------------------------------------------------------------------------------ cli


def say(message: str = "") -> None:
    print(message, flush=True)


def process_rows(state: ClusterState | None) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in PROCESSES:
        rec = state.find(name) if state else None
        if rec is None:
            rows.append((name, "-", "-", "not started"))
            continue
        ports = ",".join(f"{p}" for p in rec.ports.values())
        rows.append((name, str(rec.pid), ports, "running" if is_running(rec) else "exited"))
    return rows


def apiserver_health(lay: Layout, state: ClusterState) -> tuple[bool, str]:
    rec = state.find("kube-apiserver")
    if rec is None:
        return False, "not started"
    try:
        ok, detail = health_check("kube-apiserver", Pki(lay.pki), rec.port)()
    except (OSError, ssl.SSLError) as e:
        return False, f"cannot load the admin certificate from {lay.pki}: {e}"
    return ok, "ok" if ok else detail


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("PROCESS", "PID", "PORT", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def status() -> int:
    """Print each process's state and the apiserver's health; 0 only when everything runs and is ready."""
    lay = layout()
    state = load_state(lay)
    rows = process_rows(state)
    say(f"cityhub cluster status ({lay.root})")
    print_table(rows)
    if state is None:
        say("  apiserver: no cluster state; start it with `cityhub cluster up`")
        return 1
    healthy, detail = apiserver_health(lay, state)
    say(f"  apiserver: {detail} ({state.apiserver}/readyz)")
    say(f"  kubeconfig: {state.kubeconfig}")
    dead = [r[0] for r in rows if r[3] != "running"]
    if dead:
        say(f"  {', '.join(dead)} not running: `cityhub cluster up` restarts it; logs in {lay.logs}")
    return 0 if healthy and not dead else 1


def remove_cluster_dir(lay: Layout, keep_logs: bool = True) -> None:
    """Delete the cluster's state; logs stay for a post-mortem until the next fresh `up`."""
    if not lay.root.exists():
        return
    for entry in lay.root.iterdir():
        if keep_logs and entry == lay.logs:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def stop_all(state: ClusterState) -> list[str]:
    """Stop every recorded process (reverse start order); returns what went wrong, for the user."""
    problems = []
    for rec in reversed(state.processes):
        try:
            outcome = stop(rec)
        except ClusterError as e:
            outcome = "STILL RUNNING"
            problems.append(f"{e.step}: {e}")
        say(f"  {rec.name:<24} pid {rec.pid:<8} {outcome}")
    for rec in state.processes:
        for role, port in rec.ports.items():
            if not wait_until(lambda p=port: not port_accepts(p), 5.0):
                problems.append(f"{rec.name} {role} port {port} still accepts connections")
    return problems


def down() -> int:
    lay = layout()
    with state_lock():
        state = load_state(lay)
        say(f"cityhub cluster down ({lay.root})")
        if state is None:
            say("  no cluster state: nothing to stop")
        problems = stop_all(state) if state else []
        # Keep the state while one of our processes survives, so a later down can still find it.
        if state is None or not any(is_running(r) for r in state.processes):
            remove_cluster_dir(lay)
    for problem in problems:
        print(f'cityhub cluster down: step "stop processes" failed: {problem}', file=sys.stderr)
    if not problems:
        say("  stopped; ports are free")
    return 1 if problems else 0


def existing_cluster(lay: Layout) -> ClusterState | None:
    """The recorded cluster, or None after removing leftovers that cannot be resumed."""
    state = load_state(lay)
    if state is None:
        if lay.root.exists() and any(e != lay.logs for e in lay.root.iterdir()):
            say("  found cluster files without a state file: removing them and starting fresh")
            remove_cluster_dir(lay)
        return None
    if all(state.find(name) is not None for name in PROCESSES):
        return state
    # An earlier up was killed before it had started every process: nothing worth resuming.
    say("  an earlier up did not finish: stopping what it started and starting fresh")
    problems = stop_all(state)
    if problems:
        raise ClusterError("clean up unfinished cluster", "; ".join(problems))
    remove_cluster_dir(lay)
    return None


def dead_processes(state: ClusterState) -> list[str]:
    return [row[0] for row in process_rows(state) if row[3] != "running"]


def wait_apiserver_ready(lay: Layout, state: ClusterState, timeout: float = 30.0) -> None:
    rec = state.find("kube-apiserver")
    assert rec is not None
    check = health_check("kube-apiserver", Pki(lay.pki), rec.port)
    # The processes run: give a just-(re)started apiserver a moment before calling it unhealthy.
    if not wait_until(lambda: check()[0], timeout, 0.5):
        raise ClusterError(
            "check running cluster",
            f"every process runs but the apiserver is not ready ({apiserver_health(lay, state)[1]}); "
            f"see {lay.logs}, or run `cityhub cluster down` and `cityhub cluster up` to start fresh",
        )


def restart(lay: Layout, state: ClusterState, dead: list[str]) -> None:
    """Start the dead processes again with their recorded command lines: same ports, certificates and
    etcd data, so whatever was deployed (and Pulumi's record of it) survives a crash or a reboot."""
    timeout = step_timeout()
    pki = Pki(lay.pki)
    for name in PROCESSES:
        rec = state.find(name)
        if name not in dead or rec is None:
            continue
        # A killed multi-threaded process shows as a zombie as soon as its main thread is gone, but
        # its other threads close the sockets a moment later: give the ports that moment.
        busy = [str(p) for p in rec.ports.values() if not wait_until(lambda p=p: port_is_free(p), 10.0)]
        if busy:
            raise ClusterError(
                f"restart {name}",
                f"its port {', '.join(busy)} on {HOST} is now used by another process; free it, or run "
                "`cityhub cluster down` to discard this cluster and start fresh",
            )
        with step(f"restart {name}"):
            paths.tool(name)
            new = launch(name, rec.cmd, rec.ports, Path(rec.log), child_env(name, lay))
        state.processes[state.processes.index(rec)] = new
        save_state(lay, state)
        took = wait_healthy(new, health_check(name, pki, new.port), timeout)
        say(f"  {name:<24} pid {new.pid:<8} restarted, healthy in {took:.1f}s")
    create_nodes(lay, timeout)


def print_usage_hint(state: ClusterState) -> None:
    kubectl = paths.bin_dir() / "kubectl"
    say(f"  kubeconfig: {state.kubeconfig}")
    say("  use it with:")
    say(f"    export KUBECONFIG={state.kubeconfig}")
    say(f"    {kubectl} get nodes -L cityhub.io/pool")


def start(lay: Layout) -> ClusterState:
    """Generate the pki and configs, start each process and wait for it, then create the nodes."""
    timeout = step_timeout()
    for name in (*PROCESSES, "kubectl"):
        try:
            paths.tool(name)
        except paths.ToolMissingError as e:
            raise ClusterError("find toolchain", str(e)) from None
    ports = pick_ports()
    t0 = time.monotonic()
    with step("write pki and configs"):
        shutil.rmtree(lay.logs, ignore_errors=True)
        lay.root.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.root, 0o700)  # keys and kubeconfigs inside: owner only
        pki = generate_pki(lay.pki)
        server = f"https://{HOST}:{ports['kube-apiserver']['secure']}"
        write_kubeconfigs(lay, pki, server)
        write_kwok_config(lay)
    say(f"  {'pki':<24} CAs and certificates in {lay.pki} ({time.monotonic() - t0:.1f}s)")
    state = ClusterState(apiserver=server, kubeconfig=str(lay.kubeconfig))
    for name in PROCESSES:
        with step(f"start {name}"):
            rec = launch(
                name, command(name, lay, pki, ports), ports[name], lay.log(name), child_env(name, lay)
            )
        state.processes.append(rec)
        # Recorded before waiting, so `down` can stop it even if this step fails or we are killed.
        save_state(lay, state)
        took = wait_healthy(rec, health_check(name, pki, rec.port), timeout)
        port_list = ",".join(map(str, rec.ports.values()))
        say(f"  {name:<24} pid {rec.pid:<8} port {port_list:<12} healthy in {took:.1f}s")
    create_nodes(lay, timeout)
    return state


def create_nodes(lay: Layout, timeout: float) -> None:
    """Create (or repair) the simulated nodes and wait until pods can be scheduled and admitted."""
    with step("create nodes"):
        apply_nodes(lay.kubeconfig)
    with step("wait for nodes"):
        took = wait_nodes_ready(lay.kubeconfig, timeout)
    pools = ", ".join(f"{sum(s.pool == p for s in NODES)} {p}" for p in dict.fromkeys(s.pool for s in NODES))
    say(f"  {'nodes':<24} {len(NODES)} kwok nodes Ready ({pools}) in {took:.1f}s")
    with step("wait for default service account"):
        wait_default_service_account(lay.kubeconfig, timeout)


def up() -> int:
    lay = layout()
    t0 = time.monotonic()
    say(f"cityhub cluster up ({lay.root})")
    with state_lock():
        with step("check running cluster"):
            state = existing_cluster(lay)
            dead = dead_processes(state) if state else []
            if state is not None and not dead:
                wait_apiserver_ready(lay, state)
        if state is not None and not dead:
            say("  already up: every process runs and the apiserver is ready; nothing to do")
        elif state is not None:
            say(f"  not running: {', '.join(dead)}; restarting with the recorded command lines (data kept)")
            try:
                restart(lay, state, dead)
            except ClusterError as e:
                hint = "the cluster's data is kept; `cityhub cluster down` discards it, then up starts fresh"
                raise ClusterError(e.step, f"{e}\n  {hint}") from e
            say(f"cluster up in {time.monotonic() - t0:.1f}s")
        else:
            state = start_fresh(lay)
            say(f"cluster up in {time.monotonic() - t0:.1f}s")
    print_usage_hint(state)
    return 0


def start_fresh(lay: Layout) -> ClusterState:
    try:
        return start(lay)
    except BaseException:
        # Leave nothing half-started behind (also on Ctrl-C); logs stay for the post-mortem.
        partial = load_state(lay)
        if partial is not None:
            say("  stopping what was started:")
            stop_all(partial)
        remove_cluster_dir(lay)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cityhub cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    actions: dict[str, Callable[[], int]] = {"up": up, "down": down, "status": status}
    try:
        return actions[ns.action]()
    except ClusterError as e:
        print(f'cityhub cluster {ns.action}: step "{e.step}" failed: {e}', file=sys.stderr)
        return 1


# kwok Stage objects: see write_kwok_config. Copied from kwok v0.8.0 (kustomize/stage/...), verbatim but
# for one template action split over two lines (Go templates allow newlines inside actions).
KWOK_STAGES = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" )
           ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      {{ $origin := index $root.status.containerStatuses $index }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""


if __name__ == "__main__":
    sys.exit(main())
