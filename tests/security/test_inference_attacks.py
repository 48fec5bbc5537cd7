"""Attacks on inference's data path, played by department A holding only its own credentials (its endpoints'
API keys, its own request names and specs) against department B, on a real MLServer behind real gateways.

Each attack asserts the refusal (status and message) and that B's endpoint still answers with the model's real
prediction afterwards (`b_still_works`: through the gateway with B's key, and B's model still loaded on the
shared server). The attacks that need the Kubernetes API (objects of kubernetes mode, the departments'
ResourceQuotas) are in tests/integration/test_inference_operator.py and test_inference_kubernetes_mode.py.

    traversal     A's key and /v2/models/<A's endpoint>/ plus encoded or raw '..', '//', '\\', overlong UTF-8,
                  aimed at B's model and at the server's repository API (unload B, list the repository)
    repository    /v2/repository/* called directly through the gateway
    cross key     A's key on B's endpoint
    names         dept-x/y-z against dept-x-y/z: two endpoints, two models; deleting one leaves the other
    GPU quota     A's endpoints together over A's GPU quota (each fits alone)
    body          a body over --max-body (declared or chunked)
    concurrency   slow senders holding the gateway's slots: per endpoint, per department, body timeout
    rate          requestsPerMinute divided among the gateway's replicas
    slow server   a model server that never answers: the gateway times out, others are served
    SSRF          a Secret whose inferUrl points elsewhere: the operator's probe still calls the gateway
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from cityhub_operator.driver import PermanentBackendError, Request, Result

from cityhub.supervisor import free_port
from component_types.inference import local
from component_types.inference.driver import InferenceDriver, create_driver
from component_types.inference.fixtures import LocalInference
from component_types.inference.gateway_limits import GatewayLimits
from component_types.inference.naming import object_name
from component_types.inference.routes import Route, RouteFiles, key_hash

pytestmark = pytest.mark.integration
A, B = "dept-a", "dept-b"
ROWS = [[8, 1, 0, 0], [3, 6, 4, 0]]  # rush hour on a Tuesday; 3 a.m. on a rainy Sunday
T = TypeVar("T")


def infer_body(rows: list[list[float]] = ROWS) -> bytes:
    flat = [v for row in rows for v in row]
    return json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [len(rows), 4], "data": flat}]}
    ).encode()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


def raw(
    base: str, method: str, target: str, key: str | None = None, body: bytes = b"", timeout: float = 15
) -> Answer:
    """One HTTP/1.1 request with `target` sent byte for byte (no client normalises or encodes it)."""
    url = urlsplit(base)
    head = [f"{method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    if body or method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, payload)


def run(env: dict[str, str], call: Callable[[InferenceDriver], Awaitable[T]]) -> T:
    """One driver call in its own event loop (the driver's HTTP session belongs to one loop)."""

    async def go() -> T:
        d = create_driver(env)
        try:
            return await call(d)
        finally:
            await d.close()

    return asyncio.run(go())


def endpoint(ns: str, name: str, rpm: int = 100_000, replicas: int = 1, **limits: int) -> Request:
    spec = {"model": "traffic-flow", "replicas": replicas}
    return Request(
        ns,
        name,
        f"uid-{ns}-{name}",
        ns,
        spec,
        {"requestsPerMinute": rpm, **limits},
        plan="p",
        offering="inference",
    )


@dataclass
class City:
    backend: LocalInference
    env: dict[str, str]
    tight: local.Gateway
    """A second gateway on the same routes with small limits (the attacks on limits)."""
    results: dict[str, Result]

    def ensure(self, request: Request) -> Result:
        result = run(self.env, lambda d: d.ensure(request))
        self.results[request.key] = result
        return result

    def key(self, ns: str, name: str) -> str:
        return self.results[f"{ns}/{name}"].credentials["apiKey"]

    def url(self, ns: str, name: str, gateway: str | None = None) -> str:
        return f"{gateway or self.backend.gateway.url}/v2/models/{ns}.{name}/infer"


TIGHT = GatewayLimits(
    max_body=64 * 1024,
    max_concurrent=5,
    max_concurrent_department=3,
    max_concurrent_endpoint=2,
    timeout=2.0,
    connect_timeout=1.0,
    body_timeout=3.0,
    replicas=2,
)


@pytest.fixture(scope="module")
def city(inference_backend: LocalInference) -> Iterator[City]:
    env = {
        **inference_backend.operator_env(),
        # Quotas from a table (no cluster here): A and B may use 2 GPUs each; CPU and memory quotas, read
        # from the departments' ResourceQuotas, are attacked in tests/integration/test_inference_operator.py.
        "CITYHUB_INFERENCE_GPU_QUOTA": f"{A}=2,{B}=2,*=0",
    }
    directory = inference_backend.server.directory
    tight = local.Gateway(
        directory, inference_backend.gateway.routes, name="tight-gateway", limits=TIGHT
    ).start()
    c = City(inference_backend, env, tight, {})
    c.ensure(endpoint(A, "flow"))
    c.ensure(endpoint(B, "flow"))
    try:
        yield c
    finally:
        tight.stop()
        for key in list(c.results):
            ns, name = key.split("/")
            run(env, lambda d, ns=ns, name=name: d.delete(endpoint(ns, name)))


def b_still_works(city: City, gateway: str | None = None) -> None:
    """B's endpoint answers B's key with the model's real prediction, and B's model is loaded."""
    answer = raw(
        gateway or city.backend.gateway.url,
        "POST",
        f"/v2/models/{B}.flow/infer",
        city.key(B, "flow"),
        infer_body(),
    )
    assert answer.status == 200, answer
    got = answer.json()
    assert got["model_name"] == object_name(B, "flow")
    rush, night = got["outputs"][0]["data"]
    assert rush > 1000 > 500 > night > 0
    ready = raw(city.backend.server.url, "GET", f"/v2/models/{object_name(B, 'flow')}/ready")
    assert ready.status == 200, "B's model is no longer loaded on the shared server"


# -- paths ---------------------------------------------------------------------------------------------

B_MODEL = object_name(B, "flow")
TRAVERSALS = [
    # (method, path after /v2/models/dept-a.flow, rule)
    ("POST", f"/%2e%2e/{B}.flow/infer", "percent-encoding"),
    ("POST", f"/%2E%2E/{B}.flow/infer", "percent-encoding"),
    ("POST", f"/%2e%2e/{B_MODEL}/infer", "percent-encoding"),
    ("POST", f"/..%2f{B}.flow%2finfer", "percent-encoding"),
    ("POST", f"/%2e%2e/%2e%2e/repository/models/{B_MODEL}/unload", "percent-encoding"),
    ("POST", f"/%2e%2e/%2e%2e/repository/models/{B}.flow/unload", "percent-encoding"),
    ("POST", "/%2e%2e%2f%2e%2e%2frepository%2findex", "percent-encoding"),
    ("POST", f"/%c0%ae%c0%ae/{B}.flow/infer", "percent-encoding"),
    ("POST", f"/%252e%252e/{B}.flow/infer", "percent-encoding"),
    ("POST", f"/versions/..%2f..%2f{B}.flow/infer", "percent-encoding"),
    ("POST", f"/%5c..%5c{B}.flow/infer", "percent-encoding"),
    ("POST", f"/../{B}.flow/infer", "dot-segment"),
    ("POST", "/../../repository/index", "dot-segment"),
    ("POST", f"/./../{B}.flow/infer", "dot-segment"),
    ("POST", f"\\..\\{B}.flow/infer", "backslash"),
    ("POST", f"//../{B}.flow/infer", "empty-segment"),
]


def test_path_traversal_from_as_endpoint_never_reaches_b_or_the_repository(city: City) -> None:
    """The confirmed attack: A's key, A's endpoint, then a path that walks out of it. Before the fix the
    first targets returned B's prediction, unloaded B's model and listed the repository."""
    key = city.key(A, "flow")
    for method, tail, rule in TRAVERSALS:
        target = f"/v2/models/{A}.flow{tail}"
        answer = raw(city.backend.gateway.url, method, target, key, infer_body())
        assert answer.status == 400, (target, answer)
        assert answer.json()["rule"] == rule and rule in answer.json()["error"], (target, answer.body)
        assert B_MODEL.encode() not in answer.body and b"outputs" not in answer.body
    b_still_works(city)
    # A's own calls reach A's model and nothing else: the gateway built the upstream URL from A's route.
    mine = raw(city.backend.gateway.url, "POST", f"/v2/models/{A}.flow/infer", key, infer_body())
    assert mine.status == 200 and mine.json()["model_name"] == object_name(A, "flow")
    meta = raw(city.backend.gateway.url, "GET", f"/v2/models/{A}.flow", key)
    assert meta.status == 200 and meta.json()["name"] == object_name(A, "flow")


def test_the_repository_api_is_never_reachable_through_the_gateway(city: City) -> None:
    key = city.key(A, "flow")
    for method, target in [
        ("GET", "/v2/repository/index"),
        ("POST", "/v2/repository/index"),
        ("POST", f"/v2/repository/models/{B_MODEL}/unload"),
        ("POST", f"/v2/repository/models/{B}.flow/unload"),
        ("POST", f"/v2/repository/models/{object_name(A, 'flow')}/load"),
    ]:
        answer = raw(city.backend.gateway.url, method, target, key, b"{}")
        assert answer.status == 404 and answer.json()["rule"] == "not-allowed", (target, answer)
    b_still_works(city)


def test_as_key_opens_no_other_endpoint(city: City) -> None:
    answer = raw(
        city.backend.gateway.url, "POST", f"/v2/models/{B}.flow/infer", city.key(A, "flow"), infer_body()
    )
    assert answer.status == 403 and f"not allowed to call {B}.flow" in answer.json()["error"]
    b_still_works(city)


# -- names and quotas ------------------------------------------------------------------------------


def test_names_that_joined_with_a_dash_collide_get_their_own_models(city: City) -> None:
    """dept-x/y-z and dept-x-y/z were both ie-dept-x-y-z; now two models, two routes, two keys, and one's
    deletion leaves the other serving."""
    victim = city.ensure(endpoint("dept-x", "y-z"))
    attacker = city.ensure(endpoint("dept-x-y", "z"))
    assert victim.backend["model"] != attacker.backend["model"]
    for ns, name in (("dept-x", "y-z"), ("dept-x-y", "z")):
        answer = raw(
            city.backend.gateway.url,
            "POST",
            f"/v2/models/{ns}.{name}/infer",
            city.key(ns, name),
            infer_body(),
        )
        assert answer.status == 200 and answer.json()["model_name"] == object_name(ns, name)
    run(city.env, lambda d: d.delete(endpoint("dept-x-y", "z")))
    city.results.pop("dept-x-y/z")
    answer = raw(
        city.backend.gateway.url,
        "POST",
        "/v2/models/dept-x.y-z/infer",
        city.key("dept-x", "y-z"),
        infer_body(),
    )
    assert answer.status == 200, answer
    b_still_works(city)


def test_as_endpoints_together_cannot_take_more_gpus_than_as_quota(city: City) -> None:
    """Each endpoint fits A's quota of 2 GPUs alone; the third is refused, and B's GPUs are B's."""
    city.ensure(endpoint(A, "gpu-1", gpu=1))
    city.ensure(endpoint(A, "gpu-2", gpu=1))
    with pytest.raises(PermanentBackendError) as e:
        run(city.env, lambda d: d.ensure(endpoint(A, "gpu-3", gpu=1)))
    assert e.value.reason == "OverGpuQuota"
    assert f"what is left of department {A}'s GPU quota: 0 of 2" in str(e.value)
    assert "2 by its other inference endpoints" in str(e.value)
    with pytest.raises(PermanentBackendError, match=r"spec\.replicas x spec\.limits\.gpu = 16 x 1"):
        run(city.env, lambda d: d.ensure(endpoint(A, "gpu-1", replicas=16, gpu=1)))
    got = city.ensure(endpoint(B, "gpu", replicas=2, gpu=1))  # B's whole quota is still B's
    assert got.endpoints["pool"] == "gpu-inference"
    b_still_works(city)


# -- the gateway's limits --------------------------------------------------------------------------


def test_bodies_over_the_cap_are_refused(city: City) -> None:
    key = city.key(A, "flow")
    # Declared: refused on the headers, before a byte of the body is read (the default --max-body: 4 MiB).
    url = urlsplit(city.backend.gateway.url)
    with socket.create_connection((url.hostname, url.port), timeout=15) as s:
        s.sendall(
            f"POST /v2/models/{A}.flow/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {4 * 2**20 + 1}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413") and b"--max-body" in reply, reply[:300]
    # Chunked: no Content-Length to check up front; the gateway stops reading at the cap.
    with socket.create_connection((url.hostname, url.port), timeout=15) as s:
        s.sendall(
            f"POST /v2/models/{A}.flow/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = b"0" * 2**20
        try:
            for _ in range(6):
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway may answer and close before the rest arrives
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    b_still_works(city)


def hold(base: str, target: str, key: str) -> socket.socket:
    """A slow sender: headers and a promise of 1000 bytes, then silence (it holds a slot until timeout)."""
    url = urlsplit(base)
    s = socket.create_connection((url.hostname, url.port), timeout=15)
    s.sendall(
        f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
    )
    return s


def test_slow_senders_fill_only_their_own_endpoint_and_department(city: City) -> None:
    """The tight gateway: 2 calls at once per endpoint, 3 per department, 5 in all. A holds its slots with
    slow bodies; A's next calls get 429, B is served; after --body-timeout A's slots come back."""
    tight = city.tight.url
    city.ensure(endpoint(A, "second"))
    a1, a2 = city.key(A, "flow"), city.key(A, "second")
    held = [hold(tight, f"/v2/models/{A}.flow/infer", a1) for _ in range(2)]
    try:
        time.sleep(0.5)
        answer = raw(tight, "POST", f"/v2/models/{A}.flow/infer", a1, infer_body())
        assert answer.status == 429 and f"concurrency limit of {A}.flow: 2" in answer.json()["error"], answer
        held.append(hold(tight, f"/v2/models/{A}.second/infer", a2))
        time.sleep(0.5)
        answer = raw(tight, "POST", f"/v2/models/{A}.second/infer", a2, infer_body())
        assert answer.status == 429 and f"concurrency limit of department {A}: 3" in answer.json()["error"]
        b_still_works(city, tight)  # 3 of the gateway's 5 slots are A's: B still gets one
        started = time.monotonic()
        replies = [s.recv(4096) for s in held]
        assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies
        assert time.monotonic() - started < TIGHT.body_timeout + 2
    finally:
        for s in held:
            s.close()
    answer = raw(tight, "POST", f"/v2/models/{A}.flow/infer", a1, infer_body())
    assert answer.status == 200, answer


def test_rate_is_per_endpoint_and_divided_among_replicas(city: City) -> None:
    """requestsPerMinute 10 on a gateway told it is one of 2 replicas: 5 calls, then 429 — B unaffected."""
    city.ensure(endpoint(A, "rated", rpm=10))
    key = city.key(A, "rated")
    codes = [
        raw(city.tight.url, "POST", f"/v2/models/{A}.rated/infer", key, infer_body()).status for _ in range(6)
    ]
    assert codes == [200] * 5 + [429], codes
    answer = raw(city.tight.url, "POST", f"/v2/models/{A}.rated/infer", key, infer_body())
    assert "5 on each of the 2 gateway replicas" in answer.json()["error"]
    assert int(answer.headers["retry-after"]) > 0
    b_still_works(city, city.tight.url)


def test_a_model_server_that_never_answers_times_out(city: City) -> None:
    """A route (as the operator writes it) to a server that accepts and stays silent: 504 after --timeout,
    while B is served by the same gateway."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(16)
    port = silent.getsockname()[1]
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    files = RouteFiles(city.backend.gateway.routes)
    route = Route(f"{A}.stuck", A, "u", f"http://127.0.0.1:{port}", "stuck", key_hash("chk_stuck"), 100)
    files.put(route)
    try:
        started = time.monotonic()
        answer = raw(city.tight.url, "POST", f"/v2/models/{A}.stuck/infer", "chk_stuck", infer_body())
        assert answer.status == 504 and "did not answer in time" in answer.json()["error"], answer
        assert time.monotonic() - started < TIGHT.timeout + 2
        b_still_works(city, city.tight.url)
    finally:
        files.remove(route.file)
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        silent.close()


# -- the operator's probe ------------------------------------------------------------------------------


def test_probe_ignores_urls_in_the_departments_secret(city: City) -> None:
    """Whoever can write A's Secret must not steer the operator's connections: the probe takes the gateway
    from the driver's settings and only the key from the Secret."""
    trap = socket.socket()
    trap.bind(("127.0.0.1", free_port()))
    trap.listen(4)
    trap.settimeout(0.5)
    port = trap.getsockname()[1]
    secret = {
        **dict(city.results[f"{A}/flow"].endpoints),
        "apiKey": city.key(A, "flow"),
        "inferUrl": f"http://127.0.0.1:{port}/steal",
        "url": f"http://127.0.0.1:{port}",
    }
    try:
        run(city.env, lambda d: d.probe(endpoint(A, "flow"), secret))  # passes: it went to the gateway
        with pytest.raises(OSError):
            trap.accept()  # nobody connected to the Secret's URL
    finally:
        trap.close()
    b_still_works(city)


def test_the_stack_of_attacks_left_b_whole(city: City, inference_backend: LocalInference) -> None:
    """Last: after every attack above, B's endpoint, key and model are as they were."""
    b_still_works(city)
    b_still_works(city, city.tight.url)
    index = raw(inference_backend.server.url, "POST", "/v2/repository/index", body=b"{}")
    states = {m["name"]: m.get("state") for m in index.json()}
    assert states[B_MODEL] == "READY"
    assert Path(inference_backend.gateway.routes / f"{B_MODEL}.json").is_file()
