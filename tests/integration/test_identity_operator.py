"""IdentityClient end to end: embedded cluster + a real Keycloak + `python -m cityhub_operator`.

Apply a confidential client → Ready; with only its Secret, a client-credentials grant yields a token whose
signature checks out against the issuer's JWKS, with the issuer, audience, department group and roles
asked for; one department's client never carries another's roles; updates change the client in place; bad
input names the bad value; drift is repaired; deletion makes the credentials stop working; a provider
that is down gives Ready=False with a retry, and the request becomes Ready once it is back.

Keycloak starts once for the module (the `keycloak` fixture of component_types/identity/fixtures.py, from
the cached initial database, ~20 s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cityhub_operator.driver import Request
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, condition, wait_for
from component_types.identity.driver.identity_driver import IdentityDriver
from component_types.identity.driver.settings import IdentitySettings
from component_types.identity.local import KeycloakServer

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "hub.cityhub.io", "v1alpha1", "identityclients"
OFFERING = {
    "apiVersion": "hub.cityhub.io/v1alpha1",
    "kind": "ComponentOffering",
    "metadata": {"name": "identity"},
    "spec": {
        "componentType": "identity",
        "defaultPlan": "standard",
        "plans": [
            {
                "name": "standard",
                "limits": {"accessTokenLifespan": "1h", "sessionMaxLifespan": "1d"},
                "defaults": {"accessTokenLifespan": "5m", "sessionMaxLifespan": "10h"},
            }
        ],
    },
}
DEPARTMENTS = ("jiaotong", "weijian")


def identity_client(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "IdentityClient",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"offering": "identity", **spec},
    }


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [OFFERING])
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def operator(
    cluster: Path, keycloak: KeycloakServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("identity-operator")
    env = {
        **keycloak.operator_env(),
        "CITYHUB_COMPONENTS": "identity",
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "3",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "4",
        # Probes (a client-credentials grant per Ready client) on a short timer: kopf releases a deleted
        # object's finalizer only once its timers have stopped, which takes up to one interval.
        "CITYHUB_PROBE_INTERVAL": "3",
    }
    proc = OperatorProcess(cluster, env, tmp / "operator.log").start()
    yield proc
    try:
        testing.delete_requests(cluster, "identityclients")
    finally:
        proc.stop()
    log = (tmp / "operator.log").read_text(errors="replace")
    assert keycloak.admin_secret not in log, "the admin secret leaked into the operator log"


@pytest.fixture(scope="module")
def k8s(cluster: Path) -> client.ApiClient:
    return testing.api(cluster)


def admin(keycloak: KeycloakServer, call: Any) -> Any:
    """Run `call(driver)` with a driver of its own: the test's hands on Keycloak, like an admin's."""

    async def main() -> Any:
        driver = IdentityDriver(IdentitySettings.from_env(keycloak.operator_env()))
        try:
            return await call(driver)
        finally:
            await driver.close()

    return asyncio.run(main())


def get(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_condition(
    k8s: client.ApiClient,
    namespace: str,
    name: str,
    status: str,
    reason: str | None = None,
    timeout: float = 90,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(k8s, namespace, name)
        ready = condition(obj or {}, "Ready")
        generation = (obj or {}).get("metadata", {}).get("generation")
        matches = obj and ready.get("status") == status and (reason is None or ready.get("reason") == reason)
        if matches and (status != "True" or ready.get("observedGeneration") == generation):
            return obj
        return None

    return wait_for(check, timeout, f"{namespace}/{name} Ready={status} {reason or ''}")


def secret_data(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    try:
        secret = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def http(url: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def grant(secret: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """What the department's application does: a client-credentials grant using only the Secret."""
    form = {"grant_type": "client_credentials", "client_id": secret["client_id"]}
    if "client_secret" in secret:
        form["client_secret"] = secret["client_secret"]
    return http(secret["token_endpoint"], form)


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verified_claims(token: str, jwks_uri: str) -> dict[str, Any]:
    """The token's claims after checking its RS256 signature against the issuer's published keys."""
    head, body, signature = token.split(".")
    header = json.loads(b64d(head))
    assert header["alg"] == "RS256", header
    status, jwks = http(jwks_uri)
    assert status == 200
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = rsa.RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"), int.from_bytes(b64d(jwk["n"]), "big"))
    # Raises InvalidSignature when the token was not signed by the issuer's key.
    key.public_key().verify(b64d(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return dict(json.loads(b64d(body)))


def roles_of(claims: dict[str, Any]) -> set[str]:
    return set((claims.get("realm_access") or {}).get("roles") or [])


def test_admission_rejects_bad_redirect_uris_naming_them(cluster: Path) -> None:
    bad = [
        ("https://*.jiaotong.example.gov/cb", "has a wildcard"),
        ("http://jiaotong.example.gov/cb", "must be an absolute https:// URL"),
        ("https://jiaotong.example.gov/cb#done", "has a fragment"),
        ("not a url", "is not allowed"),
        ("/relative/cb", "is not allowed"),
    ]
    for uri, message in bad:
        proc = testing.apply(
            cluster, [identity_client("jiaotong", "bad-uri", redirectUris=[uri])], check=False
        )
        assert proc.returncode != 0, f"{uri} was admitted"
        assert "spec.redirectUris[0]" in proc.stderr and uri in proc.stderr and message in proc.stderr, (
            proc.stderr
        )
    proc = testing.apply(cluster, [identity_client("jiaotong", "bad-public", type="public")], check=False)
    assert proc.returncode != 0 and "a public client needs at least one redirect URI" in proc.stderr
    proc = testing.apply(
        cluster, [identity_client("jiaotong", "bad-role", roles=["weijian:admin"])], check=False
    )
    assert proc.returncode != 0 and "spec.roles[0]" in proc.stderr, proc.stderr


def test_confidential_client_token_carries_department_and_roles(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, keycloak: KeycloakServer
) -> None:
    testing.apply(
        cluster,
        [
            identity_client(
                "jiaotong",
                "dispatch",
                roles=["viewer", "editor"],
                redirectUris=["https://dispatch.example.gov/cb"],
            )
        ],
    )
    obj = wait_condition(k8s, "jiaotong", "dispatch", "True")
    assert obj["status"]["backend"]["clientId"] == "jiaotong.dispatch"
    secret = secret_data(k8s, "jiaotong", "dispatch-connection")
    assert secret is not None and secret["client_id"] == "jiaotong.dispatch" and secret["client_secret"]
    assert "client_secret" not in json.dumps(obj["status"])

    status, body = grant(secret)
    assert status == 200, body
    claims = verified_claims(body["access_token"], secret["jwks_uri"])
    assert claims["iss"] == secret["issuer"] == f"{keycloak.url}/realms/city"
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "jiaotong.dispatch" in aud and claims["azp"] == "jiaotong.dispatch"
    assert claims["client_department"] == "jiaotong" and claims["groups"] == ["jiaotong"]
    assert "department" not in claims, "a claim named department would read as the person's department"
    assert roles_of(claims) == {"jiaotong:viewer", "jiaotong:editor"}
    assert claims["exp"] - claims["iat"] == 300  # the plan's default accessTokenLifespan, 5m

    head, _, signature = body["access_token"].split(".")
    forged = (
        base64.urlsafe_b64encode(
            json.dumps({**claims, "realm_access": {"roles": ["weijian:admin"]}}).encode()
        )
        .decode()
        .rstrip("=")
    )
    with pytest.raises(InvalidSignature):
        verified_claims(f"{head}.{forged}.{signature}", secret["jwks_uri"])

    # The operator's own probe works with the same Secret, and never goes where the Secret says: a tampered
    # token endpoint (SSRF) is not where the probe connects.
    request = Request("jiaotong", "dispatch", obj["metadata"]["uid"], "jiaotong", obj["spec"], {})
    tampered = {**secret, "token_endpoint": "http://169.254.169.254/latest/meta-data", "issuer": "evil"}

    async def probe(driver: IdentityDriver) -> None:
        await driver.probe(request, tampered)

    admin(keycloak, probe)


def test_a_department_cannot_obtain_another_departments_roles(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, keycloak: KeycloakServer
) -> None:
    testing.apply(
        cluster,
        [
            identity_client("weijian", "records", roles=["admin"]),
            identity_client("jiaotong", "signals", roles=["viewer"]),
        ],
    )
    wait_condition(k8s, "weijian", "records", "True")
    wait_condition(k8s, "jiaotong", "signals", "True")
    weijian = secret_data(k8s, "weijian", "records-connection")
    jiaotong = secret_data(k8s, "jiaotong", "signals-connection")
    assert weijian and jiaotong
    status, body = grant(weijian)
    weijian_claims = verified_claims(body["access_token"], weijian["jwks_uri"])
    assert roles_of(weijian_claims) == {"weijian:admin"} and weijian_claims["groups"] == ["weijian"]

    # Asking for the other department's role as a scope gets nothing more.
    status, body = http(
        jiaotong["token_endpoint"],
        {
            "grant_type": "client_credentials",
            "client_id": jiaotong["client_id"],
            "client_secret": jiaotong["client_secret"],
            "scope": "weijian:admin",
        },
    )
    claims = verified_claims(body["access_token"], jiaotong["jwks_uri"]) if status == 200 else {}
    assert not any(r.startswith("weijian:") for r in roles_of(claims))

    # Even an admin's mistake (weijian's role granted to jiaotong's service account out of band) does not
    # reach jiaotong's tokens (its scope carries jiaotong's roles only), and the operator takes it back.
    async def tamper(driver: IdentityDriver) -> None:
        found = await driver.admin.call(
            "GET", "/realms/city/clients", params={"clientId": "jiaotong.signals"}
        )
        user = await driver.admin.call("GET", f"/realms/city/clients/{found[0]['id']}/service-account-user")
        role = await driver.admin.call("GET", "/realms/city/roles/weijian:admin")
        await driver.admin.call(
            "POST",
            f"/realms/city/users/{user['id']}/role-mappings/realm",
            [{"id": role["id"], "name": role["name"]}],
        )

    admin(keycloak, tamper)
    status, body = grant(jiaotong)
    assert status == 200
    assert roles_of(verified_claims(body["access_token"], jiaotong["jwks_uri"])) == {"jiaotong:viewer"}

    async def held(driver: IdentityDriver) -> set[str]:
        found = await driver.admin.call(
            "GET", "/realms/city/clients", params={"clientId": "jiaotong.signals"}
        )
        user = await driver.admin.call("GET", f"/realms/city/clients/{found[0]['id']}/service-account-user")
        return {
            r["name"]
            for r in await driver.admin.call("GET", f"/realms/city/users/{user['id']}/role-mappings/realm")
        }

    wait_for(lambda: "weijian:admin" not in admin(keycloak, held), 30, "drift repair to revoke weijian:admin")


def test_update_changes_the_client_in_place(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path
) -> None:
    before = wait_condition(k8s, "jiaotong", "dispatch", "True")
    old_secret = secret_data(k8s, "jiaotong", "dispatch-connection")
    testing.apply(
        cluster,
        [
            identity_client(
                "jiaotong",
                "dispatch",
                roles=["viewer"],
                scopes=["email"],
                redirectUris=["https://dispatch.example.gov/cb"],
                limits={"accessTokenLifespan": "10m"},
            )
        ],
    )
    after = wait_condition(k8s, "jiaotong", "dispatch", "True")
    assert after["status"]["backend"]["id"] == before["status"]["backend"]["id"]
    secret = secret_data(k8s, "jiaotong", "dispatch-connection")
    assert secret and old_secret and secret["client_secret"] == old_secret["client_secret"]
    _, body = grant(secret)
    claims = verified_claims(body["access_token"], secret["jwks_uri"])
    assert roles_of(claims) == {"jiaotong:viewer"}
    assert claims["exp"] - claims["iat"] == 600


def test_bad_values_are_named(operator: OperatorProcess, k8s: client.ApiClient, cluster: Path) -> None:
    testing.apply(
        cluster,
        [
            identity_client("jiaotong", "bad-roles", roles=["viewer", "chief"]),
            identity_client("jiaotong", "bad-scopes", scopes=["email", "telepathy"]),
            identity_client("jiaotong", "too-long", limits={"accessTokenLifespan": "2h"}),
        ],
    )
    ready = condition(wait_condition(k8s, "jiaotong", "bad-roles", "False", "InvalidRoles"), "Ready")
    assert "'chief'" in ready["message"] and "viewer, editor" in ready["message"]
    ready = condition(wait_condition(k8s, "jiaotong", "bad-scopes", "False", "UnknownScope"), "Ready")
    assert "'telepathy'" in ready["message"] and "email" in ready["message"]
    ready = condition(wait_condition(k8s, "jiaotong", "too-long", "False", "OverPlanLimits"), "Ready")
    assert "accessTokenLifespan=2h" in ready["message"]
    testing.kubectl(
        cluster, "delete", "-n", "jiaotong", "identityclient", "bad-roles", "bad-scopes", "too-long"
    )


def test_public_client_has_no_secret(operator: OperatorProcess, k8s: client.ApiClient, cluster: Path) -> None:
    testing.apply(
        cluster,
        [identity_client("weijian", "portal", type="public", redirectUris=["http://localhost:3000/cb"])],
    )
    wait_condition(k8s, "weijian", "portal", "True")
    secret = secret_data(k8s, "weijian", "portal-connection")
    assert secret and "client_secret" not in secret
    status, body = grant(secret)
    assert status in (400, 401), body  # a public client cannot use the client-credentials grant
    status, discovery = http(secret["discovery_url"])
    assert status == 200 and discovery["issuer"] == secret["issuer"]


def test_client_deleted_out_of_band_is_recreated(
    operator: OperatorProcess, k8s: client.ApiClient, keycloak: KeycloakServer
) -> None:
    async def remove(driver: IdentityDriver) -> None:
        found = await driver.admin.call("GET", "/realms/city/clients", params={"clientId": "weijian.records"})
        await driver.admin.call("DELETE", f"/realms/city/clients/{found[0]['id']}")

    old = secret_data(k8s, "weijian", "records-connection")
    assert old
    admin(keycloak, remove)

    def works() -> dict[str, str] | None:
        secret = secret_data(k8s, "weijian", "records-connection")
        return secret if secret and grant(secret)[0] == 200 else None

    wait_for(works, 60, "the operator to recreate weijian.records and rewrite its Secret")
    assert grant(old)[0] == 401  # Keycloak made a new secret; the Secret was rewritten with it


def test_realm_deleted_out_of_band_is_recreated_with_its_clients(
    operator: OperatorProcess, k8s: client.ApiClient, keycloak: KeycloakServer
) -> None:
    async def drop_realm(driver: IdentityDriver) -> None:
        await driver.admin.call("DELETE", "/realms/city")

    admin(keycloak, drop_realm)

    # Every confidential client of the module is recreated (each on its own drift check), with a new secret
    # written to its Secret.
    clients = (("jiaotong", "dispatch"), ("jiaotong", "signals"), ("weijian", "records"))

    def works() -> bool:
        secrets = [secret_data(k8s, ns, f"{name}-connection") for ns, name in clients]
        return all(s and grant(s)[0] == 200 for s in secrets)

    wait_for(works, 90, "the operator to recreate the realm and its clients")
    secret = secret_data(k8s, "jiaotong", "dispatch-connection")
    assert secret
    _, body = grant(secret)
    claims = verified_claims(body["access_token"], secret["jwks_uri"])
    assert roles_of(claims) == {"jiaotong:viewer"} and claims["groups"] == ["jiaotong"]


def test_deleting_the_request_revokes_the_credentials(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path
) -> None:
    secret = secret_data(k8s, "jiaotong", "signals-connection")
    assert secret and grant(secret)[0] == 200
    testing.kubectl(cluster, "delete", "-n", "jiaotong", "identityclient", "signals", "--wait=false")
    wait_for(lambda: grant(secret)[0] != 200, 30, "the client's credentials to stop working")
    status, body = grant(secret)
    assert status == 401 and body.get("error") == "invalid_client", body
    wait_for(lambda: get(k8s, "jiaotong", "signals") is None, 90, "the request to be gone")
    assert secret_data(k8s, "jiaotong", "signals-connection") is None


def test_provider_down_gives_retry_then_ready(
    operator: OperatorProcess, k8s: client.ApiClient, cluster: Path, keycloak: KeycloakServer
) -> None:
    keycloak.stop()
    try:
        testing.apply(cluster, [identity_client("weijian", "while-down", roles=["viewer"])])
        obj = wait_condition(k8s, "weijian", "while-down", "False", "BackendUnavailable", timeout=60)
        message = condition(obj, "Ready")["message"]
        assert "cannot reach Keycloak" in message and "retrying in" in message
        assert operator.alive()
    finally:
        keycloak.start()
    wait_condition(k8s, "weijian", "while-down", "True", timeout=120)
    secret = secret_data(k8s, "weijian", "while-down-connection")
    assert secret and grant(secret)[0] == 200
