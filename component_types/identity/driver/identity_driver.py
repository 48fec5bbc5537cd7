"""IdentityDriver: IdentityClient requests as OIDC clients on the city's Keycloak.

How an IdentityClient maps onto Keycloak is described in model.py; this module does the I/O through the
admin client (admin.py). Every name follows from the request (client_id <department>.<name>, roles
<department>:<role>, group <department>), so a retry or a restarted operator finds the objects it made. The
client secret is Keycloak's own: it is read back on every ensure, so the department's Secret stays the same
while the client lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from cityhub_operator.driver import (
    BackendError,
    Observation,
    PermanentBackendError,
    Request,
    Result,
    TemporaryBackendError,
)

from component_types.identity import keycloak
from component_types.identity.driver import model
from component_types.identity.driver.admin import AdminError, KeycloakAdmin, q
from component_types.identity.driver.probe import TokenProbe
from component_types.identity.driver.settings import IdentitySettings
from component_types.identity.driver.slots import operation

log = logging.getLogger("component_types.identity.driver")

SCOPES_TTL = 30.0
"""Seconds the realm's client-scope list (and whether it has default groups) is reused between ensures (a
scope created meanwhile is found on the next look-up: an unknown name triggers one)."""

REALM_TIMEOUT = 120.0
"""Seconds the realm's creation may take at least: Keycloak makes its default clients, roles, scopes and keys
in one call, measured at 5 to over 10 s on a busy 2-core machine (the per-call timeout's default is 10 s,
and a timed-out creation was retried from the start)."""


class Vanished(TemporaryBackendError):
    """An object the driver knew (the realm, a group, a role, the client) is gone: deleted out of band."""


class IdentityDriver:
    """The Driver (and Prober) for IdentityClient on Keycloak."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.admin = KeycloakAdmin(
            settings.url,
            settings.admin_client_id,
            settings.admin_secret,
            settings.timeout,
            settings.concurrency,
        )
        self._department_locks: dict[str, asyncio.Lock] = {}
        # Ids of realm-wide objects (realm, scopes, departments' groups and roles) found or made by earlier
        # ensures: they save most admin calls when many clients arrive together. Any backend error empties
        # it, so an object deleted out of band is looked up (and recreated) on the retry.
        self._known: dict[tuple[str, str], Any] = {}
        self._scopes_at = 0.0
        self._realm_lock = asyncio.Lock()
        # client_ids this driver made or found: for the others a creation is tried first (one call instead
        # of a look-up and a creation for a new request; a 409 falls back to the look-up).
        self._existing: set[str] = set()
        self._probe = TokenProbe(settings.timeout)

    @property
    def _realm(self) -> str:
        return f"/realms/{q(self.settings.realm)}"

    async def close(self) -> None:
        await self.admin.close()
        await self._probe.close()

    # -- the Driver interface ----------------------------------------------------------------------

    async def ensure(self, request: Request) -> Result:
        # This ensure's calls queue by when it started, so the first of many requests are Ready first.
        with operation():
            for attempt in (0, 1):
                try:
                    return await self._ensure(request)
                except Vanished:
                    # What the cache remembered was deleted out of band (e.g. the whole realm): look
                    # everything up again at once, so a drift repair succeeds in one go.
                    self._known.clear()
                    if attempt:
                        raise
                except BackendError:
                    self._known.clear()
                    raise
        raise AssertionError("unreachable")

    async def _ensure(self, request: Request) -> Result:
        problems = model.spec_problems(request, self.settings.roles)
        if problems:
            reason = "InvalidRedirectUri" if "redirectUris" in problems[0] else "InvalidRoles"
            raise PermanentBackendError(reason, "; ".join(problems))
        await self._ensure_realm()
        scopes = await self._scope_ids(request)
        async with self._department(request.department):
            group_id = await self._ensure_group(request.department)
            roles = [
                await self._ensure_role(request.department, r)
                for r in sorted(request.spec.get("roles") or [])
            ]
        client, created = await self._ensure_client(request, scopes)
        cid = client["id"]
        # The client's own settings, its service account and its secret are separate objects in Keycloak:
        # their calls go out together (a new confidential client waits for 3 calls in a row, not 10).
        steps: list[Awaitable[Any]] = [self._sync_client(cid, request, scopes, roles, created)]
        if model.is_confidential(request):
            steps.append(self._sync_account(cid, request, group_id, roles, created))
            steps.append(self._call("GET", f"/clients/{cid}/client-secret"))
        done = await _together(*steps)
        credentials: dict[str, str] = {}
        if model.is_confidential(request):
            credentials["client_secret"] = done[2]["value"]
        self._existing.add(model.client_id(request))
        return Result(
            endpoints=model.endpoints(self.settings.issuer_base, self.settings.realm, request),
            credentials=credentials,
            backend={
                "clientId": model.client_id(request),
                "id": cid,
                "realm": self.settings.realm,
                "group": request.department,
            },
        )

    async def observe(self, request: Request) -> Observation:
        with operation():
            return await self._observe(request)

    async def delete(self, request: Request) -> None:
        with operation():
            await self._delete(request)

    async def _observe(self, request: Request) -> Observation:
        if await self.admin.get(self._realm) is None:
            return Observation(False, (f"realm {self.settings.realm} is missing",))
        client = await self._find_client(request)
        if client is None:
            return Observation(False, (f"client {model.client_id(request)} is missing",))
        drift: list[str] = []
        want = model.desired_client(request)
        diff = model.client_differences(client, want)
        if diff:
            drift.append(f"client {want['clientId']} differs in {', '.join(diff)}")
        cid = client["id"]
        have_mappers = {
            m["name"]: m for m in await self._call("GET", f"/clients/{cid}/protocol-mappers/models")
        }
        for name, mapper in model.desired_mappers(request).items():
            if name not in have_mappers or model.mapper_differs(have_mappers[name], mapper):
                drift.append(f"protocol mapper {name} is missing or changed")
        want_roles = {model.role_name(request.department, r) for r in request.spec.get("roles") or []}
        mapped = {r["name"] for r in await self._call("GET", f"/clients/{cid}/scope-mappings/realm") or []}
        if mapped != want_roles:
            drift.append(f"client scope carries roles {sorted(mapped)}, wants {sorted(want_roles)}")
        optional = {s["name"] for s in await self._call("GET", f"/clients/{cid}/optional-client-scopes")}
        want_optional = set(request.spec.get("scopes") or []) - set(model.BASE_SCOPES)
        if optional != want_optional:
            drift.append(f"client's optional scopes are {sorted(optional)}, want {sorted(want_optional)}")
        if model.is_confidential(request):
            user = await self._call("GET", f"/clients/{cid}/service-account-user")
            held = {r["name"] for r in await self._call("GET", f"/users/{user['id']}/role-mappings/realm")}
            held = {r for r in held if ":" in r}
            if held != want_roles:
                drift.append(f"service account holds roles {sorted(held)}, wants {sorted(want_roles)}")
            groups = {g["name"] for g in await self._call("GET", f"/users/{user['id']}/groups")}
            if request.department not in groups:
                drift.append(f"service account is not in group {request.department}")
        return Observation(in_sync=not drift, drift=tuple(drift))

    async def _delete(self, request: Request) -> None:
        client = await self._find_client(request)
        if client is None:
            return
        self._existing.discard(client["clientId"])
        owner = (client.get("attributes") or {}).get(model.ATTR_REQUEST)
        if owner not in (None, request.key):
            log.warning("client %s belongs to %s, not %s: kept", client["clientId"], owner, request.key)
            return
        try:
            # Deleting the client removes its service account and sessions: its secret stops working at once.
            await self.admin.call("DELETE", f"{self._realm}/clients/{client['id']}")
        except AdminError as e:
            if e.status != 404:
                raise TemporaryBackendError(
                    f"Keycloak: cannot delete client {client['clientId']}: {e}"
                ) from e

    async def probe(self, request: Request, secret: Mapping[str, str]) -> None:
        """Use the client as the department would (probe.py). Only its credential comes from the Secret:
        where to connect comes from the operator's own settings, so whoever can write the Secret cannot steer
        the operator's traffic (SSRF)."""
        internal = model.endpoints(self.settings.url, self.settings.realm, request)
        expected_issuer = model.issuer(self.settings.issuer_base, self.settings.realm)
        await self._probe.probe(internal, expected_issuer, secret.get("client_secret", ""))

    # -- helpers -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _department(self, department: str) -> AsyncIterator[None]:
        # One department's group and roles are created once even when many of its clients arrive together.
        async with self._department_locks.setdefault(department, asyncio.Lock()):
            yield

    async def _call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """A call under the realm; Keycloak's refusals become PermanentBackendError naming the object."""
        try:
            return await self.admin.call(method, f"{self._realm}{path}", body, params)
        except AdminError as e:
            if e.status == 404:
                # The realm or an object vanished mid-reconcile (deleted out of band): try again.
                raise Vanished(f"Keycloak {method} {path}: not found ({e})") from e
            raise PermanentBackendError("BackendRefused", f"Keycloak refused {method} {path}: {e}") from e

    async def _create(self, path: str, body: Any) -> str | None:
        """POST a new object; returns its id, or None when it already exists (409)."""
        try:
            return await self.admin.call("POST", f"{self._realm}{path}", body)
        except AdminError as e:
            if e.status == 409:
                return None
            if e.status == 404:
                raise Vanished(f"Keycloak: cannot create {path}: the realm is gone ({e})") from e
            raise PermanentBackendError("BackendRefused", f"Keycloak refused creating {path}: {e}") from e

    async def _ensure_realm(self) -> None:
        if ("realm", "") in self._known:
            return
        # One creation at a time: the others wait for it instead of failing on a half-made realm.
        async with self._realm_lock:
            if ("realm", "") in self._known:
                return
            if await self.admin.get(self._realm) is None:
                log.info("creating realm %s", self.settings.realm)
                try:
                    realm = {"realm": self.settings.realm, **keycloak.REALM_DEFAULTS}
                    timeout = max(self.settings.timeout, REALM_TIMEOUT)
                    await self.admin.call("POST", "/realms", realm, timeout=timeout)
                except AdminError as e:
                    if e.status != 409:
                        raise PermanentBackendError(
                            "BackendRefused", f"Keycloak refused the realm: {e}"
                        ) from e
            self._known[("realm", "")] = True

    async def _scope_ids(self, request: Request) -> dict[str, str]:
        """Client scope name → id of the realm's scopes; unknown ones the request names are refused."""
        asked = request.spec.get("scopes") or []
        known: dict[str, str] = self._known.get(("scopes", ""), {})
        if time.monotonic() - self._scopes_at > SCOPES_TTL or any(s not in known for s in asked):
            scopes, defaults = await _together(
                self._call("GET", "/client-scopes"), self._call("GET", "/default-groups")
            )
            known = {s["name"]: s["id"] for s in scopes}
            self._known[("scopes", "")], self._scopes_at = known, time.monotonic()
            self._known[("default-groups", "")] = bool(defaults)
        unknown = [s for s in asked if s not in known]
        if unknown:
            raise PermanentBackendError(
                "UnknownScope",
                f"spec.scopes: {', '.join(repr(s) for s in unknown)} "
                f"{'is not a client scope' if len(unknown) == 1 else 'are not client scopes'} of realm "
                f"{self.settings.realm}; choose from {', '.join(sorted(known))}",
            )
        return known

    async def _ensure_group(self, department: str) -> str:
        if ("group", department) in self._known:
            return str(self._known[("group", department)])
        self._known[("group", department)] = group_id = await self._find_or_make_group(department)
        return group_id

    async def _find_or_make_group(self, department: str) -> str:
        for _ in range(2):
            found = await self._call(
                "GET",
                "/groups",
                params={"search": department, "exact": "true", "briefRepresentation": "true"},
            )
            for group in found or []:
                if group.get("name") == department:
                    return str(group["id"])
            made = await self._create(
                "/groups", {"name": department, "attributes": {model.ATTR_DEPARTMENT: [department]}}
            )
            if made:
                return made
        raise TemporaryBackendError(f"Keycloak: group {department} was created but cannot be found")

    async def _ensure_role(self, department: str, role: str) -> dict[str, Any]:
        name = model.role_name(department, role)
        if ("role", name) in self._known:
            return dict(self._known[("role", name)])
        found = await self.admin.get(f"{self._realm}/roles/{q(name)}")
        if found is None:
            await self._create(
                "/roles",
                {
                    "name": name,
                    "description": f"Department role {role} of {department} (managed by cityhub)",
                    "attributes": {model.ATTR_DEPARTMENT: [department]},
                },
            )
            found = await self._call("GET", f"/roles/{q(name)}")
        self._known[("role", name)] = {"id": found["id"], "name": found["name"]}
        return dict(self._known[("role", name)])

    async def _find_client(self, request: Request) -> dict[str, Any] | None:
        found = await self.admin.get(f"{self._realm}/clients", params={"clientId": model.client_id(request)})
        return next(iter(found or []), None)

    async def _ensure_client(
        self, request: Request, scopes: Mapping[str, str]
    ) -> tuple[dict[str, Any], bool]:
        """The client as Keycloak has it after making it match, and whether it was created just now."""
        want = model.desired_client(request)
        have = None if want["clientId"] not in self._existing else await self._find_client(request)
        if have is None:
            # Scopes and mappers go with the creation: Keycloak would otherwise attach the realm's default
            # scopes, which the later sync removes one call at a time.
            base = [s for s in model.BASE_SCOPES if s in scopes]
            made = await self._create(
                "/clients",
                {
                    **want,
                    "defaultClientScopes": base,
                    "optionalClientScopes": sorted(set(request.spec.get("scopes") or []) - set(base)),
                    "protocolMappers": list(model.desired_mappers(request).values()),
                },
            )
            if made:
                return {**want, "id": made}, True
            # It exists: made by an earlier run of the operator, or meanwhile by another reconcile (409).
            have = await self._find_client(request)
            if have is None:
                raise TemporaryBackendError(f"Keycloak: client {want['clientId']} exists but cannot be found")
        diff = model.client_differences(have, want)
        if diff:
            previous_uid = (have.get("attributes") or {}).get(model.ATTR_UID)
            merged = {**have, **want, "attributes": {**(have.get("attributes") or {}), **want["attributes"]}}
            await self._call("PUT", f"/clients/{have['id']}", merged)
            if previous_uid not in (None, request.uid) and model.is_confidential(request):
                # The client outlived an earlier request of the same name (deletionPolicy Orphan): a new
                # secret, so the earlier request's credentials do not work for this one.
                await self._call("POST", f"/clients/{have['id']}/client-secret")
        return have, False

    async def _ensure_mappers(self, cid: str, request: Request) -> None:
        path = f"/clients/{cid}/protocol-mappers/models"
        have = {m["name"]: m for m in await self._call("GET", path)}
        want = model.desired_mappers(request)
        for name, mapper in want.items():
            if name not in have:
                await self._create(path, mapper)
            elif model.mapper_differs(have[name], mapper):
                await self._call("PUT", f"{path}/{have[name]['id']}", {**mapper, "id": have[name]["id"]})
        for name, mapper in have.items():
            if name.startswith(model.MAPPER_PREFIX) and name not in want:
                await self._call("DELETE", f"{path}/{mapper['id']}")

    async def _ensure_client_scopes(self, cid: str, ids: Mapping[str, str], request: Request) -> None:
        base = {s for s in model.BASE_SCOPES if s in ids}
        wanted = {"default": base, "optional": set(request.spec.get("scopes") or []) - base}
        for kind in ("default", "optional"):
            path = f"/clients/{cid}/{kind}-client-scopes"
            have = {s["name"]: s["id"] for s in await self._call("GET", path)}
            for name in sorted(set(have) - wanted[kind]):
                await self._call("DELETE", f"{path}/{have[name]}")
            for name in sorted(wanted[kind] - set(have)):
                await self._call("PUT", f"{path}/{ids[name]}")

    async def _sync_client(
        self,
        cid: str,
        request: Request,
        scopes: Mapping[str, str],
        roles: list[dict[str, Any]],
        created: bool,
    ) -> None:
        """The client's mappers, scopes and scope mappings (one after another: all change the client)."""
        if not created:  # a new client got its mappers and scopes with its creation
            await self._ensure_mappers(cid, request)
            await self._ensure_client_scopes(cid, scopes, request)
        # A new client maps no realm roles to its scope (full scope off): nothing to read back.
        await self._sync_roles(f"/clients/{cid}/scope-mappings/realm", roles, fresh=created)

    async def _sync_account(
        self, cid: str, request: Request, group_id: str, roles: list[dict[str, Any]], created: bool
    ) -> None:
        """The service account: in the department's group only, holding exactly the client's roles."""
        user = await self._call("GET", f"/clients/{cid}/service-account-user")
        # A new client's account holds only the realm's default role, and is in the realm's default groups
        # (the city's realm has none unless an administrator adds some): nothing to read back then.
        no_defaults = self._known.get(("default-groups", "")) is False
        await _together(
            self._ensure_membership(user["id"], group_id, fresh=created and no_defaults),
            self._sync_roles(f"/users/{user['id']}/role-mappings/realm", roles, fresh=created),
        )

    async def _sync_roles(self, path: str, want: list[dict[str, Any]], *, fresh: bool = False) -> None:
        """Make the realm roles at `path` (a scope mapping or a user's role mapping) exactly the department
        roles wanted; roles without ':' (Keycloak's own defaults) are left alone. `fresh`: the mapping
        belongs to an object made just now, so it holds no department role yet."""
        have = {} if fresh else {r["name"]: r for r in await self._call("GET", path) or []}
        wanted = {r["name"] for r in want}
        extra = [{"id": r["id"], "name": n} for n, r in have.items() if ":" in n and n not in wanted]
        missing = [r for r in want if r["name"] not in have]
        if extra:
            await self._call("DELETE", path, extra)
        if missing:
            await self._call("POST", path, missing)

    async def _ensure_membership(self, user_id: str, group_id: str, *, fresh: bool = False) -> None:
        """`fresh`: the user was made just now in a realm without default groups, so it is in none."""
        groups = [] if fresh else await self._call("GET", f"/users/{user_id}/groups")
        if not any(g["id"] == group_id for g in groups):
            await self._call("PUT", f"/users/{user_id}/groups/{group_id}")
        for g in groups:
            if g["id"] != group_id:
                # A service account speaks for one department only.
                await self._call("DELETE", f"/users/{user_id}/groups/{g['id']}")


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """Await independent steps at once; their results in order. The first failure is raised as itself (not
    as an ExceptionGroup: the operator reads BackendError's kind) after the other steps are cancelled, so
    no call of this ensure is still under way when it ends."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
