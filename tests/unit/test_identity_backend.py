"""The identity backend's Pulumi component under mocks: what cluster mode deploys; no secret leaks. And the
local Keycloak's pieces that need no Keycloak: install.sh builds what a local start expects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pulumi.runtime import rpc

from cityhub_api import labels
from cityhub_api.registry import BACKEND, component_type
from component_types.identity import keycloak
from components.backends import BackendArgs, derive
from tests.unit.test_components import Created, find, run

MASTER = "m" * 48
NS = "cityhub-system"
IDENTITY = component_type("identity")
Backend = IDENTITY.load(BACKEND).Backend


def backend(**settings: Any) -> Any:
    args = BackendArgs(
        ctype=IDENTITY, namespace=NS, master_key=MASTER, operator_image="op", settings=settings
    )
    return Backend("identity", args)


def keycloak_container(created: list[Created]) -> dict[str, Any]:
    deployment = find(created, "Deployment", "keycloak", NS)
    return dict(deployment.inputs["spec"]["template"]["spec"]["containers"][0])


def test_keycloak_serves_the_front_door_and_bootstraps_the_admin_client() -> None:
    created = run(backend)
    deployment = find(created, "Deployment", "keycloak", NS)
    template = deployment.inputs["spec"]["template"]
    door = IDENTITY.front_door
    # The stack's front-door Service `identity` selects these pods and sends its traffic to this port.
    assert door.selector.items() <= template["metadata"]["labels"].items()
    assert (
        deployment.inputs["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )
    assert template["metadata"]["labels"][labels.COMPONENT] == "identity"
    container = template["spec"]["containers"][0]
    http = next(p for p in container["ports"] if p["name"] == "http")
    assert http["containerPort"] == door.target_port == 8080
    assert f"--http-port={door.target_port}" in container["args"]
    assert deployment.inputs["spec"]["strategy"] == {"type": "Recreate"}

    assert container["image"] == "quay.io/keycloak/keycloak:26.0.8"
    assert "--db=dev-file" in container["args"] and "--cache=local" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KC_BOOTSTRAP_ADMIN_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "cityhub-identity-backend",
        "key": "admin-secret",
    }
    assert "KC_DB_PASSWORD" not in env
    for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "management"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    find(created, "PersistentVolumeClaim", "keycloak-data", NS)
    assert not [r for r in created if r.type.endswith(":Service")], "the front door is the stack's Service"


def test_secret_holds_derived_keys_that_appear_nowhere_else() -> None:
    created = run(backend)
    secret = find(created, "Secret", "cityhub-identity-backend", NS)
    admin, db = derive(MASTER, "identity-admin"), derive(MASTER, "identity-db")
    # Marked secret as a whole, so Pulumi encrypts it in the state (the mocks show Pulumi's secret envelope).
    assert secret.inputs["stringData"] == {
        rpc._special_sig_key: rpc._special_secret_sig,
        "value": {"admin-secret": admin, "db-password": db},
    }
    others = [r for r in created if r is not secret]
    assert admin not in str([r.inputs for r in others]) and MASTER not in str([r.inputs for r in created])


def test_public_url_and_external_database() -> None:
    created = run(
        lambda: backend(
            publicUrl="https://id.city.gov",
            databaseUrl="jdbc:postgresql://pg/keycloak",
            databaseUsername="kc",
        )
    )
    container = keycloak_container(created)
    assert "--hostname=https://id.city.gov" in container["args"] and "--db=postgres" in container["args"]
    assert (
        "--db-url=jdbc:postgresql://pg/keycloak" in container["args"]
        and "--db-username=kc" in container["args"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["KC_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "db-password"
    assert not [r for r in created if r.type.endswith("PersistentVolumeClaim")]


def test_operator_env_reaches_keycloak_through_the_front_door() -> None:
    seen: dict[str, str] = {}

    def program() -> None:
        backend(publicUrl="https://id.city.gov").operator_env.apply(seen.update)

    run(program)
    assert seen == {
        "CITYHUB_IDENTITY_URL": "http://identity.cityhub-system.svc.cluster.local:8080",
        "CITYHUB_IDENTITY_ADMIN_CLIENT_ID": "cityhub-operator",
        "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": "/var/run/cityhub/backends/identity/admin-secret",
        "CITYHUB_IDENTITY_REALM": "city",
        "CITYHUB_IDENTITY_PUBLIC_URL": "https://id.city.gov",
    }
    seen.clear()
    run(lambda: backend().operator_env.apply(seen.update))
    assert "CITYHUB_IDENTITY_PUBLIC_URL" not in seen


def test_install_script_builds_what_a_local_start_expects() -> None:
    # `kc.sh start --optimized` (local.py) runs only on a distribution built with these exact options.
    script = (Path(keycloak.__file__).parent / "install.sh").read_text()
    version = re.search(r"^KEYCLOAK_VERSION=\$\{KEYCLOAK_VERSION:-([^}]+)\}$", script, re.M)
    options = re.search(r"^BUILD_OPTIONS=\(([^)]*)\)$", script, re.M)
    assert version and options
    assert version.group(1) == keycloak.VERSION
    assert tuple(options.group(1).split()) == keycloak.BUILD_OPTIONS
    assert "-m component_types.identity.local template" in script


def test_keycloak_follows_the_system_placement_as_the_images_user_from_the_configured_image() -> None:
    placement = {"nodeSelector": {"cityhub.io/node": "real"}, "tolerations": [{"key": "k"}]}
    image = "registry.example.gov.cn/cityhub/keycloak:26.0.8"

    def make() -> Any:
        args = BackendArgs(
            ctype=IDENTITY,
            namespace=NS,
            master_key=MASTER,
            operator_image="op",
            settings={"image": image},
            placement=placement,
        )
        return Backend("identity", args)

    pod = find(run(make), "Deployment", "keycloak", NS).inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == placement["nodeSelector"] and pod["tolerations"] == placement["tolerations"]
    security = pod["securityContext"]
    # The upstream image's user and hack/images.sh's: a hostPath or pre-made volume owned by it is writable.
    assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == keycloak.USER == 1000
    assert pod["containers"][0]["image"] == image
    assert keycloak_container(run(backend))["image"] == keycloak.IMAGE


def test_the_offline_image_carries_the_version_the_driver_and_install_script_use() -> None:
    root = Path(keycloak.__file__).parents[2]
    versions = (root / "hack" / "versions.env").read_text()
    image = re.search(r"^KEYCLOAK_IMAGE=(\S+)$", versions, re.M)
    assert image and image.group(1).rsplit(":", 1)[1] == keycloak.VERSION
    # The image is the distribution install.sh pre-built: `kc.sh start` finds nothing to rebuild.
    script = (Path(keycloak.__file__).parent / "image.sh").read_text()
    assert "$CACHE/keycloak/$1" in script and f"KEYCLOAK_USER={keycloak.USER}" in script
