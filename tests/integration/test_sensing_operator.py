"""The sensing type end to end: embedded cluster + the real MQTT gateway and relay + the operator process.

应急管理局 applies the docs example with kubectl → Ready + Secret; a device publishes with its credential from
the Secret and the department's app reads it from the stream; bad specs are refused naming the field; a
device removed from the list is refused; the probe passes; deleting the fleet removes its Secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from kubernetes import client
from nats.aio.client import RawCredentials

from cityhub import testkit as testing
from cityhub.testkit import OperatorProcess, condition, wait_for
from cityhub_api import catalog, registry
from component_types.sensing.local import Gateway
from tests.integration.test_sensing_driver import Device

pytestmark = pytest.mark.integration
EXAMPLE = registry.DEFAULT_ROOT / "sensing" / "examples" / "sensor-fleet.yaml"
DEPARTMENTS = ("dept-yingji", "dept-jiaotong")


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, catalog.manifests(catalog.load_offerings(("sensing",))))
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def operator(
    cluster: Path, sensing_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("sensing-operator")
    env = {
        **sensing_env,
        "CITYHUB_COMPONENTS": "sensing",
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_PROBE_INTERVAL": "1",
    }
    proc = OperatorProcess(cluster, env, tmp / "operator.log").start()
    yield proc
    try:
        testing.delete_requests(cluster, "sensorfleets")
    finally:
        proc.stop()
    text = (tmp / "operator.log").read_text(errors="replace")
    assert "eyJ0eXAiOiJKV1Qi" not in text, "a device credential leaked into the operator log"


def fleet_of(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(k8s).get_namespaced_custom_object(
            "hub.cityhub.io", "v1alpha1", namespace, "sensorfleets", name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def secret_of(k8s: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    data = client.CoreV1Api(k8s).read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def ready(k8s: client.ApiClient, namespace: str, name: str, generation: int | None = None) -> bool:
    obj = fleet_of(k8s, namespace, name) or {}
    c = condition(obj, "Ready")
    return c.get("status") == "True" and (generation is None or c.get("observedGeneration") == generation)


async def read_one(url: str, creds: str, subjects: str, stream: str) -> Any:
    conn = await nats.connect(url, user_credentials=RawCredentials(creds))
    try:
        sub = await conn.jetstream().pull_subscribe(subjects, stream=stream)
        (msg,) = await sub.fetch(1, timeout=5)
        await msg.ack()
        return msg
    finally:
        await conn.close()


def test_a_department_connects_devices_with_kubectl_alone(
    cluster: Path, operator: OperatorProcess, sensing_gateway: Gateway
) -> None:
    k8s = testing.api(cluster)
    testing.kubectl(cluster, "apply", "-f", str(EXAMPLE))
    doc = yaml.safe_load(EXAMPLE.read_text())
    ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
    wait_for(lambda: ready(k8s, ns, name), 60, "the docs example to be Ready")
    shown = testing.kubectl(cluster, "get", "sf", "-n", ns, "-o", "wide").stdout
    assert name in shown and "True" in shown
    secret = secret_of(k8s, ns, f"{name}-connection")
    assert {f"device-{d}" for d in doc["spec"]["devices"]} | {"creds", "mqttUrl", "natsUrl", "stream"} <= set(
        secret
    )
    gauge = Device(secret["mqttUrl"], "gauge-001", secret["device-gauge-001"])
    try:
        assert gauge.ok
        gauge.publish("ingest/river-levels/gauge-001/level", json.dumps({"m": 2.7}).encode())
        msg = asyncio.run(read_one(secret["natsUrl"], secret["creds"], secret["subjects"], secret["stream"]))
        assert msg.subject == "telemetry.river-levels.gauge-001.level"
    finally:
        gauge.close()
    # The probe uses the fleet as the department does: its outcome reaches the metrics, not the status.
    time.sleep(2)
    assert ready(k8s, ns, name)


def test_bad_specs_are_refused_naming_the_field(cluster: Path, operator: OperatorProcess) -> None:
    bad = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "SensorFleet",
        "metadata": {"name": "bad", "namespace": "dept-jiaotong"},
        "spec": {"offering": "sensing", "devices": ["Camera_1"]},
    }
    refused = testing.apply(cluster, [bad], check=False)
    assert refused.returncode != 0 and "spec.devices[0]" in refused.stderr
    too_many = {
        **bad,
        "spec": {"offering": "sensing", "devices": ["a", "b", "c"], "limits": {"maxDevices": 2}},
    }
    refused = testing.apply(cluster, [too_many], check=False)
    assert refused.returncode != 0 and "spec.limits.maxDevices" in refused.stderr


def test_a_removed_device_is_refused_and_deletion_cleans_up(cluster: Path, operator: OperatorProcess) -> None:
    k8s = testing.api(cluster)
    fleet = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "SensorFleet",
        "metadata": {"name": "lamps", "namespace": "dept-jiaotong"},
        "spec": {"offering": "sensing", "devices": ["l1", "l2"]},
    }
    testing.apply(cluster, [fleet])
    wait_for(lambda: ready(k8s, "dept-jiaotong", "lamps"), 60, "the fleet to be Ready")
    first = secret_of(k8s, "dept-jiaotong", "lamps-connection")
    fleet["spec"]["devices"] = ["l1"]
    testing.apply(cluster, [fleet])
    generation = (fleet_of(k8s, "dept-jiaotong", "lamps") or {})["metadata"]["generation"]
    wait_for(lambda: ready(k8s, "dept-jiaotong", "lamps", generation), 60, "the change to be applied")
    assert "device-l2" not in secret_of(k8s, "dept-jiaotong", "lamps-connection")
    l2 = Device(first["mqttUrl"], "l2", first["device-l2"])
    try:
        assert l2.refused, "the removed device's credential is refused"
    finally:
        l2.close()
    testing.kubectl(cluster, "delete", "sensorfleet", "lamps", "-n", "dept-jiaotong", "--wait=true")
    with pytest.raises(client.ApiException):
        secret_of(k8s, "dept-jiaotong", "lamps-connection")
