"""The sensing Backend under Pulumi's mocks: the MQTT gateway and its relay go where cityhub:systemPlacement
says and run as the images' user, like messaging's nats-server (they ran as uid 1000 and ignored the
placement)."""

from __future__ import annotations

from cityhub_api import labels
from cityhub_api.registry import component_type
from component_types.sensing.backend import GATEWAY, RELAY, Backend
from components.backends import IMAGE_USER, BackendArgs
from tests.unit.test_components import find, run

SYSTEM = labels.SYSTEM_NAMESPACE
SENSING = component_type("sensing")
PLACEMENT = {
    "nodeSelector": {"cityhub.io/node": "real"},
    "tolerations": [{"key": "cityhub.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
}


def test_gateway_and_relay_follow_the_system_placement_as_the_images_user() -> None:
    backend_args = BackendArgs(
        ctype=SENSING,
        namespace=SYSTEM,
        master_key="m" * 48,
        operator_image="cityhub/operator:dev",
        placement=PLACEMENT,
    )
    created = run(lambda: Backend("sensing", backend_args))
    gateway = find(created, "StatefulSet", GATEWAY, SYSTEM).inputs["spec"]["template"]
    relay = find(created, "Deployment", RELAY, SYSTEM).inputs["spec"]["template"]
    assert SENSING.front_door.selector.items() <= gateway["metadata"]["labels"].items()
    for pod in (gateway["spec"], relay["spec"]):
        assert pod["nodeSelector"] == PLACEMENT["nodeSelector"]
        assert pod["tolerations"] == PLACEMENT["tolerations"]
        security = pod["securityContext"]
        assert security["runAsUser"] == security["fsGroup"] == IMAGE_USER and security["runAsNonRoot"]
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
