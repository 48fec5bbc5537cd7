"""Where the embedded cluster listens and what it is called: loopback only, the service and pod ranges, the
names the apiserver's certificate is valid for, the kubeconfig's cluster name."""

from __future__ import annotations

import ipaddress

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
