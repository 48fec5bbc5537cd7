"""Sharing a channel (spec.shareWith): the export in the source department's account, an import in each
reader's account, and the bound on what one department can be made to receive.

    export   `channel/<name>` of city.<d>.<name>.> in the source's account, private (an activation is
             required); its description records the readers granted last; a withdrawn reader's activation
             is revoked on it
    import   `<d>/<name>` in the reader's account, mapped to shared.<d>.<name>.>, with an activation signed
             by the source's account, expiring and renewed like the credentials (cityhub_nats.renewal)
    bound    a reader's account holds at most `shares` imports (CITYHUB_NATS_ACCOUNT_IMPORTS), at most
             `shares_per_source` of them from one department: past it the share is refused (TooManyShares)
             naming the reader, so no department can grow another's account JWT until the reader's own
             updates no longer fit in a NATS message. The reader gives no consent per share (there is no
             place for it in the request); the bound is the defence, checked before anything changes and
             again under the reader's lock.
"""

from __future__ import annotations

import time
from typing import Any

from cityhub_operator.driver import PermanentBackendError

from cityhub_nats import jwt
from cityhub_nats.client.accounts import Change, by_name
from cityhub_nats.keys import Keys
from component_types.messaging import naming
from component_types.messaging.driver.settings import DepartmentLimits


def import_entry(
    keys: Keys, department: str, name: str, reader: str, window: tuple[int, int]
) -> dict[str, Any]:
    """The reader's import of a channel, with an activation valid for `window` (issued_at, expires_at)."""
    source = keys.account(department)
    subject = naming.channel_wildcard(department, name)
    issued, expires = window
    token = jwt.activation_jwt(
        source,
        keys.account(reader).public,
        subject,
        naming.import_name(department, name),
        issued_at=issued,
        expires_at=expires,
    )
    return {
        "name": naming.import_name(department, name),
        "subject": subject,
        "account": source.public,
        "token": token,
        "local_subject": naming.shared_subject(department, name),
        "type": "stream",
    }


def export_change(
    keys: Keys, department: str, name: str, readers: set[str], previous: set[str], now: int
) -> Change:
    """The channel's export: present while it has readers, granting exactly `readers`; readers in
    `previous` but no longer granted have their activations revoked at `now`."""

    def change(claims: dict[str, Any]) -> None:
        exports = by_name(claims.get("exports"))
        old = exports.pop(naming.export_name(name), None)
        if readers:
            revoked = dict((old or {}).get("revocations") or {})
            for gone in previous - readers:
                revoked[keys.account(gone).public] = now
            for reader in readers:
                revoked.pop(keys.account(reader).public, None)
            export: dict[str, Any] = {
                "name": naming.export_name(name),
                "subject": naming.channel_wildcard(department, name),
                "type": "stream",
                "token_req": True,
                "description": naming.readers_description(readers),
            }
            if revoked:
                export["revocations"] = revoked
            exports[naming.export_name(name)] = export
        claims["exports"] = list(exports.values())

    return change


def live(imports: list[dict[str, Any]] | None, now: int) -> list[dict[str, Any]]:
    """The imports whose activation has not expired (an expired one delivers nothing: it is dropped, and the
    source's next reconcile brings it back renewed if the share still stands)."""
    out = []
    for entry in imports or []:
        expires = jwt.expiry(entry.get("token", ""))
        if expires is None or expires > now:
            out.append(entry)
    return out


def refusal(
    limits: DepartmentLimits,
    reader: str,
    imports: list[dict[str, Any]] | None,
    entry: dict[str, Any],
    source: str,
    now: int,
) -> PermanentBackendError | None:
    """Why the reader cannot take one more import (None: it can, or it has this one already)."""
    held = by_name(live(imports, now))
    if entry["name"] in held:
        return None
    from_source = sum(1 for i in held.values() if i.get("account") == entry["account"])
    if len(held) >= limits.shares:
        what = f"already receives {len(held)} shared channels, its most (CITYHUB_NATS_ACCOUNT_IMPORTS)"
    elif from_source >= limits.shares_per_source:
        what = (
            f"already receives {from_source} channels from {source}, the most one department may share with "
            "it (CITYHUB_NATS_ACCOUNT_IMPORTS_PER_SOURCE)"
        )
    else:
        return None
    return PermanentBackendError(
        "TooManyShares",
        f"department {reader} {what}: remove {reader} from spec.shareWith, or withdraw another share with it",
    )


def granting(limits: DepartmentLimits, reader: str, entry: dict[str, Any], source: str) -> Change:
    """Add (or renew) the import in the reader's account, within the bound; drops expired imports."""

    def change(claims: dict[str, Any]) -> None:
        now = int(time.time())
        refused = refusal(limits, reader, claims.get("imports"), entry, source, now)
        if refused is not None:
            raise refused  # under the reader's lock: nothing is pushed
        held = by_name(live(claims.get("imports"), now))
        held[entry["name"]] = entry
        claims["imports"] = list(held.values())

    return change
