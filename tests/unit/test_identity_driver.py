"""The identity driver without a provider: what a request means in Keycloak, its checks, its settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cityhub_operator.driver import Driver, PermanentBackendError, Prober, Request

from cityhub_api.registry import DRIVER, component_type
from cityhub_api.settings import SettingError
from component_types.identity.driver import create_driver, model
from component_types.identity.driver.identity_driver import IdentityDriver
from component_types.identity.driver.settings import IdentitySettings
from component_types.identity.driver.unconfigured import UnconfiguredIdentityDriver


def request(name: str = "dispatch", department: str = "jiaotong", **spec: Any) -> Request:
    return Request(
        namespace=department,
        name=name,
        uid="uid-1",
        department=department,
        spec={"offering": "identity", **spec},
        limits={"accessTokenLifespan": 300, "sessionMaxLifespan": 36000},
    )


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://*.example.gov/cb", "wildcard"),
        ("https://app.example.gov/*", "wildcard"),
        ("http://app.example.gov/cb", "plain http for app.example.gov"),
        ("https://app.example.gov/cb#x", "fragment"),
        ("app.example.gov/cb", "absolute https://"),
        ("ftp://app.example.gov/cb", "absolute https://"),
        ("https://app.example.gov:notaport/cb", "not a valid URL"),
        ("https://app.example.gov/a b", "whitespace"),
    ],
)
def test_bad_redirect_uris_say_why(uri: str, problem: str) -> None:
    assert problem in (model.redirect_uri_problem(uri) or "")


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.gov/cb",
        "https://app.example.gov:8443/a?b=c",
        "http://localhost:3000/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
    ],
)
def test_good_redirect_uris_pass(uri: str) -> None:
    assert model.redirect_uri_problem(uri) is None


def test_spec_problems_name_the_uri_and_the_role() -> None:
    problems = model.spec_problems(
        request(
            redirectUris=["https://ok.example.gov/cb", "http://intranet.gov/cb"], roles=["viewer", "chief"]
        ),
        ("viewer", "editor"),
    )
    assert problems[0].startswith("spec.redirectUris[1]: redirect URI http://intranet.gov/cb")
    assert "'chief'" in problems[1] and "viewer, editor" in problems[1]
    assert model.spec_problems(request(type="public"), ("viewer",)) == [
        "spec.redirectUris: a public client needs at least one redirect URI"
    ]


def test_ensure_refuses_bad_input_before_calling_keycloak() -> None:
    # The URL points nowhere: a refusal proves no call was made.
    driver = IdentityDriver(IdentitySettings(url="http://127.0.0.1:9", admin_secret="x" * 16))
    with pytest.raises(PermanentBackendError) as e:
        asyncio.run(driver.ensure(request(redirectUris=["https://*.example.gov/cb"])))
    assert e.value.reason == "InvalidRedirectUri" and "https://*.example.gov/cb" in str(e.value)
    with pytest.raises(PermanentBackendError) as e:
        asyncio.run(driver.ensure(request(roles=["weijian-admin"])))
    assert e.value.reason == "InvalidRoles"


def test_names_follow_from_the_request() -> None:
    r = request(roles=["viewer"])
    assert model.client_id(r) == "jiaotong.dispatch"
    assert model.role_name("jiaotong", "viewer") == "jiaotong:viewer"
    # Request names are DNS labels: the '.' keeps department-name pairs apart.
    assert model.client_id(request("b-c", "a")) != model.client_id(request("c", "a-b"))


def test_confidential_and_public_clients() -> None:
    conf = model.desired_client(request())
    assert conf["serviceAccountsEnabled"] and not conf["publicClient"] and not conf["standardFlowEnabled"]
    assert conf["fullScopeAllowed"] is False and conf["directAccessGrantsEnabled"] is False
    assert conf["attributes"]["access.token.lifespan"] == "300"
    pub = model.desired_client(request(type="public", redirectUris=["https://b.example.gov/cb"]))
    assert pub["publicClient"] and not pub["serviceAccountsEnabled"] and pub["standardFlowEnabled"]
    assert pub["attributes"]["pkce.code.challenge.method"] == "S256"
    assert pub["redirectUris"] == ["https://b.example.gov/cb"]


def test_differences_name_changed_fields_only() -> None:
    want = model.desired_client(request(redirectUris=["https://a.example.gov/cb"]))
    have = {**want, "id": "x", "frontchannelLogout": True, "attributes": {**want["attributes"], "other": "1"}}
    assert model.client_differences(have, want) == []
    changed = {**have, "redirectUris": ["https://evil.example.com/*"], "fullScopeAllowed": True}
    changed["attributes"] = {**have["attributes"], "access.token.lifespan": "86400"}
    assert model.client_differences(changed, want) == [
        "fullScopeAllowed",
        "redirectUris",
        "attributes.access.token.lifespan",
    ]


def test_mappers_put_department_and_audience_in_tokens() -> None:
    mappers = model.desired_mappers(request())
    assert mappers["cityhub-audience"]["config"]["included.client.audience"] == "jiaotong.dispatch"
    assert mappers["cityhub-client-department"]["config"]["claim.value"] == "jiaotong"
    assert not model.mapper_differs(mappers["cityhub-groups"], mappers["cityhub-groups"])
    tampered = {**mappers["cityhub-client-department"], "config": {"claim.value": "weijian"}}
    assert model.mapper_differs(tampered, mappers["cityhub-client-department"])


def test_endpoints_use_the_public_url() -> None:
    out = model.endpoints("https://id.city.gov/", "city", request(roles=["viewer"]))
    assert out["issuer"] == "https://id.city.gov/realms/city"
    assert out["token_endpoint"] == "https://id.city.gov/realms/city/protocol/openid-connect/token"
    assert out["client_id"] == "jiaotong.dispatch" and out["roles"] == "jiaotong:viewer"


def test_settings_from_env(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 24 + "\n")
    s = IdentitySettings.from_env(
        {
            "CITYHUB_IDENTITY_URL": "http://keycloak:8080/",
            "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": str(secret),
            "CITYHUB_IDENTITY_PUBLIC_URL": "https://id.city.gov",
            "CITYHUB_IDENTITY_ROLES": "viewer, dispatcher",
        }
    )
    assert (s.url, s.issuer_base, s.realm, s.roles) == (
        "http://keycloak:8080",
        "https://id.city.gov",
        "city",
        ("viewer", "dispatcher"),
    )
    assert s.admin_secret == "s" * 24 and s.admin_client_id == "cityhub-operator"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CITYHUB_IDENTITY_URL": "keycloak:8080"}, "CITYHUB_IDENTITY_URL"),
        ({"CITYHUB_IDENTITY_URL": "http://k"}, "CITYHUB_IDENTITY_ADMIN_SECRET"),
        (
            {"CITYHUB_IDENTITY_URL": "http://k", "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": "/nonexistent"},
            "CITYHUB_IDENTITY_ADMIN_SECRET_FILE=/nonexistent",
        ),
        (
            {
                "CITYHUB_IDENTITY_URL": "http://k",
                "CITYHUB_IDENTITY_ADMIN_SECRET": "x" * 16,
                "CITYHUB_IDENTITY_REALM": "master",
            },
            "CITYHUB_IDENTITY_REALM",
        ),
        (
            {
                "CITYHUB_IDENTITY_URL": "http://k",
                "CITYHUB_IDENTITY_ADMIN_SECRET": "x" * 16,
                "CITYHUB_IDENTITY_ROLES": "Viewer",
            },
            "CITYHUB_IDENTITY_ROLES",
        ),
        (
            {
                "CITYHUB_IDENTITY_URL": "http://k",
                "CITYHUB_IDENTITY_ADMIN_SECRET": "x" * 16,
                "CITYHUB_IDENTITY_TIMEOUT": "soon",
            },
            "CITYHUB_IDENTITY_TIMEOUT",
        ),
        (
            {
                "CITYHUB_IDENTITY_URL": "http://k",
                "CITYHUB_IDENTITY_ADMIN_SECRET": "x" * 16,
                "CITYHUB_IDENTITY_CONCURRENCY": "0",
            },
            "CITYHUB_IDENTITY_CONCURRENCY",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingError, match=named) as e:
        IdentitySettings.from_env(env)
    assert "needs to" in str(e.value)


def test_without_a_provider_other_components_still_run() -> None:
    driver = create_driver({})
    assert isinstance(driver, UnconfiguredIdentityDriver) and isinstance(driver, Driver)
    with pytest.raises(PermanentBackendError) as e:
        asyncio.run(driver.ensure(request()))
    assert e.value.reason == "BackendNotConfigured" and "CITYHUB_IDENTITY_URL" in str(e.value)
    asyncio.run(driver.delete(request()))


def test_driver_implements_the_interface_and_the_probe() -> None:
    driver = create_driver({"CITYHUB_IDENTITY_URL": "http://k", "CITYHUB_IDENTITY_ADMIN_SECRET": "x" * 16})
    assert isinstance(driver, Driver) and isinstance(driver, Prober)


def test_schema_declares_the_kind_and_limits() -> None:
    ctype = component_type("identity")
    assert (ctype.kind, ctype.short_names) == ("IdentityClient", ("idc",))
    assert ctype.load(DRIVER).create_driver is create_driver
    assert ctype.limits == {"accessTokenLifespan": "duration", "sessionMaxLifespan": "duration"}
