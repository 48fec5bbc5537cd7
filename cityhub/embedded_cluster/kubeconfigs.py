"""Kubeconfigs with client-certificate auth and the data embedded: the admin one (<cluster>/kubeconfig, the
only thing the rest of cityhub uses) and one per component that talks to the apiserver (<cluster>/conf)."""

from __future__ import annotations

import base64

import yaml

from cityhub.embedded_cluster.layout import Layout
from cityhub.embedded_cluster.network import CLUSTER_NAME
from cityhub.embedded_cluster.pki import Pki, write_private


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
