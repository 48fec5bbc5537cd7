"""No secret in plain text anywhere it could leak: every credential the isolation environment
(isolation_env.py) provisioned, and the backend master secret that passed through the stack, is looked for
in the operator log, Events, request objects and statuses, stack outputs and the stack's state.
"""

from __future__ import annotations

import json
import re

import pytest
from kubernetes import client

from components.tenancy import COMPONENT_REQUEST_GROUP as GROUP
from tests.integration.isolation_env import CHANNEL, Environment, env

__all__ = ["env"]  # the module-scoped environment of isolation_env.py: this module starts its own
pytestmark = pytest.mark.integration


def provisioned_secrets(env: Environment) -> dict[str, str]:
    """Every secret value the environment holds -> where it comes from: each connection Secret's
    credentials (the keys status.endpoints does not publish), the seed and JWT inside NATS creds, and the
    backend's master secret that passed through the stack."""
    objects = client.CustomObjectsApi(env.api)
    found = {env.nats_secret: "the NATS master secret (Pulumi secret config)"}
    for ns, data in env.requests.items():
        obj = objects.get_namespaced_custom_object(GROUP, "v1alpha1", ns, "messagingchannels", CHANNEL)
        public = set(obj["status"].get("endpoints", {}))
        for key, value in data.items():
            if key in public:
                continue
            found[value] = f"{ns}/{CHANNEL}-connection[{key}]"
            for token in re.findall(r"\bS[UAO][A-Z2-7]{56}\b|\beyJ[\w-]+\.[\w-]+\.[\w-]+", value):
                found[token] = f"{ns}/{CHANNEL}-connection[{key}] (seed or JWT)"
    assert len(found) > len(env.requests)
    return found


def leak_sources(env: Environment) -> dict[str, str]:
    """Where a secret must never appear, as text."""
    core = client.CoreV1Api(env.api)
    objects = client.CustomObjectsApi(env.api)
    sources = {"operator log": env.operator_log.read_text(errors="replace")}
    events = core.list_event_for_all_namespaces().items
    sources["Events"] = "\n".join(
        f"{e.reason} {e.message} {e.note if hasattr(e, 'note') else ''}" for e in events
    )
    requests = objects.list_cluster_custom_object(GROUP, "v1alpha1", "messagingchannels")["items"]
    sources["request statuses"] = json.dumps([r.get("status") for r in requests])
    sources["request objects"] = json.dumps(requests)
    sources["stack outputs"] = env.stack.pulumi("stack", "output", "--json")
    sources["stack state (export)"] = env.stack.pulumi("stack", "export")
    backend = env.stack.root / "backend"
    sources["stack state files"] = "\n".join(
        p.read_text(errors="replace") for p in backend.rglob("*") if p.is_file()
    )
    return sources


def test_no_provisioned_secret_appears_in_logs_events_statuses_or_stack_outputs(env: Environment) -> None:
    secret_values = provisioned_secrets(env)
    sources = leak_sources(env)
    assert len(sources["operator log"]) > 0 and sources["Events"].strip()
    leaks = [
        f"{what} found in {where}"
        for value, what in secret_values.items()
        for where, text in sources.items()
        if value in text
    ]
    print(f"\nsecret scan: {len(secret_values)} secret values x {len(sources)} sources, {len(leaks)} found")
    assert leaks == []
    # The secret does pass through the stack, as a Pulumi secret: outputs show it masked.
    assert json.loads(sources["stack outputs"])["natsSecret"] == "[secret]"
