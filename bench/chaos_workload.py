"""The chaos run's requests: N of mixed types over D departments, created in waves, a few deleted later.

The mix (of every 20 requests) and why it suits a 2-core machine running all five backends at once:

    messaging  MessagingChannel  8  a stream and an account-JWT update on nats-server: ~10 ms of backend work;
                                    every fourth shares with the next department (an import in another
                                    account: read-modify-write of two JWTs, the likeliest to duplicate)
    sensing    SensorFleet       4  two streams, a KV rule and a JWT update on the MQTT gateway: ~30 ms
    maps       MapLayer          3  a table with two GiST indexes, a role and catalog rows in PostGIS: ~0.1 s
    identity   IdentityClient    3  a Keycloak client with a service account, group and roles: ~15 admin
                                    calls, ~0.5 s on a JVM that shares the two cores
    inference  InferenceEndpoint 2  a model loaded into the one shared MLServer (in-process, ~5 MB each) and a
                                    route: the heaviest in memory, and a restarted MLServer reloads them all

so the cheap, high-volume types carry the count and the expensive ones stay within what their single local
process absorbs (1000 requests: 400 / 200 / 150 / 150 / 100). Streams and fleets ask for 1Mi, so 50
departments' reservations fit the local nats-servers' stores. One request in 25 of messaging, sensing and
identity cannot be met as written (over the plan's limits; a role the city does not have, which only the
identity driver knows): each must end Ready=False with that reason and leave nothing in its backend. One in
20 of the others is deleted two waves after it was created: it must go away, and so must its objects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from cityhub_api import labels
from cityhub_api.api import GROUP, VERSION

MIX = (("messaging", 8), ("sensing", 4), ("maps", 3), ("identity", 3), ("inference", 2))
"""(component type, requests out of every 20)."""
KINDS = {
    "messaging": ("MessagingChannel", "messagingchannels", "ch"),
    "sensing": ("SensorFleet", "sensorfleets", "fl"),
    "maps": ("MapLayer", "maplayers", "ly"),
    "identity": ("IdentityClient", "identityclients", "cl"),
    "inference": ("InferenceEndpoint", "inferenceendpoints", "ep"),
}
"""type → (kind, plural, name prefix)."""
UNMET = {
    "messaging": "OverPlanLimits",
    "sensing": "OverPlanLimits",
    "identity": "InvalidRoles",
}
"""The reason each deliberately unmeetable request must end with."""
UNMET_EVERY = 25
UNMET_AT = 7
"""The 8th of every 25 (so a short run of a few dozen has one of each too)."""
DELETE_EVERY = 20


@dataclass
class Planned:
    type_name: str
    namespace: str
    name: str
    spec: dict[str, Any]
    wave: int
    expect: str = "ready"
    """ready, or the reason it must end unmet with."""
    delete_wave: int | None = None
    """The wave at which it is deleted (None: kept)."""
    deleted_at: float | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return KINDS[self.type_name][0]

    @property
    def plural(self) -> str:
        return KINDS[self.type_name][1]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self.spec,
        }


def departments(count: int) -> list[str]:
    return [f"chaos-d{i:02d}" for i in range(count)]


def namespace_manifests(names: list[str]) -> list[dict[str, Any]]:
    """The departments' namespaces, labelled as the stack labels a department's."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": n,
                "labels": {labels.TENANT: "department", labels.DEPARTMENT: n},
            },
        }
        for n in names
    ]


def _spec(type_name: str, i: int, namespace: str, share_with: str, unmet: bool) -> dict[str, Any]:
    if type_name == "messaging":
        spec: dict[str, Any] = {"offering": "messaging", "limits": {"maxBytes": "1Mi", "maxAge": "1h"}}
        if unmet:
            spec["limits"]["maxBytes"] = "5Gi"  # the standard plan allows 1Gi
        elif i % 4 == 0 and share_with != namespace:
            spec["shareWith"] = [{"department": share_with, "purpose": "混沌测试"}]
        return spec
    if type_name == "sensing":
        limits: dict[str, Any] = {"maxBytes": "1Mi", "maxAge": "1h"}
        if unmet:
            limits["maxBytes"] = "2Gi"  # the standard plan allows 1Gi
        return {"offering": "sensing", "devices": ["dev-001", "dev-002"], "limits": limits}
    if type_name == "maps":
        return {
            "offering": "maps",
            "geometryType": "Point",
            "coordinateSystem": "EPSG:4326",
            "attributes": [{"name": "label", "type": "text"}],
            "dataDeletion": "Drop",
        }
    if type_name == "identity":
        return {
            "offering": "identity",
            "type": "confidential",
            "roles": ["superuser"] if unmet else ["viewer"],
        }
    return {
        "offering": "inference",
        "model": "traffic-flow",
        "plan": "cpu-small",
        "replicas": 1,
        "limits": {"requestsPerMinute": 120, "memory": "512Mi"},
    }


def plan(total: int, depts: list[str], waves: int, seed: int) -> list[Planned]:
    """`total` requests in the MIX's proportions, departments round robin, shuffled into `waves`."""
    weights = sum(w for _, w in MIX)
    counts = {t: total * w // weights for t, w in MIX}
    counts["messaging"] += total - sum(counts.values())
    rng = random.Random(seed)
    out: list[Planned] = []
    for type_name, count in counts.items():
        prefix = KINDS[type_name][2]
        for i in range(count):
            ns = depts[i % len(depts)]
            share = depts[(i + 1) % len(depts)]
            unmet = type_name in UNMET and i % UNMET_EVERY == UNMET_AT
            spec = _spec(type_name, i, ns, share, unmet)
            out.append(
                Planned(type_name, ns, f"{prefix}-{i:04d}", spec, 0, UNMET[type_name] if unmet else "ready")
            )
    rng.shuffle(out)
    for n, p in enumerate(out):
        p.wave = n * waves // len(out)
    kept = [p for p in out if p.expect == "ready"]
    for p in rng.sample(kept, len(kept) // DELETE_EVERY):
        p.delete_wave = p.wave + 2
    return out
