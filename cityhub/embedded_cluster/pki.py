"""The embedded cluster's certificates: one CA for every component, a separate front-proxy CA, a leaf cert
per identity (CERTS) and the service-account signing key, all written to <cluster>/pki."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cityhub.embedded_cluster.network import APISERVER_DNS_NAMES, HOST, SERVICE_IP


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
