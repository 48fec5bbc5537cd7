"""Keycloak, the identity backend, as every side runs it: the pinned version, the operator's admin client, the
heap, the build options, where install.sh puts it, the `kc.sh start` arguments for a local process and for
the cluster, and the CITYHUB_IDENTITY_* settings that point the driver at a Keycloak.

Neutral (standard library and cityhub_api only): the driver, backend.py and local.py all use it.
"""

from __future__ import annotations

from pathlib import Path

from cityhub_api.settings import Env

VERSION = "26.0.8"
"""26.0.x is the newest line that runs on Java 17 (26.1+ need Java 21). install.sh pins the same."""
IMAGE = f"quay.io/keycloak/keycloak:{VERSION}"
"""The default image; cityhub:backends.identity.image overrides it (e.g. with hack/images.sh's)."""
USER = 1000
"""The user of the upstream image and of hack/images.sh's (component_types/identity/image.sh): the pod runs
as it, so either image finds its files its own."""
ADMIN_CLIENT_ID = "cityhub-operator"
"""The master-realm service-account client the driver calls the admin API with."""
DEFAULT_REALM = "city"
# The city realm is created with a long SSO session so that each client's own (plan-bounded) session
# lifespan is what applies, not the realm's 10-hour default.
REALM_DEFAULTS: dict[str, object] = {
    "enabled": True,
    "displayName": "City identity",
    "ssoSessionMaxLifespan": 30 * 86400,
    "ssoSessionIdleTimeout": 86400,
    "accessTokenLifespan": 300,
}

HEAP = "-Xms64m -Xmx512m"
"""JAVA_OPTS_APPEND: a modest heap, enough for one city realm on H2."""
BUILD_OPTIONS = ("--db=dev-file", "--health-enabled=true")
"""Build-time options of the local distribution (`kc.sh build`): install.sh spells the same list in
BUILD_OPTIONS, and a local start with `--optimized` relies on them (tests/unit/test_identity_backend.py
checks that both agree)."""
CLUSTER_MANAGEMENT_PORT = 9000
"""Keycloak's default management port (health endpoints) in the cluster."""
READY_PATH = "/health/ready"
LIVE_PATH = "/health/live"
BOOTSTRAP_CLIENT_ID = "KC_BOOTSTRAP_ADMIN_CLIENT_ID"
BOOTSTRAP_CLIENT_SECRET = "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET"
"""Read by Keycloak only when it creates the master realm, i.e. on the first start with an empty database:
the admin client is made with this secret then, and later changes of the variable do nothing."""


class KeycloakMissing(FileNotFoundError):
    """Keycloak is not installed where it is looked for; the message says how to install it."""


def keycloak_home(cache: Path, env: Env | None = None) -> Path:
    """CITYHUB_KEYCLOAK_HOME, else <cache>/keycloak/<version> where install.sh unpacks and builds it."""
    home = (env or Env()).path("CITYHUB_KEYCLOAK_HOME", cache / "keycloak" / VERSION)
    if not (home / "bin" / "kc.sh").exists():
        raise KeycloakMissing(
            f"Keycloak {VERSION} is not installed in {home}: run component_types/identity/install.sh "
            "(hack/toolchain.sh runs it)"
        )
    return home


def template_dir(home: Path) -> Path:
    """The cached initial database next to the installation (made by `python -m
    component_types.identity.local template`): a start on a copy takes ~20 s, on an empty database ~60 s."""
    return home.parent / f"template-{VERSION}"


def local_args(
    home: Path, data: Path, http_port: int, management_port: int, https: tuple[int, Path, Path] | None = None
) -> list[str]:
    """`kc.sh start` of the pre-built distribution on 127.0.0.1, its H2 database under `data`; with `https`
    (port, certificate, key) also on HTTPS. Without a fixed hostname, a token's issuer is the URL it was
    asked at: the operator uses HTTP, people signing in to the API server (which needs an https issuer) HTTPS.
    """
    tls = []
    if https is not None:
        port, cert, key = https
        tls = [f"--https-port={port}", f"--https-certificate-file={cert}"]
        tls.append(f"--https-certificate-key-file={key}")
    return [
        *_local_base(home, data, http_port, management_port),
        *tls,
    ]


def _local_base(home: Path, data: Path, http_port: int, management_port: int) -> list[str]:
    return [
        str(home / "bin" / "kc.sh"),
        "start",
        "--optimized",
        "--http-enabled=true",
        "--http-host=127.0.0.1",
        f"--http-port={http_port}",
        f"--http-management-port={management_port}",
        "--hostname-strict=false",
        "--cache=local",
        f"--db-url=jdbc:h2:file:{data / 'db' / 'keycloakdb'};NON_KEYWORDS=VALUE",
    ]


def cluster_args(
    http_port: int, *, public_url: str = "", database_url: str = "", database_username: str = ""
) -> list[str]:
    """`kc.sh start` in the upstream image (built at start for these options), one replica, local caches."""
    out = [
        "start",
        "--http-enabled=true",
        f"--http-port={http_port}",
        "--health-enabled=true",
        "--cache=local",
        "--proxy-headers=xforwarded",
    ]
    if public_url:
        # Tokens name the public issuer even when fetched through the in-cluster front door (the operator's
        # admin calls and applications' back-channel requests).
        out += [f"--hostname={public_url}", "--hostname-backchannel-dynamic=true"]
    else:
        out.append("--hostname-strict=false")
    if database_url:
        out += ["--db=postgres", f"--db-url={database_url}", f"--db-username={database_username}"]
    else:
        out.append("--db=dev-file")
    return out


def operator_env(
    url: str, admin_secret_file: str, *, realm: str = DEFAULT_REALM, public_url: str = ""
) -> dict[str, str]:
    """The identity driver's settings for a Keycloak at `url` (see driver/settings.py)."""
    out = {
        "CITYHUB_IDENTITY_URL": url,
        "CITYHUB_IDENTITY_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
        "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": admin_secret_file,
        "CITYHUB_IDENTITY_REALM": realm,
    }
    if public_url:
        out["CITYHUB_IDENTITY_PUBLIC_URL"] = public_url
    return out
