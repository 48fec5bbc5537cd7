"""A department's application pods for tests/integration/test_in_cluster.py: Pod Security `restricted`, on
the real node, from the operator's image (it has Python with the NATS and MQTT clients; any image with
them would do), with a request's connection Secret mounted at /var/run/connection."""

from __future__ import annotations

import time
from typing import Any

from cityhub.embedded_cluster.real_node_config import TAINT_KEY, image_name
from cityhub.testkit import condition, wait_for
from tests.integration.test_hub_stack import Project

CONNECTION = "/var/run/connection"


def app_pod(
    name: str, namespace: str, command: list[str], secret: str | None = None, once: bool = True
) -> dict[str, Any]:
    """`once`: the pod runs `command` to completion (restartPolicy Never); otherwise it keeps running."""
    container: dict[str, Any] = {
        "name": "app",
        "image": image_name("operator"),
        "command": command,
        # Small requests: the real node has 2 CPUs and the hub's own pods request most of them.
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    spec: dict[str, Any] = {
        "nodeSelector": {"cityhub.io/node": "real"},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if once:
        spec |= {"restartPolicy": "Never", "automountServiceAccountToken": False}
    if secret:
        container["volumeMounts"] = [{"name": "connection", "mountPath": CONNECTION}]
        spec["volumes"] = [{"name": "connection", "secret": {"secretName": secret}}]
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def run_to_completion(project: Project, pod: dict[str, Any], timeout: float = 120) -> tuple[str, str, float]:
    """Apply the pod and wait until it has finished: (phase, its logs, seconds from create to finished)."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    t0 = time.monotonic()
    project.apply(pod)

    def finished() -> str | None:
        phase = project.get("pod", name, "-n", namespace)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout, f"pod {namespace}/{name} to finish")
    logs = project.kubectl("-n", namespace, "logs", name, ok=False).stdout
    return phase, logs, time.monotonic() - t0


def delete_requests(project: Project, plurals: tuple[str, ...]) -> None:
    """Every request of these kinds, waiting for the operator to release them. A map layer with features
    refuses deletion unless its spec says Drop (the default keeps the data): this throwaway data may go."""
    for layer in project.get("maplayers", "-A")["items"]:
        meta, drop = layer["metadata"], '-p={"spec": {"dataDeletion": "Drop"}}'
        project.kubectl("-n", meta["namespace"], "patch", "maplayer", meta["name"], "--type=merge", drop)
    for plural in plurals:
        project.kubectl("delete", plural, "--all", "-A", "--timeout=110s", ok=False)


def started_seconds(pod: dict[str, Any]) -> float:
    """Seconds from the pod's creation to its Ready condition (the API server's clock both times)."""
    from datetime import datetime

    def at(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    return at(condition(pod, "Ready")["lastTransitionTime"]) - at(pod["metadata"]["creationTimestamp"])


# What the workload pods run (python -c), reading the connection Secret at CONNECTION.
CHANNEL_CLIENT = r"""
import asyncio, nats, pathlib, sys
secret = pathlib.Path("/var/run/connection")  # in_cluster_apps.CONNECTION
url = (secret / "url").read_text()
async def main():
    nc = await nats.connect(url, user_credentials=str(secret / "user.creds"), connect_timeout=10)
    sub = await nc.subscribe("city.dept-yingji.alerts.typhoon")
    await nc.publish("city.dept-yingji.alerts.typhoon", "台风红色预警".encode())
    msg = await sub.next_msg(timeout=10)
    print("got", msg.subject, msg.data.decode(), flush=True)
    await nc.drain()
asyncio.run(main())
"""

DEVICE_AND_APP = r"""
import asyncio, json, pathlib, sys, urllib.parse
import nats, paho.mqtt.client as mqtt
s = pathlib.Path(sys.argv[1])
read = lambda key: (s / key).read_text()
async def main():
    # The department's app reads the fleet's stream; the device publishes over MQTT with its own credential.
    nc = await nats.connect(read("natsUrl"), user_credentials=str(s / "creds"), connect_timeout=10)
    sub = await nc.jetstream().pull_subscribe(read("subjects"), stream=read("stream"))
    url = urllib.parse.urlsplit(read("mqttUrl"))
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gauge-001")
    device.username_pw_set("gauge-001", read("device-gauge-001"))
    device.connect(url.hostname, url.port or 1883)
    device.loop_start()
    reading = json.dumps({"米": 3.2}, ensure_ascii=False)
    device.publish("ingest/river-levels/gauge-001/level", reading, qos=1).wait_for_publish(10)
    (msg,) = await sub.fetch(1, timeout=15)
    print("got", msg.subject, msg.data.decode(), flush=True)
    device.disconnect()
    await nc.drain()
asyncio.run(main())
"""

TOKEN_CLIENT = r"""
import base64, json, pathlib, urllib.parse, urllib.request
s = pathlib.Path("/var/run/connection")  # CONNECTION
read = lambda key: (s / key).read_text()
form = {"grant_type": "client_credentials", "client_id": read("client_id")}
form["client_secret"] = read("client_secret")
body = urllib.parse.urlencode(form).encode()
with urllib.request.urlopen(urllib.request.Request(read("token_endpoint"), data=body), timeout=20) as r:
    token = json.load(r)["access_token"]
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print("azp", claims["azp"], "iss", claims["iss"], flush=True)
print("roles", json.dumps(claims, ensure_ascii=False), flush=True)
"""

FEATURES_AND_TILES = r"""
import math, pathlib, urllib.request
import psycopg
s = pathlib.Path("/var/run/connection")  # CONNECTION
read = lambda key: (s / key).read_text()
lon, lat = 120.1551, 30.2741  # a shelter by the West Lake, in CGCS2000 (EPSG:4490), the layer's system
with psycopg.connect(read("databaseUrl"), connect_timeout=10) as db:
    point = "ST_SetSRID(ST_MakePoint(%s, %s), 4490)"
    db.execute(f"INSERT INTO {read('table')} (label, capacity, geom) VALUES (%s, %s, {point})",
               ("西湖避难所", 800, lon, lat))
print("wrote 1 shelter", flush=True)
z = 14
x = int((lon + 180) / 360 * 2**z)
y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
def fetch(url):
    with urllib.request.urlopen(url, timeout=20) as r:
        return r.status, r.read()
at = lambda url: url.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
status, tile = fetch(at(read("tileUrlWithToken")))
found = "西湖避难所".encode() in tile
print(f"tile {z}/{x}/{y}: {status}, {len(tile)} bytes, has 西湖避难所", found, flush=True)
# A wrong token gets a tile whose only layer, cityhub_denied, says why (catalog_sql.py): nothing of the layer.
status, body = fetch(at(read("tileUrl")) + "&token=x")
denied, leaked = b"cityhub_denied" in body, "西湖避难所".encode() in body
print(f"wrong token: {status}, cityhub_denied", denied, "has 西湖避难所", leaked, flush=True)
"""

INFER_CLIENT = r"""
import json, pathlib, urllib.error, urllib.request
s = pathlib.Path("/var/run/connection")  # CONNECTION
read = lambda key: (s / key).read_text()
# 08:00 on a Tuesday, dry, no event: the morning rush on the traffic-flow model's synthetic city.
body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [8, 1, 0, 0]}]}
def infer(key):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    req = urllib.request.Request(read("inferUrl"), data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()[:200]
status, answer = infer(read("apiKey"))
print("infer", status, json.dumps(answer)[:300], flush=True)
if status == 200:
    print("vehicles per hour", round(answer["outputs"][0]["data"][0]), flush=True)
status, answer = infer("not-" + read("apiKey"))
print("wrong key", status, flush=True)
"""
