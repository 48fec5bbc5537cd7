"""The inference gateway's allow-list of paths (gateway_paths.py) against a table of hostile request targets,
and its limits (gateway_limits.py). The attacks over HTTP, with a real MLServer behind the gateway, are in
tests/security/test_inference_attacks.py."""

from __future__ import annotations

import pytest

from component_types.inference.gateway import parse_args
from component_types.inference.gateway_limits import Concurrency, Full, GatewayLimits, RateLimiter
from component_types.inference.gateway_paths import Call, PathRefused, parse

A = "/v2/models/dept-a.flow"
HOSTILE = [
    # (target, rule): each is refused with 400 before any route or key is looked at.
    (f"{A}/%2e%2e/dept-b.flow/infer", "percent-encoding"),
    (f"{A}/%2E%2E/dept-b.flow/infer", "percent-encoding"),
    (f"{A}/%2e%2E/dept-b.flow/infer", "percent-encoding"),
    (f"{A}/..%2fdept-b.flow/infer", "percent-encoding"),
    (f"{A}/..%2Fdept-b.flow/infer", "percent-encoding"),
    (f"{A}/%2e%2e%2f%2e%2e%2frepository%2findex", "percent-encoding"),
    (f"{A}/%5c..%5cdept-b.flow/infer", "percent-encoding"),
    (f"{A}/%c0%ae%c0%ae/dept-b.flow/infer", "percent-encoding"),  # overlong UTF-8 '.'
    (f"{A}/%e0%80%ae%e0%80%ae/dept-b.flow/infer", "percent-encoding"),  # 3-byte overlong '.'
    (f"{A}/%c0%af../dept-b.flow/infer", "percent-encoding"),  # overlong '/'
    (f"{A}/%252e%252e/dept-b.flow/infer", "percent-encoding"),  # double encoding
    (f"{A}/%u002e%u002e/dept-b.flow/infer", "percent-encoding"),  # IIS-style
    ("/v2/models/dept-a%2eflow/infer", "percent-encoding"),  # even a harmless escape
    ("/v2/models/dept-a.flow%2finfer", "percent-encoding"),
    (f"{A}/../dept-b.flow/infer", "dot-segment"),
    (f"{A}/../../repository/index", "dot-segment"),
    (f"{A}/./infer", "dot-segment"),
    (f"{A}/...//infer", "empty-segment"),
    (f"{A}/.../infer", "dot-segment"),
    (f"{A}/..;/dept-b.flow/infer", "dot-segment"),
    ("/v2/models/dept-a.flow../infer", "dot-segment"),
    (f"{A}/versions/1..2/infer", "dot-segment"),
    ("/v2//models/dept-a.flow/infer", "empty-segment"),
    (f"{A}//infer", "empty-segment"),
    (f"{A}/infer/", "empty-segment"),
    (f"{A}/", "empty-segment"),
    ("//v2/models/dept-a.flow/infer", "absolute-path"),
    ("//evil.example/v2/models/dept-a.flow/infer", "absolute-path"),
    ("http://evil.example/v2/models/dept-a.flow/infer", "absolute-path"),
    ("*", "absolute-path"),
    ("", "absolute-path"),
    (f"{A}\\..\\dept-b.flow/infer", "backslash"),
    (f"{A}/\\infer", "backslash"),
    (f"{A};/infer", "characters"),
    (f"{A}/infer;x=1", "characters"),
    ("/v2/models/dépt-a.flow/infer", "characters"),
    ("/v2/models/dept-a.flow/infer\x00", "characters"),
    ("/v2/models/dept-a.flow/in fer", "characters"),
    ("/v2/models/dept-a.flow/~infer", "characters"),
    (f"{A}/versions/_1/infer", "version"),
]
NOT_SERVED = [
    # (method, target, status, rule): well-formed, not on the allow-list.
    ("GET", "/v2/repository/index", 404, "not-allowed"),
    ("POST", "/v2/repository/index", 404, "not-allowed"),
    ("POST", "/v2/repository/models/dept-b.flow/unload", 404, "not-allowed"),
    ("POST", "/v2/repository/models/dept-b.flow/load", 404, "not-allowed"),
    ("POST", f"{A}/infer/extra", 404, "not-allowed"),
    ("POST", f"{A}/generate", 404, "not-allowed"),
    ("POST", f"{A}/versions/1/infer/x", 404, "not-allowed"),
    ("GET", "/v2", 404, "not-allowed"),
    ("GET", "/v2/models", 404, "not-allowed"),
    ("GET", "/", 404, "not-allowed"),
    ("GET", "/metrics", 404, "not-allowed"),
    ("GET", "/v2/health", 404, "not-allowed"),
    ("GET", "/v2/health/live/x", 404, "not-allowed"),
    ("POST", "/v2/models/DEPT-A.flow/infer", 404, "endpoint-name"),
    ("POST", "/v2/models/dept-a/infer", 404, "endpoint-name"),
    ("POST", "/v2/models/-dept-a.flow/infer", 404, "endpoint-name"),
    ("POST", "/v2/models/dept-a.flow-/infer", 404, "endpoint-name"),
    ("GET", f"{A}/infer", 405, "method"),
    ("PUT", f"{A}/infer", 405, "method"),
    ("POST", f"{A}/ready", 405, "method"),
    ("DELETE", A, 405, "method"),
    ("POST", "/v2/health/ready", 405, "method"),
]


@pytest.mark.parametrize(("target", "rule"), HOSTILE)
def test_hostile_paths_are_refused_naming_the_rule(target: str, rule: str) -> None:
    with pytest.raises(PathRefused) as e:
        parse("POST", target)
    assert (e.value.status, e.value.rule) == (400, rule), e.value.message
    assert rule in e.value.message


@pytest.mark.parametrize(("method", "target", "status", "rule"), NOT_SERVED)
def test_paths_off_the_allow_list_are_not_served(method: str, target: str, status: int, rule: str) -> None:
    with pytest.raises(PathRefused) as e:
        parse(method, target)
    assert (e.value.status, e.value.rule) == (status, rule), e.value.message


@pytest.mark.parametrize(
    ("method", "target", "call", "upstream"),
    [
        ("POST", f"{A}/infer", Call("infer", "dept-a.flow"), "/v2/models/m/infer"),
        ("POST", f"{A}/versions/1/infer", Call("infer", "dept-a.flow", "1"), "/v2/models/m/versions/1/infer"),
        ("GET", A, Call("metadata", "dept-a.flow"), "/v2/models/m"),
        (
            "GET",
            f"{A}/versions/v1.2-rc_1",
            Call("metadata", "dept-a.flow", "v1.2-rc_1"),
            "/v2/models/m/versions/v1.2-rc_1",
        ),
        ("HEAD", f"{A}/ready", Call("model-ready", "dept-a.flow"), "/v2/models/m/ready"),
        ("POST", f"{A}/infer?model=dept-b.flow&x=..%2f", Call("infer", "dept-a.flow"), "/v2/models/m/infer"),
        ("POST", "/v2/models/dept-a.a.b-c/infer", Call("infer", "dept-a.a.b-c"), "/v2/models/m/infer"),
    ],
)
def test_allowed_calls_go_to_the_routes_model_only(
    method: str, target: str, call: Call, upstream: str
) -> None:
    """The upstream path comes from the parsed call and the route's model name, never from the client."""
    got = parse(method, target, target.split("?")[0])
    assert got == call and got.upstream_path("m") == upstream


def test_health_needs_no_endpoint() -> None:
    assert parse("GET", "/v2/health/live") == Call("live")
    assert parse("GET", "/v2/health/ready") == Call("ready")


def test_a_decoded_path_that_differs_from_the_raw_one_is_refused() -> None:
    with pytest.raises(PathRefused) as e:
        parse("POST", f"{A}/infer", f"{A}/../dept-b.flow/infer")
    assert e.value.rule == "dot-segment"
    with pytest.raises(PathRefused) as e:
        parse("POST", f"{A}/infer", "/v2/models/dept-b.flow/infer")
    assert e.value.rule == "percent-encoding"


def test_concurrency_is_capped_per_endpoint_department_and_gateway() -> None:
    slots = Concurrency(
        GatewayLimits(max_concurrent=4, max_concurrent_department=3, max_concurrent_endpoint=2)
    )
    with slots.slot("a.one", "a"), slots.slot("a.one", "a"):
        with pytest.raises(Full) as e, slots.slot("a.one", "a"):
            pass
        assert (e.value.scope, e.value.limit) == ("endpoint", 2)
        with slots.slot("a.two", "a"):
            with pytest.raises(Full) as e, slots.slot("a.three", "a"):
                pass
            assert e.value.scope == "department"
            with slots.slot("b.one", "b"):  # another department still gets in, up to the gateway's cap
                with pytest.raises(Full) as e, slots.slot("c.one", "c"):
                    pass
                assert e.value.scope == "gateway"
    assert slots.total == 0 and not slots.endpoints and not slots.departments  # all released


def test_rate_limiter_admits_the_limit_per_minute() -> None:
    limiter = RateLimiter()
    assert [limiter.admit("e", 3, now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert limiter.admit("e", 3, now=30) == pytest.approx(30)  # until the call at t=0 leaves the window
    assert limiter.admit("e", 3, now=60.5) == 0


def test_rate_is_divided_among_gateway_replicas() -> None:
    """Replicas share no state: each admits its share, so the endpoint never gets more than its plan."""
    assert GatewayLimits(replicas=2).per_replica(120) == 60
    assert GatewayLimits(replicas=3).per_replica(100) == 33  # 3 x 33 <= 100
    assert GatewayLimits(replicas=4).per_replica(2) == 1  # at least one call a minute
    assert GatewayLimits().per_replica(120) == 120


def test_limits_are_the_gateways_flags() -> None:
    limits = GatewayLimits(max_body=1024, max_concurrent_endpoint=2, timeout=0.5, replicas=3)
    _, parsed = parse_args(["--listen", "127.0.0.1:1", "--routes", "r", *limits.argv()])
    assert parsed == limits
    _, default = parse_args(["--listen", "127.0.0.1:1", "--routes", "r"])
    assert default == GatewayLimits() and default.max_body == 4 * 2**20
    _, quantity = parse_args(["--listen", "127.0.0.1:1", "--routes", "r", "--max-body", "8Mi"])
    assert quantity.max_body == 8 * 2**20
    with pytest.raises(SystemExit):
        parse_args(["--listen", "127.0.0.1:1", "--routes", "r", "--max-concurrent", "0"])
