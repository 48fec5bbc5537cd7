"""Watch liveness (/healthz) and the replica's role in its leader election, without a cluster."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import aiohttp
import aiohttp.web
import pytest
from cityhub_operator.settings import OperatorSettings
from cityhub_operator.watchdog import LEADER, PEERING_KEY, STANDALONE, STANDBY, Peering, Watchdog, watch_key
from yarl import URL

from cityhub import supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("url", "key"),
    [
        (
            "/apis/hub.cityhub.io/v1alpha1/messagingchannels?watch=true&timeoutSeconds=120",
            "messagingchannels.hub.cityhub.io",
        ),
        (
            "/apis/hub.cityhub.io/v1alpha1/namespaces/dept-a/maplayers?watch=true",
            "maplayers.hub.cityhub.io@dept-a",
        ),
        ("/apis/kopf.dev/v1/clusterkopfpeerings?watch=true", PEERING_KEY),
        ("/api/v1/namespaces?watch=true", "namespaces"),
        ("/api/v1/namespaces/dept-a/secrets?watch=true", "secrets@dept-a"),
        ("/apis/hub.cityhub.io/v1alpha1/messagingchannels", None),  # the listing, not the watch
        ("/apis/hub.cityhub.io/v1alpha1/namespaces/dept-a/messagingchannels/x?watch=true", None),
        ("/version?watch=true", None),
    ],
)
def test_watch_keys_name_the_watched_collection(url: str, key: str | None) -> None:
    assert watch_key(URL("https://10.0.0.1:6443" + url)) == key


def test_a_watch_not_restarted_in_time_is_dead() -> None:
    clock = Clock()
    dog = Watchdog(stale_after=180, clock=clock)
    dog.started("messagingchannels.hub.cityhub.io")
    dog.started("componentofferings.hub.cityhub.io")
    clock.now += 170
    dog.started("messagingchannels.hub.cityhub.io")  # the server ended it; kopf reconnected
    assert dog.check().healthy
    clock.now += 20  # offerings: 190 s without a restart
    report = dog.check()
    assert report.stale == ("componentofferings.hub.cityhub.io",)
    assert "componentofferings.hub.cityhub.io not restarted for over 180s" in report.problem
    assert report.as_dict()["watchAgeSeconds"] == {
        "componentofferings.hub.cityhub.io": 190.0,
        "messagingchannels.hub.cityhub.io": 20.0,
    }
    dog.started("componentofferings.hub.cityhub.io")
    assert dog.check().healthy


def test_an_operator_whose_watches_never_start_is_unhealthy_after_the_grace() -> None:
    clock = Clock()
    dog = Watchdog(stale_after=60, clock=clock)
    clock.now += 59
    assert dog.check().healthy, "starting up: the API server may be slow to answer the first time"
    clock.now += 2
    report = dog.check()
    assert not report.healthy and "no watch has started within 60s" in report.problem


def test_a_standby_needs_only_its_peering_watch_and_gets_a_grace_on_taking_over() -> None:
    clock = Clock()
    dog = Watchdog(stale_after=60, clock=clock)
    dog.started("messagingchannels.hub.cityhub.io")
    dog.started(PEERING_KEY)
    assert dog.check(STANDBY).healthy
    clock.now += 300  # paused by kopf: its resource watches are closed on purpose
    dog.started(PEERING_KEY)
    assert dog.check(STANDBY).healthy
    assert dog.check(None).healthy, "the API server did not say who leads: still the standby"
    # The leader is gone: the resources get a fresh grace to reconnect, then must have done so.
    assert dog.check(LEADER).healthy
    clock.now += 61
    dog.started(PEERING_KEY)
    assert dog.check(LEADER).stale == ("messagingchannels.hub.cityhub.io",)
    # A standby whose peering watch is dead cannot notice the leader going: unhealthy too.
    assert dog.check(STANDBY).healthy
    clock.now += 61
    assert dog.check(STANDBY).stale == (PEERING_KEY,)


def lastseen(seconds_ago: float, now: dt.datetime) -> str:
    return (now - dt.timedelta(seconds=seconds_ago)).isoformat()


def test_the_live_peer_of_highest_priority_leads() -> None:
    now = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
    me = Peering("cityhub-operator", "operator-b", priority=100, lifetime=20)
    alive_higher = {"operator-a": {"priority": 200, "lifetime": 20, "lastseen": lastseen(5, now)}}
    dead_higher = {"operator-a": {"priority": 200, "lifetime": 20, "lastseen": lastseen(25, now)}}
    alive_lower = {"operator-c": {"priority": 50, "lifetime": 20, "lastseen": lastseen(1, now)}}
    tie = {"operator-c": {"priority": 100, "lifetime": 20, "lastseen": lastseen(1, now)}}
    myself = {"operator-b": {"priority": 100, "lifetime": 20, "lastseen": lastseen(1, now)}}
    assert me.role(alive_higher, now) == STANDBY
    assert me.role(dead_higher, now) == LEADER, "its keep-alive lapsed: the standby takes over"
    assert me.role({**alive_lower, **myself}, now) == LEADER
    assert me.role(tie, now) == STANDBY, "kopf pauses every replica of a tied priority"
    assert me.role({"operator-x": "garbage", "operator-y": {"lastseen": "yesterday"}}, now) == LEADER
    assert Peering.standalone().role(alive_higher, now) == STANDALONE


def test_the_oldest_replica_leads_and_none_tie() -> None:
    settings = OperatorSettings(peering="cityhub-operator")
    old = Peering.of(settings, {"POD_ID": "cityhub-operator-7d9-abcde"}, started=1_800_000_000.000)
    twin = Peering.of(settings, {}, started=1_800_000_000.000)
    new = Peering.of(settings, {}, started=1_800_000_000.001)
    assert old.identity == "cityhub-operator-7d9-abcde" and twin.identity.endswith(f"/{os.getpid()}")
    assert old.priority != twin.priority, "started in the same millisecond, still no tie"
    assert min(old.priority, twin.priority) > new.priority > 0, "a restarted replica stands by"
    assert Peering.of(settings, {}).priority < 2**63, "Kubernetes keeps it as an int64"
    assert Peering.of(OperatorSettings(peering_priority=7), {}).priority == 7


def test_the_trace_records_answered_watch_requests_only() -> None:
    """A real HTTP round trip through the traced session kopf is given."""
    dog = Watchdog(stale_after=60)
    port = supervisor.free_port()

    async def main() -> None:
        async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
            status = 403 if request.match_info["plural"] == "secrets" else 200
            return aiohttp.web.Response(status=status, text="{}")

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get("/apis/{group}/{version}/{plural}", handler)])
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, supervisor.HOST, port).start()
        try:
            async with aiohttp.ClientSession(trace_configs=[dog.trace_config()]) as session:
                base = f"http://{supervisor.HOST}:{port}/apis/hub.cityhub.io/v1alpha1"
                for path in ("messagingchannels?watch=true", "maplayers", "secrets?watch=true"):
                    async with session.get(f"{base}/{path}") as resp:
                        await resp.read()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert set(dog.check().ages) == {"messagingchannels.hub.cityhub.io"}
