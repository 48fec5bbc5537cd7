"""People sign in to the embedded cluster with the city's identity: the API server's structured
authentication configuration (--authentication-config) names the OIDC issuers it trusts.

The file starts with no issuer; `trust(issuer)` adds one (e.g. the embedded default's Keycloak, once
`cityhub operator start` has started it) and the API server reloads the file by itself. Tokens map to
Kubernetes names through cityhub_api.people: user `oidc:<preferred_username>`, groups `oidc:<group>`.

A real cluster is configured the same way by its administrators: docs/department-guide.md shows the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cityhub.embedded_cluster.layout import Layout, layout
from cityhub_api import people


@dataclass(frozen=True)
class Issuer:
    """An OIDC issuer people sign in with."""

    url: str
    """https://…/realms/city: the tokens' `iss`, and where the API server finds the signing keys."""
    ca_pem: str
    """The issuer's CA certificate (PEM) the API server verifies its TLS with."""
    audience: str = people.CLIENT_ID


def authentication_config(issuers: list[Issuer]) -> dict[str, Any]:
    """The AuthenticationConfiguration (apiserver.config.k8s.io/v1) trusting `issuers`."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [
            {
                "issuer": {
                    "url": i.url,
                    "audiences": [i.audience],
                    "certificateAuthority": i.ca_pem,
                },
                "claimMappings": {
                    "username": {"claim": "preferred_username", "prefix": people.OIDC_PREFIX},
                    "groups": {"claim": "groups", "prefix": people.OIDC_PREFIX},
                },
                "userValidationRules": [
                    {
                        "expression": "!user.username.startsWith('oidc:system:')",
                        "message": "user names from the identity provider may not start with system:",
                    }
                ],
            }
            for i in issuers
        ],
    }


def config_file(lay: Layout | None = None) -> Path:
    return (lay or layout()).conf / "authentication.yaml"


def write(issuers: list[Issuer], lay: Layout | None = None) -> Path:
    """Write the file (atomically: the API server may read it at any moment)."""
    target = config_file(lay)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(authentication_config(issuers), sort_keys=False))
    os.replace(tmp, target)
    return target


def trusted(lay: Layout | None = None) -> list[Issuer]:
    try:
        doc = yaml.safe_load(config_file(lay).read_text()) or {}
    except FileNotFoundError:
        return []
    return [
        Issuer(j["issuer"]["url"], j["issuer"].get("certificateAuthority", ""), j["issuer"]["audiences"][0])
        for j in doc.get("jwt") or []
    ]


def trust(issuer: Issuer, lay: Layout | None = None) -> bool:
    """Trust `issuer` (replacing an issuer of the same URL); returns whether the file changed."""
    current = trusted(lay)
    wanted = [i for i in current if i.url != issuer.url] + [issuer]
    if wanted == current:
        return False
    write(wanted, lay)
    return True
