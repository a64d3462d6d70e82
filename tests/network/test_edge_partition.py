"""nginx cut off from authsvc by a network partition: nginx (and this test) on this host,
authsvc on a test host of its own, Redis on another. Every packet between nginx and
authsvc is dropped, both ways; authsvc and Redis still reach each other.

nginx's requests to authsvc then go unanswered (on a kept-alive connection) or
unconnected (a new one): it gives up at the edge's authsvc proxy timeout,
AUTHSVC_REDIS_TIMEOUT_MS + 500 ms (nginx/authsvc-proxy.conf), with one replica no retry.
Asserted: the gate fails closed, a JSON 503, within that timeout + GRACE_S; with
AUTHSVC_FAIL_OPEN the stream is served from the origin instead, as late; the API answers a
JSON 503 as late, in both; after the heal both answer again within HEALED_S.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from edge_harness import SEGMENT, Player, ko, launch
from netns import Host, HostedRedis, Net
from races import codec

pytestmark = pytest.mark.network

TIMEOUT_MS = 250
EDGE_TIMEOUT_S = (TIMEOUT_MS + 500) / 1000  # the edge's authsvc_timeout
# nginx's timers run on its event loop's clock, updated once per loop turn: past the
# timeout by a few milliseconds, more on a busy machine.
GRACE_S = 0.15
HEALED_S = 1.0
TRIES = 3


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    r = call()
    return r, time.monotonic() - started


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_a_partition_between_nginx_and_authsvc(fail_open: bool, net: Net, tmp_path: Path) -> None:
    api, store = net.host("authsvc"), net.host("redis")
    redis = HostedRedis(tmp_path / "redis", store)
    redis.start()
    try:
        stack = launch(
            tmp_path / "stack",
            api_host=api.ip,
            api_prefix=api.prefix,
            redis_url=redis.url,
            redis_timeout_ms=TIMEOUT_MS,
            fail_open=fail_open,
        )
        try:
            cut_and_heal(Player(stack.url), api, net.root.ip, fail_open)
        finally:
            stack.stop()
    finally:
        redis.stop()


def cut_and_heal(player: Player, api: Host, nginx_ip: str, fail_open: bool) -> None:
    """A lease; the partition, each gated fetch and API call timed; the heal."""
    user, stream = codec.issue("user"), codec.issue("stream")
    assert player.activate(user, stream).status_code == 200
    assert player.watch(stream, user, path=SEGMENT).status_code == 200

    api.cut(nginx_ip)
    gate_s, api_s = [], []
    for _ in range(TRIES):
        r, seconds = timed(lambda: player.watch(stream, user, path=SEGMENT))
        if fail_open:
            assert r.status_code == 200 and r.headers["content-type"] == "video/mp2t", r.text
        else:
            ko(r, 503, "Service Unavailable")
        gate_s.append(seconds)
        r, seconds = timed(lambda: player.activate(user, codec.issue("stream")))
        ko(r, 503, "Service Unavailable")
        api_s.append(seconds)
    assert api.dropped() > 0
    api.heal()
    healed_at = time.monotonic()

    def answers() -> bool:
        watched = player.watch(stream, user, path=SEGMENT).status_code
        return watched == 200 and player.active(user).status_code == 200

    while not answers():
        assert time.monotonic() - healed_at < 10, "no answer 10 s after the heal"
    back_s = time.monotonic() - healed_at
    print(
        f"\ngate {[round(s * 1000) for s in gate_s]} ms, API {[round(s * 1000) for s in api_s]} ms "
        f"(edge timeout {EDGE_TIMEOUT_S * 1000:.0f} ms); answering {back_s * 1000:.0f} ms after the heal"
    )
    assert max(gate_s + api_s) <= EDGE_TIMEOUT_S + GRACE_S
    assert min(gate_s + api_s) >= EDGE_TIMEOUT_S - 0.05  # nginx did wait: a partition, not a refusal
    assert back_s <= HEALED_S
    # The lease survived: authsvc and Redis never lost each other.
    assert {s["streamId"] for s in player.active(user).json()["streams"]} == {stream}
    player.close()
