"""The few Kubernetes writes the operator makes itself: the connection Secret of each request.

Uses the official client in worker threads (kopf owns the watch streams and the status patches).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

MANAGED_BY = {"app.kubernetes.io/managed-by": "cityhub-operator"}
log = logging.getLogger("cityhub_operator")
T = TypeVar("T")


class SecretConflict(Exception):
    """A Secret of the wanted name exists and belongs to someone else."""


def api_client(connections: int | None = None) -> client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG (or ~/.kube/config). `connections`: the size of
    its connection pool (urllib3's default of 4 would make every thread beyond the fourth reconnect)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    if connections:
        configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


class Secrets:
    def __init__(
        self,
        api: client.ApiClient | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        writers: int = 0,
    ) -> None:
        writers = writers or min(32, (os.cpu_count() or 1) + 4)  # 0: asyncio's default pool size
        self.core = client.CoreV1Api(api or api_client(connections=writers))
        self.timeout = timeout
        """(connect, read) seconds per call: a call on a dead connection fails (and the reconcile is retried)
        instead of holding its worker thread, and the request's reconcile, for ever."""
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="secrets")
        """The client is synchronous: its calls run here, not in asyncio's small default pool, which kopf and
        the probes share (CITYHUB_API_WRITERS)."""

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call, *args)

    async def apply(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        owner: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> bool:
        """Create or update the Secret, owned by `owner`; returns whether anything changed."""
        return await self._run(self._apply, namespace, name, _encode(data), owner, dict(labels))

    async def delete(self, namespace: str, name: str, owner_uid: str) -> None:
        """Delete the Secret if it is the owner's; a missing one, or one the operator may no longer touch
        (its namespace is being deleted), is fine: the garbage collector follows the owner reference."""
        await self._run(self._delete, namespace, name, owner_uid)

    def _apply(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        owner: Mapping[str, Any],
        labels: dict[str, str],
    ) -> bool:
        meta = owner["metadata"]
        reference = client.V1OwnerReference(
            api_version=owner["apiVersion"],
            kind=owner["kind"],
            name=meta["name"],
            uid=meta["uid"],
            controller=True,
            block_owner_deletion=True,
        )
        labels = {**labels, **MANAGED_BY}
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels=labels, owner_references=[reference]
            ),
            type="Opaque",
            data=data,
        )
        # A request never provisioned has no Secret yet (bar a name clash, found by the 409): creating first
        # makes one API call of the two (read, then create) each new request used to take.
        create_first = not (owner.get("status") or {}).get("connectionSecret")
        for _ in range(3):
            if create_first:
                create_first = False
                try:
                    self.core.create_namespaced_secret(namespace, body, _request_timeout=self.timeout)
                    return True
                except ApiException as e:
                    if e.status != 409:
                        raise
            try:
                existing = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
            except ApiException as e:
                if e.status != 404:
                    raise
                try:
                    self.core.create_namespaced_secret(namespace, body, _request_timeout=self.timeout)
                    return True
                except ApiException as e2:
                    if e2.status == 409:
                        continue
                    raise
            owners = existing.metadata.owner_references or []
            if not any(o.uid == meta["uid"] for o in owners):
                raise SecretConflict(
                    f"Secret {namespace}/{name} exists and does not belong to {owner['kind']} "
                    f"{meta['name']}: set spec.secretName to a free name, or delete that Secret"
                )
            current_labels = existing.metadata.labels or {}
            if (existing.data or {}) == data and all(current_labels.get(k) == v for k, v in labels.items()):
                return False
            body.metadata.resource_version = existing.metadata.resource_version
            try:
                self.core.replace_namespaced_secret(name, namespace, body, _request_timeout=self.timeout)
                return True
            except ApiException as e:
                if e.status != 409:
                    raise
        raise RuntimeError(f"Secret {namespace}/{name}: kept conflicting with concurrent writers")

    def _delete(self, namespace: str, name: str, owner_uid: str) -> None:
        # 403 counts as done: the operator's Secret RoleBinding goes first when a department namespace is
        # deleted, and a delete handler that kept failing would hold the request's finalizer, and with it the
        # namespace, in Terminating for ever. Nothing is left behind: the Secret is owned by the request
        # (`_apply` sets the owner reference), so the garbage collector deletes it with the request.
        try:
            existing = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.timeout)
            if not any(o.uid == owner_uid for o in existing.metadata.owner_references or []):
                return  # not ours: leave it
            self.core.delete_namespaced_secret(name, namespace, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status == 403:
                log.info(
                    "Secret %s/%s: no longer permitted (namespace being deleted?); its owner reference "
                    "lets the garbage collector delete it",
                    namespace,
                    name,
                )
            elif e.status != 404:
                raise
