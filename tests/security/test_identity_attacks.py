"""Attacks on identity's data path: department A, holding only its own Secrets (a confidential client's
client_id and client_secret, a public client's client_id), against department B, on a real Keycloak
(component_types/identity/fixtures.py) with the real driver.

Each attack asserts the refusal and that B still works afterwards (`b_still_works`: B's client-credentials
grant yields a token, signed by the realm, carrying B's department and exactly B's roles).

    roles        A's grant asking for B's roles, scopes, audience, resource; A's secret with B's client_id
    exchange     token exchange of A's token for B's client, impersonation of B's service account
    redirects    A's public client and an authorization request with open-redirect, look-alike host,
                 userinfo@host, encoded, path-walking, scheme and port tricks; wildcard registration
    admin        A's token on the admin REST API (B's client, its secret, users, impersonation, A's own
                 client's scope), on the master realm; dynamic client registration
    revocation   a deleted client's secret, refresh token and access token (userinfo, introspection)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from cityhub_operator.driver import PermanentBackendError, Request

from component_types.identity import people
from component_types.identity.driver.identity_driver import IdentityDriver
from component_types.identity.driver.settings import IdentitySettings
from component_types.identity.local import KeycloakServer

pytestmark = pytest.mark.integration
A, B = "dept-a", "dept-b"
HOST = "portal.dept-a.example.gov"
PORTAL = f"https://{HOST}/cb"
T = TypeVar("T")


def client(department: str, name: str, **spec: Any) -> Request:
    return Request(
        department,
        name,
        f"uid-{department}-{name}",
        department,
        spec,
        {"accessTokenLifespan": 300, "sessionMaxLifespan": 3600},
        plan="standard",
        offering="identity",
    )


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: tuple[str, ...] = ()
    """name=value of every Set-Cookie (Keycloak's are Secure, which a cookie jar keeps off plain HTTP)."""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return {}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def call(
    url: str,
    form: dict[str, str] | None = None,
    *,
    method: str | None = None,
    token: str = "",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP call that follows no redirect; a form is urlencoded, a body sent as JSON."""
    data, head = None, dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    elif body is not None:
        data, head["Content-Type"] = json.dumps(body).encode(), "application/json"
    if token:
        head["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=head)
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=15) as resp:
            return reply_of(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        return reply_of(e.code, e.headers, e.read())


def reply_of(status: int, headers: Any, body: bytes) -> Reply:
    cookies = tuple(c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or [])
    return Reply(status, {k.lower(): v for k, v in headers.items()}, body, cookies)


def granting(client_id: str, secret: dict[str, str]) -> dict[str, str]:
    """A client-credentials grant's form: `client_id` with the secret of `secret` (a Secret's data)."""
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret["client_secret"],
    }


def claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def roles_of(token_claims: dict[str, Any]) -> set[str]:
    return set((token_claims.get("realm_access") or {}).get("roles") or [])


def audience(token_claims: dict[str, Any]) -> set[str]:
    aud = token_claims.get("aud") or []
    return {aud} if isinstance(aud, str) else set(aud)


@dataclass
class City:
    keycloak: KeycloakServer
    secrets: dict[str, dict[str, str]]

    def run(self, body: Callable[[IdentityDriver], Awaitable[T]]) -> T:
        async def main() -> T:
            driver = IdentityDriver(IdentitySettings.from_env(self.keycloak.operator_env()))
            try:
                return await body(driver)
            finally:
                await driver.close()

        return asyncio.run(main())

    def ensure(self, req: Request) -> dict[str, str]:
        result = self.run(lambda d: d.ensure(req))
        self.secrets[req.key] = {**result.endpoints, **result.credentials}
        return self.secrets[req.key]

    def grant(self, key: str, **extra: str) -> Reply:
        s = self.secrets[key]
        form = {"grant_type": "client_credentials", "client_id": s["client_id"], **extra}
        form.setdefault("client_secret", s.get("client_secret", ""))
        return call(s["token_endpoint"], form)

    @property
    def a(self) -> dict[str, str]:
        return self.secrets[f"{A}/app"]

    @property
    def b(self) -> dict[str, str]:
        return self.secrets[f"{B}/records"]

    def a_token(self) -> str:
        reply = self.grant(f"{A}/app")
        assert reply.status == 200, reply
        return str(reply.json()["access_token"])


@pytest.fixture(scope="module")
def city(keycloak: KeycloakServer) -> Iterator[City]:
    c = City(keycloak, {})
    c.ensure(client(A, "app", roles=["viewer"]))
    c.ensure(client(A, "portal", type="public", redirectUris=[PORTAL]))
    c.ensure(client(B, "records", roles=["admin", "editor"]))
    env = keycloak.operator_env()
    people.ensure_sign_in(env, [A, B])
    people.add_person(env, "b-clerk", "clerk-password-0123", B, "admin")
    yield c


def b_still_works(city: City) -> None:
    """B's grant yields B's token: B's department, B's roles exactly, B's audience."""
    reply = city.grant(f"{B}/records")
    assert reply.status == 200, reply
    got = claims(reply.json()["access_token"])
    assert got["client_department"] == B and got["groups"] == [B]
    assert roles_of(got) == {f"{B}:admin", f"{B}:editor"}
    assert f"{B}.records" in audience(got) and got["azp"] == f"{B}.records"


# -- tokens ------------------------------------------------------------------------------------------


def test_as_grant_never_carries_bs_roles_or_audience(city: City) -> None:
    asks = [
        {"scope": f"{B}:admin"},
        {"scope": f"openid roles {B}:admin {B}:editor"},
        {"audience": f"{B}.records"},
        {"resource": f"{B}.records"},
        {"claims": json.dumps({"access_token": {"realm_access": {"value": f"{B}:admin"}}})},
        {"scope": "openid", "client_department": B},
    ]
    for extra in asks:
        reply = city.grant(f"{A}/app", **extra)
        if reply.status != 200:
            assert reply.status in (400, 401), (extra, reply)
            continue
        got = claims(reply.json()["access_token"])
        assert roles_of(got) & {f"{B}:admin", f"{B}:editor"} == set(), (extra, got)
        assert f"{B}.records" not in audience(got) and got["client_department"] == A, (extra, got)
        assert got["groups"] == [A]
    # A's public client has no secret to grant with.
    public = call(city.a["token_endpoint"], {"grant_type": "client_credentials", "client_id": f"{A}.portal"})
    assert public.status in (400, 401) and "access_token" not in public.json(), public
    # A's secret with B's client_id, in the form and in the Authorization header; both ids at once.
    wrong = city.grant(f"{A}/app", client_id=f"{B}.records")
    assert wrong.status == 401 and wrong.json()["error"] in ("invalid_client", "unauthorized_client"), wrong
    basic = base64.b64encode(f"{B}.records:{city.a['client_secret']}".encode()).decode()
    reply = call(
        city.b["token_endpoint"],
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert reply.status == 401, reply
    reply = call(
        city.b["token_endpoint"], granting(f"{A}.app", city.a), headers={"Authorization": f"Basic {basic}"}
    )
    assert reply.status in (400, 401) or B not in json.dumps(claims(reply.json()["access_token"])), reply
    b_still_works(city)


def test_token_exchange_and_impersonation_of_b_are_refused(city: City) -> None:
    token = city.a_token()
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    access = "urn:ietf:params:oauth:token-type:access_token"
    for extra in (
        {"audience": f"{B}.records"},
        {"requested_subject": f"service-account-{B}.records"},
        {"requested_subject": "b-clerk"},
        {
            "audience": f"{B}.records",
            "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token",
        },
    ):
        form = {
            "grant_type": exchange,
            "client_id": f"{A}.app",
            "client_secret": city.a["client_secret"],
            "subject_token": token,
            "subject_token_type": access,
            **extra,
        }
        reply = call(city.a["token_endpoint"], form)
        assert reply.status in (400, 401, 403), (extra, reply)
        assert "access_token" not in reply.json(), (extra, reply)
    # B's token endpoint, A's token as the subject, no client authentication at all.
    reply = call(
        city.b["token_endpoint"],
        {
            "grant_type": exchange,
            "subject_token": token,
            "subject_token_type": access,
            "client_id": f"{B}.records",
        },
    )
    assert reply.status in (400, 401, 403) and "access_token" not in reply.json(), reply
    b_still_works(city)


# -- redirects ------------------------------------------------------------------------------------

EVIL = "evil.example.com"
REDIRECTS = [
    *(f"https://{EVIL}/cb", f"https://{HOST}.{EVIL}/cb", f"https://{HOST}@{EVIL}/cb"),
    *(f"https://{EVIL}@{HOST}/cb", f"https:/{EVIL}/cb", "data:text/html,<script>x</script>"),
    *(f"https://{HOST}%40{EVIL}/cb", f"https://{HOST}%2f@{EVIL}/cb", f"https://{HOST}\\@{EVIL}/cb"),
    *(f"{PORTAL}/../../{EVIL}", f"{PORTAL}%2f..%2f..%2f{EVIL}", f"{PORTAL}/extra?next=https://{EVIL}"),
    *(f"{PORTAL}x", f"https://{HOST}:8443/cb", f"http://{HOST}/cb", PORTAL.upper(), f"//{EVIL}/cb"),
    f"javascript:alert(document.cookie)//{HOST}/cb",
    *(f"https://{HOST}%00.{EVIL}/cb", f"{PORTAL}#@{EVIL}", "https://records.dept-b.example.gov/cb"),
]


def authorize(endpoint: str, client_id: str, redirect_uri: str, **extra: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = dict(client_id=client_id, redirect_uri=redirect_uri, response_type="code", scope="openid")
    query |= {"state": "s", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return f"{endpoint}?{urllib.parse.urlencode(query)}"


def test_redirect_uri_tricks_on_as_public_client_are_refused(city: City) -> None:
    portal = city.secrets[f"{A}/portal"]
    for uri in REDIRECTS:
        reply = call(authorize(portal["authorization_endpoint"], f"{A}.portal", uri))
        location = reply.headers.get("location", "")
        assert reply.status == 400, (uri, reply.status, location)
        assert EVIL not in location and "code=" not in location, (uri, location)
        assert b"Invalid parameter: redirect_uri" in reply.body or b"redirect_uri" in reply.body, uri
    # The registered URI gets the login page; without PKCE the request goes back to it as an error (a
    # code intercepted on the way is useless without the verifier); response modes move nothing elsewhere.
    assert call(authorize(portal["authorization_endpoint"], f"{A}.portal", PORTAL)).status == 200
    no_pkce = authorize(portal["authorization_endpoint"], f"{A}.portal", PORTAL, code_challenge="")
    reply = call(no_pkce.replace("&code_challenge_method=S256", ""))
    assert reply.status == 302 and reply.headers["location"].startswith(f"{PORTAL}?error=invalid_request")
    for mode, kind in (("form_post", "code"), ("query", "token"), ("fragment", "code token")):
        evil = f"https://{EVIL}/cb"
        reply = call(authorize(portal["authorization_endpoint"], f"{A}.portal", evil, response_mode=mode))
        assert reply.status == 400 and EVIL not in reply.headers.get("location", ""), (mode, reply)
        reply = call(authorize(portal["authorization_endpoint"], f"{A}.portal", evil, response_type=kind))
        assert reply.status == 400 and EVIL not in reply.headers.get("location", ""), (kind, reply)
    # Logout may not send people elsewhere either.
    logout = urllib.parse.urlencode(
        {"client_id": f"{A}.portal", "post_logout_redirect_uri": f"https://{EVIL}"}
    )
    reply = call(f"{portal['end_session_endpoint']}?{logout}")
    assert reply.status == 400 and EVIL not in reply.headers.get("location", ""), reply
    # Registering a wildcard (or a look-alike pattern) is refused by the driver, naming the field.
    for uri in ("https://*", "https://*.example.gov/cb", f"https://{HOST}/*", "https://a#@b"):
        with pytest.raises(PermanentBackendError) as refusal:
            city.ensure(client(A, "wild", type="public", redirectUris=[uri]))
        assert refusal.value.reason == "InvalidRedirectUri" and "spec.redirectUris[0]" in str(refusal.value)
    b_still_works(city)


# -- the admin API ------------------------------------------------------------------------------------


def test_as_token_opens_no_admin_api_and_no_registration(city: City) -> None:
    token, base = city.a_token(), city.keycloak.url
    b_id = city.run(lambda d: d._find_client(client(B, "records")))["id"]
    a_id = city.run(lambda d: d._find_client(client(A, "app")))["id"]
    admin = f"{base}/admin/realms/city"
    reads = ["/clients", f"/clients/{b_id}", f"/clients/{b_id}/client-secret", "/users", "/roles", ""]
    reads += ["/users?username=b-clerk", "/../master", "/%2e%2e/master/clients"]
    for method, path, body in [
        *(("GET", path, None) for path in reads),
        *(("POST", f"/clients/{b_id}/client-secret", {}), ("DELETE", f"/clients/{b_id}", None)),
        *(
            ("PUT", f"/clients/{a_id}", {"fullScopeAllowed": True}),
            ("POST", f"/users/{b_id}/impersonation", {}),
        ),
        ("POST", f"/clients/{a_id}/scope-mappings/realm", [{"name": f"{B}:admin"}]),
        ("POST", "/clients", {"clientId": "sneaky", "fullScopeAllowed": True}),
    ]:
        reply = call(f"{admin}{path}", method=method, token=token, body=body)
        assert reply.status in (401, 403, 404), (method, path, reply)
        assert b"client-secret" not in reply.body and b'"value"' not in reply.body, (path, reply.body[:200])
    users = call(f"{admin}/users?username=b-clerk", token=token)
    assert users.status == 403, users
    assert call(f"{base}/admin/realms/master/clients", token=token).status in (401, 403)
    # A's credentials are unknown in the master realm.
    master = call(f"{base}/realms/master/protocol/openid-connect/token", granting(f"{A}.app", city.a))
    assert master.status == 401, master
    # Dynamic client registration: anonymous, with A's token, and reading B's registration.
    registration = f"{base}/realms/city/clients-registrations"
    new = {"clientId": "rogue", "redirectUris": [f"https://{EVIL}/cb"], "fullScopeAllowed": True}
    for path, who in (
        ("/default", ""),
        ("/default", token),
        ("/openid-connect", ""),
        ("/openid-connect", token),
    ):
        body = new if "default" in path else {"redirect_uris": [f"https://{EVIL}/cb"], "client_name": "rogue"}
        reply = call(f"{registration}{path}", token=who, body=body)
        assert reply.status in (401, 403), (path, bool(who), reply)
    reply = call(f"{registration}/default/{B}.records", token=token)
    assert reply.status in (401, 403) and b"secret" not in reply.body, reply
    assert city.run(lambda d: d._find_client(client(B, "rogue"))) is None
    b_still_works(city)


# -- revocation -----------------------------------------------------------------------------------


def sign_in(endpoints: dict[str, str], client_id: str, username: str, password: str) -> dict[str, Any]:
    """A person's code flow through Keycloak's login form (PKCE); returns the token response."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    url = authorize(endpoints["authorization_endpoint"], client_id, PORTAL, code_challenge=challenge)
    page = call(url)
    assert page.status == 200, page
    match = re.search(rb'action="([^"]+)"', page.body)
    assert match, page.body[:500]
    action = match.group(1).decode().replace("&amp;", "&")
    cookie = {"Cookie": "; ".join(page.cookies)}
    done = call(action, {"username": username, "password": password}, headers=cookie)
    assert done.status == 302, done
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(done.headers["location"]).query)["code"][0]
    form = dict(grant_type="authorization_code", client_id=client_id, code=code, redirect_uri=PORTAL)
    tokens = call(endpoints["token_endpoint"], {**form, "code_verifier": verifier})
    assert tokens.status == 200, tokens
    return dict(tokens.json())


def test_a_deleted_clients_secret_and_tokens_stop_working(city: City) -> None:
    app = client(A, "temp", roles=["viewer"])
    portal = client(A, "temp-portal", type="public", redirectUris=[PORTAL])
    app_secret, portal_secret = city.ensure(app), city.ensure(portal)
    token = city.grant(app.key).json()["access_token"]
    # B's person signs in to A's portal: the token speaks for A's client, not for B's roles.
    person = sign_in(portal_secret, f"{A}.temp-portal", "b-clerk", "clerk-password-0123")
    got = claims(person["access_token"])
    assert got["client_department"] == A and not roles_of(got) & {f"{B}:admin", f"{B}:editor"}, got
    refresh = person["refresh_token"]
    stolen = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": f"{B}.records"}
    reply = call(city.b["token_endpoint"], {**stolen, "client_secret": city.b["client_secret"]})
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant", reply  # bound to A's client
    assert call(app_secret["userinfo_endpoint"], token=person["access_token"]).status == 200
    for req in (app, portal):
        city.run(lambda d, req=req: d.delete(req))
    assert city.grant(app.key).status == 401
    reply = call(
        portal_secret["token_endpoint"],
        {"grant_type": "refresh_token", "client_id": f"{A}.temp-portal", "refresh_token": refresh},
    )
    assert reply.status in (400, 401) and "access_token" not in reply.json(), reply
    assert call(app_secret["userinfo_endpoint"], token=person["access_token"]).status == 401
    assert call(app_secret["userinfo_endpoint"], token=token).status in (401, 403)
    # Introspection, asked by B's client, says the deleted client's tokens are no longer active.
    for old in (token, person["access_token"], refresh):
        reply = call(
            city.b["introspection_endpoint"],
            {"token": old, "client_id": f"{B}.records", "client_secret": city.b["client_secret"]},
        )
        assert reply.status == 200 and reply.json().get("active") is False, reply
    # Made again (a new uid): a new secret; the old one stays refused.
    again = city.ensure(dataclasses.replace(app, uid="uid-2"))
    assert again["client_secret"] != app_secret["client_secret"]
    assert call(app_secret["token_endpoint"], granting(f"{A}.temp", app_secret)).status == 401
    b_still_works(city)


def test_the_stack_of_attacks_left_b_whole(city: City) -> None:
    b_still_works(city)
    seen = city.run(lambda d: d.observe(client(B, "records", roles=["admin", "editor"])))
    assert seen.in_sync, seen.drift
