"""The identity backend's Pulumi component under mocks: what cluster mode deploys; no secret leaks."""

from __future__ import annotations

from components.backends.identity import SECRET_NAME, IdentityBackend, IdentityBackendArgs
from tests.unit.test_components import find, run

ADMIN = "admin-client-secret-0123456789"


def test_keycloak_deployment_service_and_admin_secret() -> None:
    created = run(
        lambda: IdentityBackend(
            "identity", IdentityBackendArgs(namespace="cityhub-system", admin_secret=ADMIN)
        )
    )
    deployment = find(created, "Deployment", "keycloak", "cityhub-system")
    container = deployment.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "quay.io/keycloak/keycloak:26.0.8"
    assert "--db=dev-file" in container["args"] and "--cache=local" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KC_BOOTSTRAP_ADMIN_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET_NAME,
        "key": "identity-admin-secret",
    }
    assert ADMIN not in str(deployment.inputs)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    find(created, "Service", "keycloak", "cityhub-system")
    find(created, "PersistentVolumeClaim", "keycloak-data", "cityhub-system")
    find(created, "Secret", SECRET_NAME, "cityhub-system")


def test_public_url_and_external_database() -> None:
    created = run(
        lambda: IdentityBackend(
            "identity",
            IdentityBackendArgs(
                namespace="cityhub-system",
                admin_secret=ADMIN,
                public_url="https://id.city.gov",
                database_url="jdbc:postgresql://pg/keycloak",
                database_password="pw",
            ),
        )
    )
    container = find(created, "Deployment", "keycloak", "cityhub-system").inputs["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--hostname=https://id.city.gov" in container["args"] and "--db=postgres" in container["args"]
    assert not [r for r in created if r.type.endswith("PersistentVolumeClaim")]


def test_operator_env_points_at_the_mounted_secret() -> None:
    seen: dict[str, str] = {}

    def program() -> None:
        backend = IdentityBackend(
            "identity",
            IdentityBackendArgs(
                namespace="cityhub-system", admin_secret=ADMIN, public_url="https://id.city.gov"
            ),
        )
        backend.operator_env.apply(seen.update)

    run(program)
    assert seen == {
        "CITYHUB_IDENTITY_URL": "http://keycloak.cityhub-system.svc:8080",
        "CITYHUB_IDENTITY_ADMIN_CLIENT_ID": "cityhub-operator",
        "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": "/var/run/cityhub/backends/identity-admin-secret",
        "CITYHUB_IDENTITY_REALM": "city",
        "CITYHUB_IDENTITY_PUBLIC_URL": "https://id.city.gov",
    }
