"""The identity driver of an operator without an identity provider (CITYHUB_IDENTITY_URL unset)."""

from __future__ import annotations

from cityhub_operator.driver import Observation, PermanentBackendError, Request, Result


class UnconfiguredIdentityDriver:
    """Stands in when CITYHUB_IDENTITY_URL is not set: the operator still serves its other component types,
    and IdentityClient requests say what the platform team has to configure."""

    async def ensure(self, request: Request) -> Result:
        raise PermanentBackendError(
            "BackendNotConfigured",
            "this operator has no identity provider: the platform team sets CITYHUB_IDENTITY_URL and "
            "CITYHUB_IDENTITY_ADMIN_SECRET_FILE (component_types/identity/README.md)",
        )

    async def observe(self, request: Request) -> Observation:
        return Observation(in_sync=True)

    async def delete(self, request: Request) -> None:
        return None  # nothing can have been created without a provider

    async def close(self) -> None:
        return None
